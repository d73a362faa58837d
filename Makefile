# make run   - create .venv, install netparity with every framework, run the main job
# make test  - the same install plus test extras, then pytest
# make wheel-smoke - build the wheel, install it with the torch extra in a fresh venv, run the CLI
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Thread counts change float bits (see docs/framework-differences.md); pin them.
export OMP_NUM_THREADS ?= 2
export TF_CPP_MIN_LOG_LEVEL ?= 2
MODEL ?= lenet_bn
FASHION_MNIST_DIR := /usr/share/datasets/fashion-mnist

.PHONY: install run test wheel-smoke fuzz data clean parity-report performance import-coverage

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The stamp re-runs pip only when the packaging changes: `make install` is idempotent.
# Editable, so the venv runs the working tree; wheel-smoke checks the non-editable install.
$(VENV)/.installed: pyproject.toml setup.py | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[all,test]'
	touch $@

install: $(VENV)/.installed

# Fashion-MNIST comes from Debian's package where apt is available (no runtime downloads).
data:
	@if [ ! -d $(FASHION_MNIST_DIR) ] && command -v apt-get >/dev/null 2>&1; then \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 || \
	  echo "note: could not install dataset-fashion-mnist; data tests will skip"; \
	fi

# The main job: parity check, a short training run in every framework, the report.
run: install data
	$(BIN)/netparity show $(MODEL)
	$(BIN)/netparity compare $(MODEL) --out runs/$(MODEL)-$$(date +%Y%m%d-%H%M%S)

# Two worker processes (pytest-xdist), one thread each: most of a test's time is Python building
# models, which one process cannot spread over two cores (measured: the suite took 21 min with
# -n 2 on a machine busy with other jobs; serially it was not half done after 13). Thread counts
# change float bits only within the tolerances the tests use.
test: install data
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2

# Property-based parity: FUZZ_EXAMPLES random specs over every layer kind in every framework
# and the reference (CI runs 200). The seed is printed; rerun a failure with
# `.venv/bin/python -m pytest tests/test_fuzz.py --hypothesis-seed=SEED`.
FUZZ_EXAMPLES ?= 3000
FUZZ_SEED ?= $$(date +%s)
fuzz: install
	@seed=$(FUZZ_SEED); echo "hypothesis seed: $$seed"; \
	NETPARITY_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q tests/test_fuzz.py \
	  --hypothesis-seed=$$seed --hypothesis-show-statistics

# What a user gets from `pip install netparity[torch]`: 1-2 minutes cold, under one from uv's cache
# (5-6 GB in a temporary folder, removed after).
wheel-smoke: install
	PYTHON=$(BIN)/python tests/packaging/wheel_smoke.sh

# Every zoo model at its default size in every framework, and the wall time of
# `netparity check resnet18`; writes docs/parity.md (a benchmark, not a test).
parity-report: install
	$(BIN)/python -m netparity.compare.check_zoo --out docs/parity.md

# Every torchvision classification model and the keras.applications CNNs of issue 11, imported and
# built in every framework, and the import time of resnet50 at 224 px; writes docs/importing.md
# (a benchmark, not a test: one to two hours on 2 cores). Rows are saved to runs/import-coverage.json
# as they finish: rerun the python command alone to resume an interrupted run.
import-coverage: install
	rm -f runs/import-coverage.json
	$(BIN)/python -m netparity.compare.import_coverage --out docs/importing.md --rows runs/import-coverage.json

# The CPU figures of docs/performance.md (about an hour on 2 cores): every variant of lenet_bn and
# resnet18 (with the hand-written references), then the zoo in the plain modes and MXNet hybridized.
# Last, the spec-built vs hand-written pairs on their own (lenet_bn with 7 repeats: its 2 ms steps are noisy).
PERF = runs/perf
ZOO_SIZES = lenet lenet_bn inception_mnist residual_mnist alexnet:67 vgg11:64 vgg13:64 vgg16:64 vgg19:64 \
	nin:67 googlenet:64 resnet18:64 resnet34:64 densenet:64 tv_alexnet:64 tv_vgg11:64 tv_vgg13:64 tv_resnet18:64
performance: install
	$(BIN)/netparity bench lenet_bn --mode both --batch-size 32 --steps 30 --warmup 5 --repeats 3 \
	  --out $(PERF)/lenet_bn
	$(BIN)/netparity bench resnet18 --mode both --input-size 64 --batch-size 16 --steps 10 --warmup 3 \
	  --repeats 3 --out $(PERF)/resnet18
	$(BIN)/netparity bench $(ZOO_SIZES) --frameworks "torch,mxnet,mxnet[hybrid],keras" \
	  --no-fast-modes --mode both --batch-size 16 --steps 8 --warmup 2 --repeats 2 --out $(PERF)/zoo
	$(BIN)/netparity bench lenet_bn --no-fast-modes --mode both --batch-size 32 --steps 50 --warmup 5 \
	  --repeats 7 --frameworks "torch,torch[handwritten],mxnet,mxnet[handwritten],keras,keras[handwritten]" \
	  --out $(PERF)/ab_lenet_bn
	$(BIN)/netparity bench resnet18 --input-size 64 --no-fast-modes --mode both --batch-size 16 --steps 10 \
	  --warmup 3 --repeats 3 --frameworks "torch,torch[handwritten],mxnet,mxnet[handwritten],keras,keras[handwritten]" \
	  --out $(PERF)/ab_resnet18

clean:
	rm -rf $(VENV) build *.egg-info
