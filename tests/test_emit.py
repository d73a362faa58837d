"""netparity emit: readable standalone source in PyTorch, Gluon and Keras, with native weight files.

Golden files: tests/golden/<model>_<framework>.py hold the emitted source of lenet_bn, tv_resnet18
and tests/golden/kinds.json (every layer kind, with Keras' awkward paths). After an intended
change of the emitted code, rewrite them with
    NETPARITY_UPDATE_GOLDEN=1 pytest tests/test_emit.py -k golden
and read the diff.

The zoo check runs every zoo model in each framework in two subprocesses per framework: one
writes the sources and native weight files, a fresh one imports each file, builds the model,
loads the weights with the framework's own loader and checks it (this file is also that
worker: ``python tests/test_emit.py write|check FRAMEWORK DIR``). verify_port runs on
VERIFY_PORT_MODELS; NETPARITY_EMIT_VERIFY_ALL=1 runs it on every model (all pass; Keras then takes
about 4 minutes alone).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from netparity.backends import available
from netparity.backends.emit import EMITTERS, EmitError, emit_files, emit_source, get_emitter
from netparity.backends.emit.source import format_source
from netparity.cli import app
from netparity.spec import LAYER_KINDS, Spec, init_weights, zoo
from netparity.spec.layers import ACTIVATIONS

HERE = Path(__file__).parent
GOLDEN = HERE / "golden"
GOLDEN_MODELS = ("lenet_bn", "tv_resnet18", "kinds")
SEED = 3
# What each emitted file may import: its framework, and NumPy where it must.
ALLOWED_IMPORTS = {"torch": {"torch"}, "mxnet": {"mxnet", "numpy"}, "keras": {"keras", "numpy"}}

runner = CliRunner()


def golden_spec(name: str) -> Spec:
    return Spec.load(GOLDEN / "kinds.json") if name == "kinds" else zoo.get(name)


def reduced_spec(name: str) -> Spec:
    """A zoo model at the smallest input of at least 32 px it takes (the check is about the code,
    not the size), with the 4096-wide classifiers of AlexNet and VGG narrowed to 256: their
    100 M weights would dominate the run, and the narrowed network is the same code."""
    sys.path.insert(0, str(HERE))
    from helpers import smallest_input

    spec = smallest_input(zoo.get(name), at_least=32)
    return Spec(spec.name, spec.input_shape, tuple(_narrowed(b) for b in spec.blocks), spec.description)


MODELS = (*zoo.names(), "kinds")
# verify_port (eval mode on random and adversarial inputs, then a training-mode forward with the
# running statistics it leaves) takes 0.5 to 10 s a model in Keras, too much for all 29 within
# the zoo check's 3 minutes; it runs on these, which hold every layer kind (kinds) and the zoo's
# awkward paths (the optional shortcut, ceil-mode pools, channel slices and shuffles). Every model
# of MODELS is compared with the backend-built one on verify_port's inputs.
VERIFY_PORT_MODELS = ("lenet_bn", "tv_resnet18", "tv_squeezenet1_1", "tv_shufflenet_v2_x1_0", "kinds")


def spec_for(name: str) -> Spec:
    return golden_spec(name) if name == "kinds" else reduced_spec(name)


def _narrowed(layer):
    from dataclasses import replace

    from netparity.spec.layers import Dense, Sequence

    if isinstance(layer, Dense) and layer.out_features == 4096:
        return replace(layer, out_features=256)
    if isinstance(layer, Sequence):
        return replace(layer, layers=tuple(_narrowed(item) for item in layer.layers))
    return layer


# ---------------------------------------------------------------------------------------
# The source
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("framework", EMITTERS)
@pytest.mark.parametrize("model", GOLDEN_MODELS)
def test_golden(model, framework):
    """The same spec gives the same bytes (across processes and runs: these files were written
    by another one)."""
    path = GOLDEN / f"{model}_{framework}.py"
    source = emit_source(golden_spec(model), framework)
    if os.environ.get("NETPARITY_UPDATE_GOLDEN"):
        path.write_text(source)
    assert path.exists(), f"{path} missing: NETPARITY_UPDATE_GOLDEN=1 pytest tests/test_emit.py -k golden"
    assert source == path.read_text(), f"{model} in {framework} differs from {path}"


def _imports(tree) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("framework", EMITTERS)
def test_source_imports_only_its_framework_and_is_formatted(framework):
    for model in GOLDEN_MODELS:
        source = emit_source(golden_spec(model), framework)
        tree = ast.parse(source)
        assert _imports(tree) <= ALLOWED_IMPORTS[framework], (model, _imports(tree))
        assert "netparity" not in _imports(tree)
        assert max(len(line) for line in source.splitlines()) <= 100
        assert format_source(source) == source  # black leaves it as it is
        assert any(isinstance(n, ast.FunctionDef) and n.name == "build_model" for n in tree.body)


def test_every_kind_and_activation_is_in_the_kinds_spec():
    spec = golden_spec("kinds")
    rows = spec.infer().rows
    assert {r.kind for r in rows} == set(LAYER_KINDS)
    assert {r.layer.function for r in rows if r.kind == "activation"} == set(ACTIVATIONS)


def _classes(source: str) -> dict[str, ast.AST]:
    return {n.name: n for n in ast.parse(source).body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}


def test_resnet18_blocks_are_one_class_instantiated_eight_times():
    """torchvision's BasicBlock: one residual class whose shortcut exists only in projecting
    instances, one stage class used four times, sizes as constructor arguments."""
    source = emit_source(zoo.get("tv_resnet18"), "torch")
    classes = _classes(source)
    assert set(classes) == {"Stem", "ResidualBlock", "Stage", "TvResnet18", "build_model"}
    assert "def __init__(self, in_channels, out_channels, stride, project):" in source
    assert source.count("ResidualBlock(") == 3  # the class and its two uses in Stage
    assert source.count(" = Stage(") == 4
    assert "self.stage2 = Stage(64, 128, stride=2, project=True)" in source
    assert "nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)" in source  # the shortcut
    keras_source = emit_source(zoo.get("tv_resnet18"), "keras")
    assert set(_classes(keras_source)) >= {"stem", "residual_block", "stage", "build_model"}
    assert keras_source.count("residual_block(x, ") == 2
    gluon = emit_source(zoo.get("tv_resnet18"), "mxnet")
    assert "class ResidualBlock(nn.HybridBlock):" in gluon and "def hybrid_forward(self, F, x):" in gluon


def test_framework_differences_are_explicit():
    keras_source = emit_source(zoo.get("tv_resnet18"), "keras")
    assert "layers.ZeroPadding2D(3, " in keras_source and 'padding="same"' not in keras_source
    assert "epsilon=1e-05, momentum=0.9" in keras_source and "momentum weighs" in keras_source
    assert 'ConstantPad2D(1, -float("inf")' in keras_source
    gluon = emit_source(golden_spec("kinds"), "mxnet")
    assert "momentum=0.9, epsilon=1e-05" in gluon and "flatten=False" in gluon and "CeilMaxPool(" in gluon
    kinds_keras = emit_source(golden_spec("kinds"), "keras")
    assert "(H, W, C) order" in kinds_keras and "DivisorScale(" in kinds_keras
    assert "    if padding:\n        x = layers.ZeroPadding2D(padding" in kinds_keras  # one function, pads 0 or 1
    torch_source = emit_source(golden_spec("kinds"), "torch")
    assert "nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)" in torch_source
    assert "nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)" in torch_source


def test_emitting_imports_no_framework():
    code = ("import sys; from netparity.backends.emit import emit_source; from netparity.spec import Spec;"
            f"spec = Spec.load({str(GOLDEN / 'kinds.json')!r});"
            "[emit_source(spec, fw) for fw in ('torch', 'mxnet', 'keras')];"
            "print(sorted(m for m in ('torch', 'mxnet', 'keras', 'tensorflow', 'jax') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_readme_porting_reference_is_what_emit_writes():
    """The README's listings of one network in three frameworks are the emitted files."""
    readme = (HERE.parent / "README.md").read_text()
    section = readme.split("## Porting reference", 1)[1].split("\n## ", 1)[0]
    blocks = [block.split("\n", 1)[1] for block in section.split("```")[1::2]]
    languages = [block.split("\n", 1)[0] for block in section.split("```")[1::2]]
    spec = Spec.from_json(blocks[languages.index("json")], "README")
    listings = [block for block, language in zip(blocks, languages) if language == "python"]
    assert listings == [emit_source(spec, framework) for framework in ("torch", "mxnet", "keras")]
    torch_lines = len(emit_source(zoo.get("tv_resnet18"), "torch").splitlines())
    assert f"the file has {torch_lines} lines" in " ".join(section.split())


