# make run   - create .venv, install netparity with every framework, run the main job
# make test  - the same install plus test extras, then pytest
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Thread counts change float bits (see docs/framework-differences.md); pin them.
export OMP_NUM_THREADS ?= 2
export TF_CPP_MIN_LOG_LEVEL ?= 2
MODEL ?= lenet_bn
FASHION_MNIST_DIR := /usr/share/datasets/fashion-mnist

.PHONY: install run test data clean parity-report

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The stamp re-runs pip only when pyproject.toml changes: `make install` is idempotent.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
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

test: install data
	$(BIN)/python -m pytest -q

# Every zoo model at its default size in every framework, and the wall time of
# `netparity check resnet18`; writes docs/parity.md (a benchmark, not a test).
parity-report: install
	$(BIN)/python -m netparity.compare.check_zoo --out docs/parity.md

clean:
	rm -rf $(VENV) build *.egg-info
