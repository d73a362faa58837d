"""The command line: list, show, export, check."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import netparity.backends
import netparity.backends.frameworks
import netparity.cli
from netparity.cli import app
from netparity.spec import Spec, zoo

from helpers import installed_or_skip

runner = CliRunner()


def test_list_names_every_zoo_model():
    result = runner.invoke(app, ["list"], terminal_width=200)
    assert result.exit_code == 0
    for name in zoo.names():
        assert name in result.output


def test_show_vgg11_prints_block_shapes():
    result = runner.invoke(app, ["show", "vgg11"], terminal_width=200)
    assert result.exit_code == 0
    for shape in ["64x112x112", "128x56x56", "256x28x28", "512x14x14", "512x7x7", "25088", "4096", "10"]:
        assert shape in result.output
    assert "128,806,154" in result.output


def test_export_then_show_the_file(tmp_path):
    path = tmp_path / "my_model.json"
    assert runner.invoke(app, ["export", "resnet18", str(path)]).exit_code == 0
    assert Spec.load(path) == zoo.get("resnet18")
    result = runner.invoke(app, ["show", str(path), "--input-size", "64"], terminal_width=200)
    assert result.exit_code == 0 and "512x2x2" in result.output


def test_show_json_is_the_spec():
    result = runner.invoke(app, ["show", "lenet", "--json"])
    assert Spec.from_json(result.output) == zoo.get("lenet")


def test_unknown_model_and_bad_spec_are_clear(tmp_path):
    result = runner.invoke(app, ["show", "lenet9"], terminal_width=200)
    assert result.exit_code == 2 and "unknown zoo model 'lenet9'" in result.output
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"input_shape": [1, 8, 8],
                               "blocks": [{"kind": "conv2d", "out_channels": 4, "kernel": 11}]}))
    result = runner.invoke(app, ["check", str(bad)], terminal_width=200)
    assert result.exit_code == 2
    assert "blocks[0]" in result.output and "larger than the padded input" in result.output


def test_check_unknown_framework():
    result = runner.invoke(app, ["check", "lenet", "--frameworks", "torch,caffe"], terminal_width=200)
    assert result.exit_code == 2 and "caffe" in result.output


@pytest.mark.parametrize("command", ["check", "train", "compare", "bench"])
def test_unknown_device_is_refused_before_anything_runs(command, tmp_path):
    result = runner.invoke(app, [command, "lenet", "--device", "tpu", "--out" if command != "check" else "--batch",
                                 str(tmp_path / "out") if command != "check" else "2"])
    assert result.exit_code == 2 and result.output == "error: --device must be cpu or gpu, got 'tpu'\n", result.output


def test_check_passes_and_writes_json(tmp_path):
    frameworks = installed_or_skip()
    out = tmp_path / "parity.json"
    result = runner.invoke(app, ["check", "lenet_bn", "--frameworks", ",".join(frameworks), "--json", str(out)],
                           terminal_width=200)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["ok"] is True and [r["framework"] for r in data["runs"]] == [*frameworks, "reference"]
    # every framework pair, and every framework against the float64 reference
    assert len(data["pairs"]) == len(frameworks) * (len(frameworks) - 1) // 2 + len(frameworks)


def test_check_fails_with_exit_1_when_parity_breaks(tmp_path):
    installed_or_skip()
    # a tolerance below float32 rounding cannot hold across frameworks on a deep net
    result = runner.invoke(app, ["check", "resnet18", "--input-size", "32", "--rtol", "1e-12"], terminal_width=200)
    assert result.exit_code == 1 and "FAIL" in result.output


def test_compare_runs_parity_training_and_report(tmp_path):
    frameworks = installed_or_skip()
    out = tmp_path / "run"
    args = ["compare", "lenet_bn", "--frameworks", ",".join(frameworks), "--dataset", "synthetic",
            "--train-limit", "256", "--test-limit", "128", "--epochs", "1", "--seeds", "1", "--no-progress",
            "--out", str(out)]
    result = runner.invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert (out / "report.html").exists() and (out / "report.md").exists()
    results = json.loads((out / "results.json").read_text())
    assert results["parity"]["ok"] is True and results["settings"]["dataset"] == "synthetic"
    assert "report:" in result.output
    # the same folder again without --resume would overwrite a run: refused
    again = runner.invoke(app, args, terminal_width=200)
    assert again.exit_code == 2 and "--resume" in again.output
    # the report command rebuilds the page from results.json alone
    (out / "report.html").unlink()
    assert runner.invoke(app, ["report", str(out)]).exit_code == 0 and (out / "report.html").exists()


def test_report_of_a_folder_without_results_names_the_file(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path)], terminal_width=200)
    assert result.exit_code == 2 and "results.json" in result.output


def test_train_with_missing_data_is_a_clear_error(tmp_path):
    installed_or_skip(1)
    result = runner.invoke(app, ["train", "lenet", "--frameworks", "torch", "--data-dir", str(tmp_path / "none"),
                                 "--out", str(tmp_path / "run"), "--no-progress", "--no-parity"], terminal_width=200)
    assert result.exit_code == 2 and str(tmp_path / "none") in result.output


def test_verify_names_the_mistake_and_passes_the_fix(tmp_path):
    installed_or_skip(3)
    (tmp_path / "reference.py").write_text(
        "import torch.nn as nn\n"
        "def build():\n"
        "    return nn.Sequential(nn.Conv2d(1, 4, 3, 2, 1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),\n"
        "                         nn.Linear(4 * 7 * 7, 10))\n")
    port = ("from netparity.backends.frameworks import import_keras\n"
            "keras = import_keras()\n"
            "L = keras.layers\n"
            "def build():\n"
            "    i = keras.Input((14, 14, 1))\n"
            "    x = {conv}\n"
            "    x = L.BatchNormalization(epsilon=1e-5, momentum=0.9)(x)\n"
            "    x = L.Flatten()(L.Activation('relu')(x))\n"
            "    return keras.Model(i, L.Dense(10)(x))\n")
    (tmp_path / "wrong.py").write_text(port.format(conv="L.Conv2D(4, 3, strides=2, padding='same')(i)"))
    (tmp_path / "right.py").write_text(port.format(conv="L.Conv2D(4, 3, strides=2)(L.ZeroPadding2D(1)(i))"))
    wrong = runner.invoke(app, ["verify", f"{tmp_path}/reference.py:build", f"{tmp_path}/wrong.py:build",
                                "--input-size", "14", "--json", str(tmp_path / "r.json")], terminal_width=200)
    assert wrong.exit_code == 1, wrong.output
    assert "same_padding" in wrong.output and "NOT EQUIVALENT" in wrong.output
    assert json.loads((tmp_path / "r.json").read_text())["equivalent"] is False
    right = runner.invoke(app, ["verify", f"{tmp_path}/reference.py:build", f"{tmp_path}/right.py:build",
                                "--input-size", "14"], terminal_width=200)
    assert right.exit_code == 0, right.output
    missing = runner.invoke(app, ["verify", "lenet", f"{tmp_path}/absent.py:build"], terminal_width=200)
    assert missing.exit_code == 2 and "absent.py" in missing.output


def test_bench_writes_bench_json(tmp_path, monkeypatch):
    installed_or_skip(1)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the ceiling cache
    out = tmp_path / "bench"
    result = runner.invoke(app, ["bench", "lenet_bn", "--frameworks", "torch", "--no-fast-modes", "--mode", "infer",
                                 "--steps", "1", "--warmup", "0", "--repeats", "1", "--batch-size", "4",
                                 "--out", str(out)], terminal_width=200)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "bench.json").read_text())
    assert [(e["variant"], e["mode"], e["status"]) for e in report["results"]] == [("torch", "infer", "ok")]
    assert report["results"][0]["images_per_s"] > 0 and report["flops"]["macs_per_image"] > 0
    for name in ("bench.html", "bench.md", "bench.png"):  # the report, next to the JSON
        assert (out / name).stat().st_size > 0, name
    bad = runner.invoke(app, ["bench", "lenet_bn", "--mode", "fast", "--out", str(out)], terminal_width=200)
    assert bad.exit_code == 2 and "mode must be" in bad.output


def test_bench_several_models_each_with_its_size(tmp_path, monkeypatch):
    installed_or_skip(1)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "zoo"
    result = runner.invoke(app, ["bench", "lenet:20", "lenet_bn", "--frameworks", "torch", "--no-fast-modes",
                                 "--mode", "infer", "--steps", "1", "--warmup", "0", "--repeats", "1",
                                 "--batch-size", "2", "--out", str(out)], terminal_width=200)
    assert result.exit_code == 0, result.output
    small = json.loads((out / "lenet-20" / "bench.json").read_text())
    assert small["settings"]["input_shape"] == [1, 20, 20]
    assert json.loads((out / "lenet_bn" / "bench.json").read_text())["settings"]["input_shape"] == [1, 28, 28]
    summary = (out / "summary.md").read_text()
    assert "lenet" in summary and "lenet_bn" in summary
    bad = runner.invoke(app, ["bench", "lenet:big", "--out", str(out)], terminal_width=200)
    assert bad.exit_code == 2 and "'lenet:big'" in bad.output


def test_bench_ceiling_alone_and_nothing_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    result = runner.invoke(app, ["bench", "--ceiling"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "cpu ceiling: float32" in result.output and "GFLOP/s" in result.output
    assert (tmp_path / "cache" / "netparity" / "ceiling.json").exists()
    nothing = runner.invoke(app, ["bench"], terminal_width=200)
    assert nothing.exit_code == 2 and "give a MODEL" in nothing.output


# -- bad input: one line, exit code 2, never a traceback ------------------------------------------------------

def _deep_spec(levels: int) -> str:
    nested = '{"kind": "sequence", "layers": [' * levels + '{"kind": "flatten"}' + "]}" * levels
    return '{"input_shape": [1, 8, 8], "blocks": [' + nested + "]}"


BAD_INPUT = {
    # name: (file bytes or None for a zoo name, argument, what the one line names)
    "boolean as integer": (json.dumps({"input_shape": [1, 8, 8], "blocks": [
        {"kind": "conv2d", "out_channels": True, "kernel": 3}]}).encode(), "spec.json", "out_channels"),
    "not UTF-8": (b'\xff\xfe{"input_shape": [1, 8, 8]}', "spec.json", "UTF-8"),
    "nested 500 deep": (_deep_spec(500).encode(), "spec.json", "nested too deeply"),
    "not JSON": (b"{", "spec.json", "not valid JSON"),
    "no such file": (None, "absent.json", "absent.json"),
    "unknown model": (None, "lenet9", "unknown zoo model 'lenet9'"),
}


@pytest.mark.parametrize("command", ["show", "check"])
@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_line_and_exit_2(tmp_path, case, command):
    content, argument, named = BAD_INPUT[case]
    if content is not None:
        (tmp_path / argument).write_bytes(content)
    target = str(tmp_path / argument) if argument.endswith(".json") else argument
    result = runner.invoke(app, [command, target, "--frameworks", "torch"] if command == "check" else
                           [command, target])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # typer's exit, nothing else escaped
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], result.output


def test_bad_spec_in_a_real_process_prints_no_traceback(tmp_path):
    """The console script's path (main(), python -m netparity.cli), not only typer's test runner."""
    (tmp_path / "spec.json").write_bytes(b"\xff\xfe{}")
    done = subprocess.run([sys.executable, "-m", "netparity.cli", "show", str(tmp_path / "spec.json")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert done.stderr.strip().splitlines() == [f"error: invalid spec '{tmp_path / 'spec.json'}': not a UTF-8 "
                                                "text file (byte 0: b'\\xff'); a spec is JSON in UTF-8"]


def test_error_text_is_not_read_as_markup(tmp_path):
    # rich would drop "[b]" as a bold tag without escaping
    result = runner.invoke(app, ["show", str(tmp_path / "my[b]net.json")])
    assert result.exit_code == 2 and "my[b]net.json" in result.output


def test_an_error_from_inside_a_command_is_caught_by_its_base(tmp_path):
    # ResultsError (compare/report.py) and BenchError (compare/bench.py) are NetparityErrors; the commands
    # themselves do not catch them
    (tmp_path / "results.json").write_text("[]")
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and result.output.startswith("error: ") and "expected a JSON object" in result.output
    result = runner.invoke(app, ["bench", "lenet", "--mode", "sideways", "--out", str(tmp_path / "bench")])
    assert result.exit_code == 2 and result.output == "error: mode must be 'train', 'infer' or 'both', got 'sideways'\n"


def test_resume_of_another_model_is_one_line(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"format": "netparity.run/1", "spec": {}, "settings": {}}))
    result = runner.invoke(app, ["train", "lenet", "--frameworks", "torch", "--dataset", "synthetic", "--resume",
                                 "--no-progress", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.startswith(f"error: {tmp_path / 'run.json'}: --resume with a different model"), result.output


def test_every_bad_input_error_has_one_base():
    from netparity.backends import BackendError, FrameworkMissing
    from netparity.compare.bench import BenchError
    from netparity.compare.bench_report import BenchError as ReportBenchError
    from netparity.compare.datasets import DataError
    from netparity.compare.report import ResultsError
    from netparity.spec import NetparityError, SpecError

    assert ReportBenchError is BenchError
    for error in (SpecError, BackendError, FrameworkMissing, DataError, BenchError, ResultsError):
        assert issubclass(error, NetparityError), error


def test_a_bug_is_not_caught(monkeypatch):
    """Only NetparityError becomes one line; any other exception is a bug and keeps its traceback."""
    def broken():
        raise RuntimeError("a bug")

    monkeypatch.setattr(netparity.cli.zoo, "names", broken)
    result = runner.invoke(app, ["list"])
    assert isinstance(result.exception, RuntimeError) and "error:" not in result.output


def _verdict(output: str) -> str:
    return next(line for line in output.splitlines() if line.startswith("parity:"))


def test_missing_framework_hint_is_printed_whole(monkeypatch):
    """rich read "[mxnet]" in the install hint as markup and printed pip install 'netparity'."""
    real = netparity.backends.frameworks.is_installed
    def without_mxnet(module):
        return module != "mxnet" and real(module)

    monkeypatch.setattr(netparity.backends, "is_installed", without_mxnet)
    monkeypatch.setattr(netparity.backends.frameworks, "is_installed", without_mxnet)
    result = runner.invoke(app, ["check", "lenet", "--frameworks", "mxnet"])
    assert "install it with: pip install 'netparity[mxnet]' (needs numpy<2)" in result.output, result.output
    # nothing ran, so nothing was compared: never "parity: ok"
    assert "numerical parity: not checked (no framework ran)" in result.output
    assert _verdict(result.output) == "parity: not checked (no numerical comparison)" and result.exit_code == 1


def test_one_framework_is_not_checked_and_never_ok(tmp_path):
    installed_or_skip(1)
    name = next(n for n in ("torch", "keras", "mxnet") if n in netparity.backends.available())
    result = runner.invoke(app, ["check", "lenet", "--frameworks", name, "--json", str(tmp_path / "r.json")])
    if json.loads((tmp_path / "r.json").read_text())["pairs"]:  # a reference took part: a real comparison
        assert "not checked" not in result.output and _verdict(result.output) in ("parity: ok", "parity: FAIL")
        return
    assert f"numerical parity: not checked (only {name} ran; nothing to compare it with)" in result.output
    assert _verdict(result.output) == "parity: not checked (no numerical comparison)"


def test_summary_of_one_framework_without_reference_is_not_checked():
    import io

    from rich.console import Console

    from netparity.compare.parity import FrameworkRun, ParityResult
    from netparity.compare.summary import print_parity

    result = ParityResult("lenet", [1, 28, 28], 2, 0, "cpu", 1e-4, 10, 0,
                          runs=[FrameworkRun("torch", "2.x", 0.1, 10, 0)])
    out = io.StringIO()
    print_parity(result, Console(file=out, width=200))
    assert "numerical parity: not checked (only torch ran; nothing to compare it with)" in out.getvalue()
    assert _verdict(out.getvalue()) == "parity: not checked (no numerical comparison)"


def test_user_names_are_shown_as_written(tmp_path):
    spec = {"name": "my[b]net", "input_shape": [1, 8, 8], "blocks": [
        {"kind": "conv2d", "name": "[bold]stem[/bold]", "out_channels": 2, "kernel": 3}, {"kind": "flatten"},
        {"kind": "dense", "name": "head[x]", "out_features": 3}]}
    (tmp_path / "named.json").write_text(json.dumps(spec))
    result = runner.invoke(app, ["show", str(tmp_path / "named.json"), "--all"], terminal_width=200,
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for text in ("my[b]net", "[bold]stem[/bold]", "head[x]"):
        assert text in result.output
