"""``netparity import`` end to end, and ``check --weights``.

A small Gluon HybridSequential (conv, BatchNorm with gamma far from 1 and non-trivial running
statistics, ReLU, dense) is exported by MXNet 1.9.1 in the test, then imported through the CLI as
a symbol checkpoint and as ``file.py:factory``: once in this process with MXNet (the self-check
runs MXNet itself) and once in a subprocess where ``import mxnet`` fails (the self-check says it
could not run the source and compares the build with the NumPy reference). Bad paths and files are
one-line errors with exit code 2; a self-check that fails names the layer and writes nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from netparity.backends.frameworks import FrameworkMissing, import_mxnet
from netparity.cli import app
from netparity.spec import Spec

runner = CliRunner()
SIZE = 6
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mx():
    try:
        return import_mxnet()
    except FrameworkMissing as missing:
        pytest.skip(str(missing))


NET_SOURCE = """
def make_net(nn):
    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, 3, padding=1, in_channels=3), nn.BatchNorm(in_channels=4), nn.Activation("relu"),
            nn.Dense(5, in_units=4 * {size} * {size}))
    return net
""".format(size=SIZE)


def _make_net(mx):
    namespace = {}
    exec(NET_SOURCE, namespace)
    return namespace["make_net"](mx.gluon.nn)


@pytest.fixture(scope="module")
def exported(mx, tmp_path_factory):
    """prefix-symbol.json, prefix-0000.params (HybridBlock.export), gluon_model.py:build returning
    the same block, and MXNet's own outputs on a fixed input."""
    folder = tmp_path_factory.mktemp("checkpoint")
    net = _make_net(mx)
    net.initialize()
    rng = np.random.default_rng(0)
    for name, param in net.collect_params().items():
        value = rng.standard_normal(param.shape).astype(np.float32)
        if name.endswith("gamma"):
            value = 2.5 + 0.3 * value  # far from 1
        if name.endswith("running_var"):
            value = 0.5 + np.abs(value)
        param.set_data(mx.nd.array(value))
    net.hybridize()
    x = rng.standard_normal((2, 3, SIZE, SIZE)).astype(np.float32)
    expected = net(mx.nd.array(x)).asnumpy()
    net.export(str(folder / "net"))
    net.save_parameters(str(folder / "gluon.params"))
    factory = folder / "gluon_model.py"
    factory.write_text(textwrap.dedent(f"""
        from netparity.backends.frameworks import import_mxnet

        mx = import_mxnet()
        {NET_SOURCE.strip().replace(chr(10), chr(10) + '        ')}

        def build():
            net = make_net(mx.gluon.nn)
            net.load_parameters({str(folder / "gluon.params")!r})
            return net
        """))
    return {"folder": folder, "symbol": folder / "net-symbol.json", "params": folder / "net-0000.params",
            "factory": f"{factory}:build", "x": x, "expected": expected}


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], terminal_width=200)


def one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def build_output(spec_path, weights_path, x):
    """The written spec built (PyTorch, else the reference) with the written weights, on ``x``."""
    from netparity.backends.importing import read_weights_file
    from netparity.spec import reference

    spec = Spec.load(spec_path)
    weights = read_weights_file(weights_path, spec)
    try:
        from netparity.backends import get_backend
        backend = get_backend("torch")
    except FrameworkMissing:
        backend = reference
    model = backend.build(spec)
    backend.set_weights(model, weights)
    return backend.forward(model, x)


def relative(a, b) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


# -- with MXNet ---------------------------------------------------------------------------------------------

def test_import_checkpoint_checks_against_mxnet(exported, tmp_path):
    out, weights = tmp_path / "net.json", tmp_path / "net-weights.npz"
    result = invoke("import", exported["symbol"], "--params", exported["params"], "-o", out, "--weights", weights,
                    "--input-size", SIZE)
    assert result.exit_code == 0, result.output
    assert "run by MXNet 1.9.1" in result.output and ": ok" in result.output
    # 3*4*9 + 4 conv, 4 + 4 BatchNorm, 4*36*5 + 5 dense; 8 running statistics
    assert "parameters: 845 trainable + 8 running statistics; source: 845 trainable + 8 running statistics (equal)" \
        in result.output
    assert f"wrote {out} and {weights}" in result.output
    assert relative(build_output(out, weights, exported["x"]), exported["expected"]) <= 1e-5
    with np.load(weights) as stored:
        assert sorted(stored.files) == sorted(Spec.load(out).infer().weight_layout())


def test_import_finds_the_params_beside_the_symbol(exported, tmp_path):
    result = invoke("import", exported["symbol"], "-o", tmp_path / "net.json", "--input-size", SIZE)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "net.npz").is_file()  # the default weights path