# ---------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------

def test_cli_prints_source_without_a_framework():
    result = runner.invoke(app, ["emit", "lenet_bn", "--framework", "keras"])
    assert result.exit_code == 0, result.output
    assert result.output == emit_source(zoo.get("lenet_bn"), "keras")


def test_cli_writes_source_at_an_input_size(tmp_path):
    out = tmp_path / "net.py"
    result = runner.invoke(app, ["emit", str(GOLDEN / "kinds.json"), "--framework", "mxnet", "-o", str(out),
                                 "--input-size", "16"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output
    assert out.read_text() == emit_source(golden_spec("kinds").with_input(size=16), "mxnet")


@pytest.mark.parametrize("arguments, message", [
    (["--framework", "jax"], "--framework must be one of torch, mxnet, keras"),
    (["--framework", "torch", "--weights", "w.npz", "--canonical-weights", "1"], "not both"),
    (["--framework", "torch", "--weights-out", "w.pt"], "--weights-out needs --weights"),
])
def test_cli_refuses_bad_options(arguments, message):
    result = runner.invoke(app, ["emit", "lenet_bn", *arguments], terminal_width=200)
    assert result.exit_code == 2
    assert message in result.output


def test_cli_refuses_weights_that_do_not_fit(tmp_path):
    weights = init_weights(zoo.get("lenet_bn"), 0)
    weights.pop(next(iter(weights)))
    np.savez(tmp_path / "w.npz", **weights)
    result = runner.invoke(app, ["emit", "lenet_bn", "--framework", "torch", "--weights", str(tmp_path / "w.npz")],
                           terminal_width=200)
    assert result.exit_code == 2 and "error:" in result.output and "w.npz" in result.output


def test_keras_weights_need_their_suffix(tmp_path):
    with pytest.raises(EmitError, match=r"\.weights\.h5"):
        emit_files(zoo.get("lenet_bn"), "keras", None, init_weights(zoo.get("lenet_bn"), 0), tmp_path / "w.h5")


def test_keras_helper_layers_are_registered_and_configurable():
    """Every Keras layer the emitter may write registers itself with Keras and, where its
    constructor takes arguments, has a get_config; the kinds spec uses every one, so the
    save-and-load test below runs them all."""
    from netparity.backends.keras.emitter import HELPERS, LAYER_HELPERS

    assert {"ConstantPad2D", "DivisorScale", "FixedNormalize", "ChannelSlice"} <= LAYER_HELPERS
    for name in LAYER_HELPERS:
        (cls,) = [node for node in ast.parse(HELPERS[name]).body if isinstance(node, ast.ClassDef)]
        assert [ast.unparse(d) for d in cls.decorator_list] == [
            "keras.saving.register_keras_serializable(package='netparity_emitted')"], name
        methods = {node.name for node in cls.body if isinstance(node, ast.FunctionDef)}
        assert "get_config" in methods or "__init__" not in methods, name
    assert LAYER_HELPERS <= set(_classes(emit_source(golden_spec("kinds"), "keras")))


LOAD_SAVED_KERAS = """
import json, sys
import keras
import numpy as np
import kinds_model  # the emitted file: its layer classes register themselves with Keras

model = keras.models.load_model("kinds.keras")  # no custom_objects
out = np.asarray(model(np.load("x.npy"), training=False))
want = np.load("y.npy")
print(json.dumps({"rel": float(np.abs(out - want).max() / np.abs(want).max()),
                  "helper_layers": sorted({type(layer).__name__ for layer in model.layers
                                           if type(layer).__module__ == "kinds_model"}),
                  "netparity_modules": sorted(m for m in sys.modules if m.startswith("netparity"))}))
"""


def test_emitted_keras_model_saves_whole_and_loads_in_a_fresh_process(tmp_path):
    """The kinds spec's emitted model (every helper layer) with the seed's weights, saved by
    model.save, loads with keras.models.load_model in a fresh process that imports Keras, NumPy
    and the emitted file only, without custom_objects, and computes the same (measured: bitwise).
    The import is needed: Keras finds a registered class only once its module has run, and
    imports modules by name only for its own packages (keras 3.15.1
    saving/serialization_lib.py, _retrieve_class_or_fn)."""
    _needs("keras")
    from netparity.backends.keras.emitter import LAYER_HELPERS

    saved = _run_worker("save", "keras", str(tmp_path))
    assert saved.returncode == 0, saved.stderr[-3000:]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", LOAD_SAVED_KERAS], capture_output=True, text=True, timeout=300,
                          env=env, cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["netparity_modules"] == []
    assert set(result["helper_layers"]) == LAYER_HELPERS
    assert result["rel"] <= 1e-6, result


def test_cli_writes_source_and_state_dict_loadable_in_a_fresh_process(tmp_path):
    if "torch" not in available():
        pytest.skip("PyTorch is not installed (pip install 'netparity[torch]')")
    done = subprocess.run([sys.executable, "-m", "netparity.cli", "emit", "lenet_bn", "--framework", "torch",
                           "-o", str(tmp_path / "lenet.py"), "--canonical-weights", "5"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "lenet.pt").exists()
    check = ("import sys, torch, numpy as np; sys.path.insert(0, sys.argv[1]); import lenet;"
             "from netparity.spec import zoo, init_weights;"
             "m = lenet.build_model(); m.load_state_dict(torch.load(sys.argv[1] + '/lenet.pt'));"
             "w = init_weights(zoo.get('lenet_bn'), 5);"
             "assert np.array_equal(m.conv1.weight.detach().numpy(), w['blocks[0].weight']);"
             "assert np.array_equal(m.fc3.bias.detach().numpy(), w['blocks[15].bias']); print('ok')")
    done = subprocess.run([sys.executable, "-c", check, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


# ---------------------------------------------------------------------------------------
# netparity convert: import + emit + native weights + verification in a fresh process
# ---------------------------------------------------------------------------------------

def _cli(*arguments, env_extra=None, cwd=None, timeout=600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3", "COLUMNS": "200", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "netparity.cli", *map(str, arguments)], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=cwd)


def _needs(*frameworks):
    missing = [f for f in frameworks if f not in available()]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (pip install 'netparity[all]')")


def _converted(folder: Path, framework: str, source: str) -> dict:
    record = json.loads((folder / "parity.json").read_text())
    assert record["ok"] and record["framework"] == framework and record["source"].startswith(source)
    assert record["verify_port"] == "equivalent" and record["worst"] <= 1e-5
    assert set(record["errors"]) == {"random 1", "random 2", "random 3", "negative", "positive", "constant", "large"}
    emitted = (folder / "model.py").read_text()
    assert _imports(ast.parse(emitted)) <= ALLOWED_IMPORTS[framework]
    assert Spec.load(folder / "spec.json").infer().parameters > 0
    assert "## What was checked (verified)" in (folder / "README.md").read_text()
    return record


def test_convert_torchvision_model_to_keras(tmp_path):
    _needs("torch", "keras")
    done = _cli("convert", "torchvision:resnet18", "--to", "keras", "--out", tmp_path / "out", "--input-size", 32)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "verified:" in done.stdout
    record = _converted(tmp_path / "out", "keras", "torchvision:resnet18")
    assert record["source_ran"] and record["compared_with"].startswith("torchvision:resnet18 run by PyTorch")
    assert (tmp_path / "out" / "model.weights.h5").exists()


def test_convert_keras_application_to_gluon(tmp_path):
    _needs("keras", "mxnet", "torch")
    done = _cli("convert", "keras.applications:MobileNet", "--to", "mxnet", "--out", tmp_path / "out",
                "--input-size", 32)
    assert done.returncode == 0, done.stderr[-3000:]
    record = _converted(tmp_path / "out", "mxnet", "keras.applications:MobileNet")
    assert "keras.applications:MobileNet run by Keras" in record["compared_with"]


CHECKPOINT = """
import sys
import numpy as np
from netparity.backends.frameworks import import_mxnet
mx = import_mxnet()
nn = mx.gluon.nn
net = nn.HybridSequential()
net.add(nn.Conv2D(4, 3, strides=2, padding=1, in_channels=3), nn.BatchNorm(in_channels=4), nn.Activation("relu"),
        nn.MaxPool2D(3, 2, ceil_mode=True), nn.Dense(5, in_units=4 * 3 * 3))
net.initialize()
rng = np.random.default_rng(0)
for param in net.collect_params().values():
    param.set_data(mx.nd.array(rng.standard_normal(param.shape).astype(np.float32) * 0.5 + 1.0))
net.hybridize()
net(mx.nd.zeros((1, 3, 12, 12)))
net.export(sys.argv[1])
"""


def test_convert_mxnet_checkpoint_to_pytorch_without_mxnet(tmp_path):
    """A legacy checkpoint converts with MXNet absent; the check is then against the imported
    spec built by the backend, and the record says so."""
    _needs("mxnet", "torch")
    made = subprocess.run([sys.executable, "-c", CHECKPOINT, str(tmp_path / "net")], capture_output=True, text=True,
                          timeout=300)
    assert made.returncode == 0, made.stderr[-2000:]
    blocker = tmp_path / "blocked" / "mxnet"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('mxnet is blocked for this test')\n")
    done = _cli("convert", tmp_path / "net-symbol.json", "--params", tmp_path / "net-0000.params", "--to", "torch",
                "--out", tmp_path / "out", "--input-size", 12,
                env_extra={"PYTHONPATH": os.pathsep.join([str(blocker.parent), os.environ.get("PYTHONPATH", "")])})
    assert done.returncode == 0, done.stderr[-3000:]
    record = _converted(tmp_path / "out", "torch", str(tmp_path / "net-symbol.json"))
    assert not record["source_ran"] and "the spec built by netparity's torch backend" in record["compared_with"]
    assert "could not run here" in (tmp_path / "out" / "README.md").read_text()
    # a weight file that no longer holds the source's weights fails the same fresh-process check
    tamper = ("import sys, torch; state = torch.load(sys.argv[1]); key = next(k for k in state if k.endswith('weight'));"
              "state[key] = state[key] * 1.01; torch.save(state, sys.argv[1])")
    assert subprocess.run([sys.executable, "-c", tamper, str(tmp_path / "out" / "model.pt")], timeout=120).returncode == 0
    again = subprocess.run([sys.executable, "-m", "netparity.backends.emit.convert", str(tmp_path / "out"), "torch"],
                           capture_output=True, text=True, timeout=300)
    result = json.loads(again.stdout.strip().splitlines()[-1])
    assert not result["ok"] and "differs from the source's" in result["detail"] and "batch" in result["detail"]


def test_convert_refuses_an_unknown_target(tmp_path):
    result = runner.invoke(app, ["convert", "torchvision:resnet18", "--to", "jax", "--out", str(tmp_path)],
                           terminal_width=200)
    assert result.exit_code == 2 and "--to must be one of torch, mxnet, keras" in result.output


def test_bench_times_the_emitted_code_as_its_own_row():
    _needs("torch")
    from netparity.compare.bench import run_bench

    from netparity.compare.bench_report import emitted_pairs

    report = run_bench("lenet_bn", ["torch", "torch[built]", "torch[emitted]"], "infer", measure_ceiling=False,
                       fast=False, batch_size=8, steps=2, warmup=1, repeats=1)
    rows = {entry["variant"]: entry for entry in report["results"]}
    for label in ("torch", "torch[built]", "torch[emitted]"):
        assert rows[label]["status"] == "ok", rows[label]
    # like for like: the emitted row is compared with the backend-built model under the same steps
    (pair,) = emitted_pairs(report)
    assert pair["built"]["variant"] == "torch[built]" and pair["emitted"]["variant"] == "torch[emitted]"
    assert pair["ratio"] == pytest.approx(rows["torch[emitted]"]["images_per_s"] / rows["torch[built]"]["images_per_s"])


# ---------------------------------------------------------------------------------------
# Every zoo model in every framework, in fresh processes
# ---------------------------------------------------------------------------------------

def _run_worker(*arguments, timeout: int = 600) -> subprocess.CompletedProcess:
    # one thread: on a busy 2-core machine, two OpenMP threads spin-waiting made the check 8x slower
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, str(Path(__file__).resolve()), *arguments], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=str(HERE.parent))


@pytest.mark.parametrize("framework", EMITTERS)
def test_zoo_emitted_models_are_the_spec_in_a_fresh_process(framework, tmp_path):
    """For every zoo model and the kinds spec: the emitted file, imported in a fresh process,
    builds a model with the spec's parameter and running-statistic counts; the framework's own
    loader reads the weight file that the framework's own writer wrote, and gives back the
    canonical weights bitwise; its outputs equal the backend-built model's with those weights
    (1e-5 relative) on random and adversarial inputs (Gluon: hybridized too); and for
    VERIFY_PORT_MODELS, verify_port finds the same function in eval and training mode."""
    if framework not in available():  # looked up, not imported: the frameworks stay out of this process
        pytest.skip(f"{framework} is not installed (pip install 'netparity[{framework}]')")
    written = _run_worker("write", framework, str(tmp_path))
    assert written.returncode == 0, written.stderr[-3000:]
    checked = _run_worker("check", framework, str(tmp_path))
    assert checked.returncode == 0, checked.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["model"] for r in results] == list(MODELS)
    failures = [r for r in results if not r["ok"]]
    assert not failures, json.dumps(failures, indent=1)[:4000]


# ---------------------------------------------------------------------------------------
# The worker (a script: it imports one framework, which the test process must not)
# ---------------------------------------------------------------------------------------

def _write_all(framework: str, folder: Path) -> None:
    emitter = get_emitter(framework)
    timings = {}
    for name in MODELS:
        started = time.perf_counter()
        spec = spec_for(name)
        source = emitter.emit_source(spec)
        (folder / f"{name}.py").write_text(source)
        emitter.write_weights(spec, init_weights(spec, SEED), folder / f"{name}{emitter.WEIGHTS_SUFFIX}", source)
        timings[name] = round(time.perf_counter() - started, 2)
    (folder / "write_timings.json").write_text(json.dumps(timings))


def _load_file(path: Path):
    import importlib.util

    loader = importlib.util.spec_from_file_location(f"emitted_{path.stem}", path)
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return module


def _counts(framework: str, model) -> tuple[int, int]:
    """(trainable parameters, running statistics) as the framework holds them."""
    stats = ("running_mean", "running_var", "moving_mean", "moving_variance")
    if framework == "torch":
        return (sum(p.numel() for p in model.parameters()),
                sum(b.numel() for n, b in model.named_buffers() if n.endswith(stats)))
    if framework == "mxnet":
        params = model.collect_params().values()
        return (sum(int(np.prod(p.shape)) for p in params if p.grad_req != "null"),
                sum(int(np.prod(p.shape)) for p in params if p.name.endswith(stats)))
    return (sum(int(np.prod(v.shape)) for v in model.trainable_weights),
            sum(int(np.prod(v.shape)) for v in model.non_trainable_weights if v.path.endswith(stats)))


def _load_native(framework: str, model, path: Path) -> None:
    if framework == "torch":
        import torch

        model.load_state_dict(torch.load(str(path)))
    elif framework == "mxnet":
        model.load_parameters(str(path))
    else:
        model.load_weights(str(path))


def _forward(framework: str, spec: Spec, model, x: np.ndarray) -> np.ndarray:
    """The emitted model's eval-mode output on NCHW ``x``, in PyTorch's layout."""
    if framework == "torch":
        import torch

        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()
    if framework == "mxnet":
        import mxnet as mx

        return model(mx.nd.array(x)).asnumpy()
    from netparity.backends.keras.emitter import flat_layouts

    out = np.asarray(model(x.transpose(0, 2, 3, 1), training=False))
    if out.ndim == 4:
        return out.transpose(0, 3, 1, 2)
    chw = flat_layouts(spec)[1][f"blocks[{len(spec.blocks) - 1}]"]
    if chw is not None:  # flat features of an NHWC flatten, put in (C, H, W) order
        c, h, w = chw
        out = out.reshape(-1, h, w, c).transpose(0, 3, 1, 2).reshape(len(out), -1)
    return out


def _check_one(framework: str, folder: Path, name: str) -> dict:
    from netparity.backends import get_backend
    from netparity.compare.port import make_inputs, verify_port

    emitter = get_emitter(framework)
    backend = get_backend(framework)
    spec = spec_for(name)
    inference = spec.infer()
    result = {"model": name}
    model = _load_file(folder / f"{name}.py").build_model()
    result["counts"] = list(_counts(framework, model))
    counts_ok = result["counts"] == [inference.parameters, inference.running_stats]
    _load_native(framework, model, folder / f"{name}{emitter.WEIGHTS_SUFFIX}")
    canonical = init_weights(spec, SEED)
    loaded = emitter.read_weights(spec, model)
    result["round_trip"] = list(loaded) == list(canonical) and all(
        np.array_equal(loaded[k], canonical[k]) for k in canonical)
    reference = backend.build(spec)
    backend.set_weights(reference, canonical)
    # verify_port's random and adversarial (negative, positive, constant, large) batches, as one batch
    batches = list(make_inputs(spec.input_shape, SEED).values())
    expected = np.split(backend.forward(reference, np.concatenate(batches)), len(batches))
    got = np.split(_forward(framework, spec, model, np.concatenate(batches)), len(batches))
    worst = max(float(np.abs(g - e).max() / max(float(np.abs(e).max()), 1e-30)) for g, e in zip(got, expected))
    result["output_rel"] = worst
    ok = counts_ok and result["round_trip"] and worst <= 1e-5
    if framework == "mxnet":  # every block hybridizes, and the graph computes the same
        model.hybridize()
        x = make_inputs(spec.input_shape, SEED)["random 1"]
        hybrid = float(np.abs(_forward(framework, spec, model, x) - backend.forward(reference, x)).max())
        result["hybridized_abs"] = hybrid
        ok = ok and hybrid <= 1e-5 * max(float(np.abs(backend.forward(reference, x)).max()), 1.0)
    if name in VERIFY_PORT_MODELS or os.environ.get("NETPARITY_EMIT_VERIFY_ALL"):
        report = verify_port(reference, model, input_shape=spec.input_shape)
        result["verify_port"] = report.equivalent
        if not report.equivalent:
            result["verify_summary"] = report.summary()[-1500:]
        ok = ok and report.equivalent
    result["ok"] = bool(ok)
    return result


def _check_all(framework: str, folder: Path) -> None:
    results = []
    for name in MODELS:
        started, cpu = time.perf_counter(), time.process_time()
        try:
            result = _check_one(framework, folder, name)
        except Exception as error:  # recorded per model, so that one failure names its model
            result = {"model": name, "ok": False, "error": f"{type(error).__name__}: {error}"[:2000]}
        result["seconds"] = round(time.perf_counter() - started, 2)
        result["cpu_seconds"] = round(time.process_time() - cpu, 2)
        results.append(result)
    (folder / "results.json").write_text(json.dumps(results, indent=1))


def _save_whole(framework: str, folder: Path) -> None:
    """The kinds spec's emitted Keras file and its model, every variable (running statistics
    too) set to random values, saved whole by model.save; an NHWC input and its output."""
    spec = golden_spec("kinds")
    (folder / "kinds_model.py").write_text(get_emitter(framework).emit_source(spec))
    model = _load_file(folder / "kinds_model.py").build_model()
    rng = np.random.default_rng(SEED)
    for variable in model.weights:  # running variances positive
        value = rng.standard_normal(variable.shape) * 0.3
        variable.assign((np.abs(value) + 0.5 if "variance" in variable.path else value).astype(np.float32))
    c, h, w = spec.input_shape
    x = rng.standard_normal((2, h, w, c)).astype(np.float32)
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", np.asarray(model(x, training=False)))
    model.save(str(folder / "kinds.keras"))


if __name__ == "__main__":
    command, framework, folder = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    if framework == "torch":
        from netparity.backends.frameworks import load_triton_first

        load_triton_first()
    {"write": _write_all, "check": _check_all, "save": _save_whole}[command](framework, folder)