def test_import_factory_gives_the_same_model(exported, tmp_path):
    invoke("import", exported["symbol"], "--params", exported["params"], "-o", tmp_path / "a.json",
           "--input-size", SIZE)
    result = invoke("import", exported["factory"], "-o", tmp_path / "b.json", "--input-size", SIZE)
    assert result.exit_code == 0, result.output
    assert "run by MXNet 1.9.1" in result.output and ": ok" in result.output
    with np.load(tmp_path / "a.npz") as a, np.load(tmp_path / "b.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])
    assert relative(build_output(tmp_path / "b.json", tmp_path / "b.npz", exported["x"]), exported["expected"]) <= 1e-5


def test_failed_self_check_names_the_layer_and_writes_nothing(exported, tmp_path, monkeypatch):
    import netparity.backends.importing as importing

    real = importing.import_source

    def wrong_running_mean(*args, **kwargs):
        imported = real(*args, **kwargs)
        key = next(k for k in imported.weights if k.endswith("running_mean"))
        imported.weights[key] = imported.weights[key] + 0.5  # what a misread running statistic would do
        return imported

    monkeypatch.setattr(importing, "import_source", wrong_running_mean)
    out = tmp_path / "net.json"
    result = invoke("import", exported["symbol"], "-o", out, "--input-size", SIZE)
    assert result.exit_code == 1, (result.output, result.exception)
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "self-check failed at blocks[1] (" in errors[0], (result.output, result.exc_info)
    assert "nothing written" in errors[0]
    assert "FAILED" in result.output
    assert not out.exists() and not (tmp_path / "net.npz").exists()


def test_check_runs_parity_with_the_imported_weights(exported, tmp_path, monkeypatch):
    invoke("import", exported["symbol"], "-o", tmp_path / "net.json", "--input-size", SIZE)
    import netparity.compare as compare

    real, seen = compare.check_parity, {}

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(compare, "check_parity", spy)
    result = invoke("check", tmp_path / "net.json", "--weights", tmp_path / "net.npz", "--frameworks", "mxnet")
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "net.npz") as stored:
        assert sorted(seen["weights"]) == sorted(stored.files)
        for key in stored.files:
            np.testing.assert_array_equal(seen["weights"][key], stored[key])


def test_check_parity_uses_given_weights(monkeypatch):
    """check_parity(weights=...) builds every participant with those weights, drawing none."""
    import netparity.compare.parity as parity
    from netparity.spec import init_weights, reference, zoo

    spec = zoo.get("lenet").with_input(size=28)
    given = {k: v * 2 for k, v in init_weights(spec, 7).items()}
    received = []
    real_set = reference.set_weights
    monkeypatch.setattr(reference, "set_weights", lambda model, w: (received.append(w), real_set(model, w))[1])
    monkeypatch.setattr(parity, "init_weights", lambda *a, **k: pytest.fail("drew random weights"))
    result = parity.check_parity(spec, frameworks=(), reference=True, weights=given)
    assert received and received[0] is given
    assert result.runs and not result.errors


def test_check_weights_that_do_not_fit(exported, tmp_path):
    invoke("import", exported["symbol"], "-o", tmp_path / "net.json", "--input-size", SIZE)
    with np.load(tmp_path / "net.npz") as stored:
        arrays = dict(stored)
    key = sorted(arrays)[0]
    np.savez(tmp_path / "missing.npz", **{k: v for k, v in arrays.items() if k != key})
    one_line_error(invoke("check", tmp_path / "net.json", "--weights", tmp_path / "missing.npz"),
                   "missing.npz", f"no weight {key!r}")
    np.savez(tmp_path / "shape.npz", **{**arrays, key: arrays[key][..., None]})
    one_line_error(invoke("check", tmp_path / "net.json", "--weights", tmp_path / "shape.npz"), "shape.npz", key)
    (tmp_path / "junk.npz").write_bytes(b"junk")
    one_line_error(invoke("check", tmp_path / "net.json", "--weights", tmp_path / "junk.npz"), "not a NumPy .npz")
    one_line_error(invoke("check", tmp_path / "net.json", "--weights", tmp_path / "none.npz"), "none.npz",
                   "cannot read")


# -- bad input: one line, exit 2 -----------------------------------------------------------------------------

def test_bad_sources_are_one_line_errors(exported, tmp_path):
    out = tmp_path / "out.json"
    one_line_error(invoke("import", tmp_path / "nope-symbol.json", "-o", out), "nope-symbol.json", "no such file")
    one_line_error(invoke("import", exported["symbol"], "--params", tmp_path / "nope.params", "-o", out),
                   "nope.params", "no such file")
    not_json = tmp_path / "broken-symbol.json"
    not_json.write_text("{nodes")
    one_line_error(invoke("import", not_json, "--params", exported["params"], "-o", out), "not valid JSON")
    spec_file = tmp_path / "spec.json"
    invoke("export", "lenet", spec_file)
    one_line_error(invoke("import", spec_file, "-o", out), "is a netparity spec already")
    one_line_error(invoke("import", tmp_path / "model.onnx", "-o", out), "SOURCE is one of", "PREFIX-symbol.json",
                   "FILE.py:FACTORY")
    one_line_error(invoke("import", exported["params"], "-o", out), "weights only")
    one_line_error(invoke("import", "model.py", "-o", out), "name the factory function")
    one_line_error(invoke("import", exported["symbol"], "--input-size", "6,6", "-o", out), "--input-size")
    lonely = tmp_path / "lonely-symbol.json"
    lonely.write_text(exported["symbol"].read_text())
    one_line_error(invoke("import", lonely, "-o", out), "no lonely-NNNN.params beside it", "--params")
    assert not out.exists()


def test_params_that_do_not_match_the_symbol(exported, tmp_path):
    """A params file with a weight of another shape, one without a weight, one cut short: one line each."""
    from netparity.backends.mxnet.importer import read_params, write_params

    arrays = read_params(exported["params"])
    conv = next(k for k in arrays if k.endswith("weight"))
    wrong = {**arrays, conv: np.zeros((4, 3, 5, 5), np.float32)}
    write_params(tmp_path / "wrong.params", wrong)
    out = tmp_path / "out.json"
    line = one_line_error(invoke("import", exported["symbol"], "--params", tmp_path / "wrong.params", "-o", out,
                                  "--input-size", SIZE))
    assert "net-symbol.json" in line and "(4, 3, 5, 5)" in line
    missing = {k: v for k, v in arrays.items() if k != conv}
    write_params(tmp_path / "missing.params", missing)
    line = one_line_error(invoke("import", exported["symbol"], "--params", tmp_path / "missing.params", "-o", out,
                                  "--input-size", SIZE))
    assert "net-symbol.json" in line and conv.split(":")[-1] in line
    data = exported["params"].read_bytes()
    (tmp_path / "cut.params").write_bytes(data[: len(data) // 2])
    one_line_error(invoke("import", exported["symbol"], "--params", tmp_path / "cut.params", "-o", out,
                          "--input-size", SIZE),
                   "cut.params at byte offset", "truncated")
    assert not out.exists()


# -- without MXNet: a subprocess where `import mxnet` fails ---------------------------------------------------

def run_without_mxnet(tmp_path: Path, *args, blocked=("mxnet",)) -> subprocess.CompletedProcess:
    """The CLI in a subprocess where importing each of ``blocked`` raises ImportError."""
    blocker = tmp_path / "blocked"
    for module in blocked:
        (blocker / module).mkdir(parents=True, exist_ok=True)
        (blocker / module / "__init__.py").write_text(f"raise ImportError('{module} is blocked for this test')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")]),
           "COLUMNS": "200", "OMP_NUM_THREADS": "2"}
    return subprocess.run([sys.executable, "-m", "netparity.cli", *map(str, args)], capture_output=True, text=True, env=env, timeout=300,
                          cwd=tmp_path)


def test_import_without_mxnet_says_so_and_checks_the_reference(exported, tmp_path):
    out = tmp_path / "net.json"
    done = run_without_mxnet(tmp_path, "import", exported["symbol"], "--params", exported["params"], "-o", out,
                             "--input-size", SIZE)
    assert done.returncode == 0, done.stdout + done.stderr
    text = " ".join(done.stdout.split())
    assert "the source's own output could not be checked here" in text
    assert "import mxnet failed" in text and "mxnet is blocked for this test" in text
    assert "against the float64 NumPy reference" in text and ": ok" in text
    assert "(equal)" in text
    assert relative(build_output(out, tmp_path / "net.npz", exported["x"]), exported["expected"]) <= 1e-5

    done = run_without_mxnet(tmp_path, "import", exported["factory"], "-o", tmp_path / "b.json")
    assert done.returncode == 2, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "gluon_model.py" in errors[0] and "MXNet" in errors[0], done.stderr
    assert "Traceback" not in done.stderr


def test_import_without_mxnet_or_torch_builds_in_keras(exported, tmp_path):
    pytest.importorskip("keras")
    out = tmp_path / "net.json"
    done = run_without_mxnet(tmp_path, "import", exported["symbol"], "-o", out, "--input-size", SIZE,
                             blocked=("mxnet", "torch"))
    assert done.returncode == 0, done.stdout + done.stderr
    text = " ".join(done.stdout.split())
    assert "self-check: the spec built by netparity's keras backend" in text and ": ok" in text
    assert "against the float64 NumPy reference" in text
    assert relative(build_output(out, tmp_path / "net.npz", exported["x"]), exported["expected"]) <= 1e-5
