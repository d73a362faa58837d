"""netparity's pytest plugin (netparity.testing), run the way a user's project runs it: through
pytester, in process (frameworks already imported stay imported) and once under pytest-xdist."""

import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from netparity.backends import available
from netparity.testing.profile import ProfileError, matches, matches_test_id, parse_profile

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples"
needs_torch = pytest.mark.skipif("torch" not in available(), reason="PyTorch is not installed")
needs_torch_mxnet = pytest.mark.skipif(not {"torch", "mxnet"} <= set(available()),
                                       reason="PyTorch and MXNet are needed for the two-worker run")

PORTS = '''
import pytest
from netparity.spec import Activation, BatchNorm, Conv2d, Dense, GlobalAvgPool, MaxPool2d, Spec
from netparity.testing import assert_same_function

NET = Spec("net", (1, 8, 8), (Conv2d(4, 3, padding=1), BatchNorm(), Activation("relu"), MaxPool2d(2),
                               GlobalAvgPool(), Dense(3)))

def port(eps=1e-5, momentum=0.1):
    nn = pytest.importorskip("torch").nn
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4, eps=eps, momentum=momentum), nn.ReLU(),
                         nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
'''


@pytest.fixture(scope="module")
def loaded():
    """Import the frameworks before any in-process pytester run (a module-scoped fixture is set up
    before the pytester fixture takes its snapshot of sys.modules): pytester drops the modules imported
    after its snapshot, and importing PyTorch or MXNet a second time in one process crashes it."""
    from netparity.backends import get_backend

    for name in ("torch", "mxnet"):
        if name in available():
            get_backend(name)
            __import__("netparity.compare.port")


# hypothesis' plugin imports all of hypothesis (assertion-rewritten) at the end of every in-process run
QUIET = ("-p", "no:hypothesispytest", "-p", "no:cacheprovider")


def run(pytester, *args):
    return pytester.runpytest(*QUIET, *args)


def _example(pytester):
    for name in ("test_my_model.py", "pyproject.toml"):
        (pytester.path / name).write_text((EXAMPLE / name).read_text())


def _report(path: Path) -> dict:
    return json.loads(path.read_text())


# ---------------------------------------------------------------------------------------
# Loading: registered, light, inert when unused
# ---------------------------------------------------------------------------------------

def test_registered_through_pytest11():
    points = {p.name: p.value for p in importlib.metadata.entry_points(group="pytest11")}
    assert points.get("netparity") == "netparity.testing"


def test_importing_the_plugin_imports_no_framework():
    code = ("import sys, netparity.testing; "
            "print(sorted(m for m in ('torch', 'mxnet', 'keras', 'tensorflow', 'jax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_inert_in_a_run_that_does_not_use_it(pytester):
    pytester.makepyfile(test_plain="def test_plain():\n    assert 1 + 1 == 2\n")
    result = run(pytester, "--junitxml=out/junit.xml")
    result.assert_outcomes(passed=1)
    assert (pytester.path / "out" / "junit.xml").is_file()
    assert not (pytester.path / "out" / "junit.netparity.json").exists()
    assert "netparity:" not in result.stdout.str()


def test_unknown_framework_option_is_a_usage_error(pytester):
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = run(pytester, "--netparity-frameworks", "torch,tensorflw")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--netparity-frameworks: unknown framework(s) tensorflw*torch, mxnet, keras*"])


# ---------------------------------------------------------------------------------------
# The example of the README, in process and under xdist
# ---------------------------------------------------------------------------------------

@needs_torch
def test_example_in_process_writes_the_report_next_to_junit(pytester, loaded):
    _example(pytester)
    result = run(pytester, "--netparity-frameworks", "torch", "--junitxml=out/junit.xml", "-rxs")
    result.assert_outcomes(passed=3, xfailed=1)
    result.stdout.fnmatch_lines(["netparity: 4 tests, 4 checks; report written to *junit.netparity.json",
                                 "*XFAIL*test_legacy_port_is_my_net*legacy port keeps Keras' BatchNorm eps*"])
    report = _report(pytester.path / "out" / "junit.netparity.json")
    assert report["frameworks"] == ["torch"]
    assert report["summary"] == {"passed": 3, "xfailed": 1}
    tests = {t["nodeid"]: t for t in report["tests"]}
    each = tests["test_my_model.py::test_my_net_in_each_framework[torch]"]
    assert (each["framework"], each["outcome"], each["checks"][0]["check"]) == ("torch", "passed", "parity")
    assert each["checks"][0]["ok"] and each["checks"][0]["result"]["model"] == "my_net"
    legacy = tests["test_my_model.py::test_legacy_port_is_my_net"]["checks"][0]
    assert legacy["outcome"] == "expected difference" and not legacy["equivalent"]
    assert legacy["diagnosis_code"] == "batchnorm_eps"
    assert legacy["expected"][0]["where"] == "[tool.netparity.expected][0]"


@needs_torch_mxnet
def test_example_under_xdist_keeps_each_framework_on_one_worker(pytester, monkeypatch):
    pytest.importorskip("xdist", reason="pytest-xdist is not installed (it is in the test extra)")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    _example(pytester)
    result = pytester.runpytest_subprocess(*QUIET, "-n", "2", "--dist", "loadgroup",
                                           "--netparity-frameworks", "torch,mxnet", "--junitxml=junit.xml",
                                           timeout=240)
    result.assert_outcomes(passed=4, xfailed=1)
    report = _report(pytester.path / "junit.netparity.json")
    assert report["workers"] == ["gw0", "gw1"]
    assert report["summary"] == {"passed": 4, "xfailed": 1}
    workers: dict[str, set] = {}
    for test in report["tests"]:
        assert "@" not in test["nodeid"]  # xdist's group suffix is not part of the test's name
        assert test["checks"], test
        workers.setdefault(test["group"], set()).add(test["worker"])
    assert set(workers) == {"netparity-torch", "netparity-mxnet", "netparity-cross-framework"}
    assert all(len(names) == 1 for names in workers.values()), workers
    assert workers["netparity-torch"] != workers["netparity-mxnet"]  # the first two groups go to different workers
    # JUnit XML names the tests as a run without xdist does (no '@netparity-torch' appended)
    names = re.findall(r'<testcase classname="test_my_model" name="([^"]+)"', (pytester.path / "junit.xml").read_text())
    assert sorted(names) == sorted(t["nodeid"].split("::")[1] for t in report["tests"])


def test_readme_shows_the_example():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Cross-framework tests in your project", 1)[1].split("\n## ", 1)[0]
    for name, language in (("test_my_model.py", "python"), ("pyproject.toml", "toml")):
        block = f"```{language}\n{(EXAMPLE / name).read_text()}```"
        assert block in section, f"README's code block differs from docs/examples/{name}"


# ---------------------------------------------------------------------------------------
# assert_same_function
# ---------------------------------------------------------------------------------------

@needs_torch
def test_failure_message_is_the_port_summary(pytester, loaded):
    pytester.makepyfile(test_port=PORTS + '''
def test_momentum_copied_from_gluon():
    assert_same_function(NET, port(momentum=0.9))
''')
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E * is not the same function as spec net: eval mode agrees; training mode differs, first at #1*",
        "E *diagnosis: BatchNorm * momentum 0.9*",
        "E *verify_port: reference spec net (torch)*",
        "E *NOT EQUIVALENT",
        "*NotSameFunction*"])
    assert "checks.py" not in result.stdout.str()  # the helper's frames are hidden; the test's line is shown


@needs_torch
def test_eval_only_misses_what_the_training_step_catches(pytester, loaded):
    pytester.makepyfile(test_port=PORTS + '''
def test_momentum_eval_only():
    report = assert_same_function(NET, port(momentum=0.9), training_step=False)
    assert report.training is None
''')
    run(pytester).assert_outcomes(passed=1)


@needs_torch
def test_layer_override_loosens_from_its_layer_on(pytester, loaded):
    # eps 1e-3 instead of 1e-5 moves the BatchNorm ('1' in the port) and the dense layer after it by ~1e-3
    pytester.makepyprojecttoml('''
[tool.netparity]
[[tool.netparity.layer]]
model = "net"
layer = "6"
rtol = 1e-2
reason = "after the BatchNorm only: does not reach back"

[[tool.netparity.layer]]
model = "eps_port"
layer = "1"
rtol = 1e-2
reason = "the BatchNorm and everything after it"
''')
    pytester.makepyfile(test_port=PORTS + '''
def test_override_at_a_later_layer_does_not_help():
    assert_same_function(NET, port(eps=1e-3))

def test_override_at_the_differing_layer():
    assert_same_function(NET, port(eps=1e-3), name="eps_port")
''')
    result = run(pytester, "--netparity-report=np.json")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*first differing layer: #1 blocks[[]1] -> 1 (batchnorm)*"])
    tests = {t["nodeid"].rsplit("::", 1)[1]: t for t in _report(pytester.path / "np.json")["tests"]}
    applied = tests["test_override_at_the_differing_layer"]["checks"][0]["overrides"]
    assert [(o["layer"], o["rtol"]) for o in applied] == [("1", 1e-2)]
    later = tests["test_override_at_a_later_layer_does_not_help"]
    assert later["checks"][0]["overrides"] == [] and later["outcome"] == "failed"
    assert later["message"].startswith("netparity.testing.checks.NotSameFunction: ")
    assert later["checks"][0]["where"].startswith("first differing layer: #1 blocks[1] -> 1 (batchnorm)")


@needs_torch
def test_expected_difference_that_no_longer_shows_fails(pytester, loaded):
    pytester.makepyprojecttoml('''
[[tool.netparity.expected]]
model = "fixed_port"
frameworks = ["torch"]
reason = "was broken once"

[[tool.netparity.expected]]
test = "test_port.py::test_listed_by_name"
reason = "listed by test id"
''')
    pytester.makepyfile(test_port=PORTS + '''
def test_fixed_port():
    assert_same_function(NET, port(), name="fixed_port")

def test_listed_by_name():
    assert_same_function(NET, port(eps=1e-3), name="other")
''')
    result = run(pytester, "-rxX")
    result.assert_outcomes(failed=1, xfailed=1)
    result.stdout.fnmatch_lines(["*port of fixed_port now agrees, but [[]tool.netparity.expected][[]0] expects a "
                                 "difference (was broken once): remove the entry*",
                                 "XFAIL test_port.py::test_listed_by_name - listed by test id*"])


# ---------------------------------------------------------------------------------------
# framework, parity and the options
# ---------------------------------------------------------------------------------------

def test_framework_fixture_skips_a_missing_framework_with_the_reason(pytester, monkeypatch):
    import netparity.backends

    installed = netparity.backends.is_installed
    monkeypatch.setattr(netparity.backends, "is_installed", lambda module: module != "mxnet" and installed(module))
    pytester.makepyfile(test_fw='''
import pytest
from netparity.spec import Dense, Flatten, Spec

def test_runs_in(framework):
    assert framework == "torch"

def test_parity_of_missing_frameworks_is_skipped(parity):
    parity(Spec("tiny", (1, 2, 2), (Flatten(), Dense(2))), frameworks=["mxnet"])

@pytest.mark.parametrize("framework", ["mine"])
def test_chooses_its_own(framework):
    assert framework == "mine"
''')
    result = run(pytester, "--netparity-frameworks", "torch,mxnet", "-rs", "-v", "--junitxml=j.xml")
    result.assert_outcomes(passed=2, skipped=2)
    result.stdout.fnmatch_lines(["*test_runs_in[[]torch] PASSED*", "*test_runs_in[[]mxnet] SKIPPED*",
                                 "SKIPPED*MXNet is not available for the 'mxnet' backend; install it with: "
                                 "pip install 'netparity[[]mxnet]'*",
                                 "SKIPPED*parity of tiny: nothing to compare; mxnet: MXNet is not available*"])
    tests = {t["nodeid"]: (t["framework"], t["outcome"]) for t in _report(pytester.path / "j.netparity.json")["tests"]}
    assert tests == {"test_fw.py::test_runs_in[torch]": ("torch", "passed"),  # not the test's own "framework"
                     "test_fw.py::test_runs_in[mxnet]": ("mxnet", "skipped"),
                     "test_fw.py::test_parity_of_missing_frameworks_is_skipped": (None, "skipped")}


@needs_torch_mxnet
def test_parity_reports_where_and_overrides_loosen_from_their_layer_on(pytester, loaded, monkeypatch):
    # A PyTorch backend that is off by 1e-3 from the max-pool (blocks[3]) on: the parity check must
    # name that layer; an override at blocks[3] accepts it, one at the last layer does not.
    from netparity.backends import get_backend

    torch_backend = get_backend("torch")
    forward_layers = torch_backend.forward_layers

    def off_from_the_pool(model, x, *args, **kwargs):
        layers = forward_layers(model, x, *args, **kwargs)
        return {path: out * 1.001 if path in ("blocks[3]", "blocks[4]", "blocks[5]") else out
                for path, out in layers.items()}

    monkeypatch.setattr(torch_backend, "forward_layers", off_from_the_pool)
    pytester.makepyprojecttoml('''
[[tool.netparity.layer]]
model = "late"
layer = "blocks[5]"
rtol = 1e-2
reason = "the classifier only"

[[tool.netparity.layer]]
model = "pooled"
layer = "blocks[3]"
rtol = 1e-2
reason = "the pooling and everything after it"
''')
    pytester.makepyfile(test_par=PORTS + '''
def test_no_override(parity):
    parity(NET)

def test_override_after_the_difference(parity):
    parity(NET, name="late")

def test_override_at_the_difference(parity):
    parity(NET, name="pooled")
''')
    result = run(pytester, "--netparity-frameworks", "torch,mxnet", "--netparity-report=np.json")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["E * net (input 1x8x8) is not the same function in torch, mxnet*",
                                 "E *torch vs mxnet: first divergence at blocks[[]3] (rel 1.0e-03 > rtol 0.0001)*"])
    tests = {t["nodeid"].rsplit("::", 1)[1]: t for t in _report(pytester.path / "np.json")["tests"]}
    pairs = tests["test_override_at_the_difference"]["checks"][0]["pairs"]
    torch_pairs = [p for p in pairs if "torch" in (p["a"], p["b"])]
    assert torch_pairs and all(p["ok"] and p["overrides"][0]["layer"] == "blocks[3]" for p in torch_pairs)
    assert all(p["overrides"] == [] for p in pairs if "torch" not in (p["a"], p["b"]))


def test_device_and_frameworks_from_the_profile_or_the_options(pytester, monkeypatch):
    pytester.makepyprojecttoml('''
[tool.netparity]
frameworks = ["keras"]
device = "gpu"
''')
    pytester.makepyfile(test_dev='''
import os

def test_device(netparity_device, netparity_profile, parity):
    assert netparity_device == os.environ["WANT_DEVICE"]
    assert parity.frameworks == tuple(os.environ["WANT_FRAMEWORKS"].split(","))
    assert netparity_profile.tolerance("float32").rtol == 1e-4  # netparity's default
''')
    monkeypatch.setenv("WANT_DEVICE", "gpu")
    monkeypatch.setenv("WANT_FRAMEWORKS", "keras")
    run(pytester).assert_outcomes(passed=1)
    monkeypatch.setenv("WANT_DEVICE", "cpu")
    monkeypatch.setenv("WANT_FRAMEWORKS", "torch,mxnet")
    run(pytester, "--netparity-device", "cpu", "--netparity-frameworks", "torch,mxnet").assert_outcomes(passed=1)
    assert run(pytester, "--netparity-device", "tpu").ret == pytest.ExitCode.USAGE_ERROR


@pytest.mark.parametrize("toml, message", [
    ("[tool.netparity]\nrtl = 1\n", "[tool.netparity]: unknown key(s) 'rtl'"),
    ("[tool.netparity.tolerance]\nfloat32 = { rtol = \"1e-4\", atol = 0 }\n",
     "[tool.netparity].tolerance.float32.rtol must be a finite number >= 0, got '1e-4'"),
    ("[[tool.netparity.expected]]\nmodel = \"x\"\n", "[tool.netparity].expected[0]: missing 'reason'"),
])
def test_profile_errors_name_the_file_and_the_key(pytester, toml, message):
    path = pytester.makepyprojecttoml(toml)
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"netparity: {path}: {message}" in result.stderr.str()


# ---------------------------------------------------------------------------------------
# The profile's parts, without pytest runs
# ---------------------------------------------------------------------------------------

def test_profile_parsing_and_lookup():
    profile = parse_profile({
        "tolerance": {"float32": {"rtol": 1e-3, "atol": 0}, "bfloat16": {"rtol": 2e-2, "atol": 1e-2}},
        "layer": [{"model": "res*", "layer": "stage4.*", "rtol": 5e-3, "reason": "deep"}],
        "expected": [{"frameworks": ["keras"], "reason": "r"}]})
    assert profile.tolerance("bfloat16").rtol == 2e-2
    assert profile.tolerance("float32").atol == 0.0
    with pytest.raises(ProfileError, match="no tolerance for 'float16'"):
        profile.tolerance("float16")
    base = profile.tolerance("float32")
    assert profile.override_for(["resnet18"], ["stage4.conv1"], base).reason == "deep"
    assert profile.override_for(["resnet18"], ["stage3.conv1"], base) is None
    assert profile.override_for(["vgg"], ["stage4.conv1"], base) is None
    assert profile.override_for(["resnet18"], ["stage4.conv1"], type(base)(1e-2, 0)) is None  # does not loosen
    assert profile.expected[0].matches_check("t.py::x", ["any"], {"torch", "keras"})
    assert not profile.expected[0].matches_check("t.py::x", ["any"], {"torch"})
    with pytest.raises(ProfileError, match=r"frameworks: unknown framework\(s\) 'tf'"):
        parse_profile({"frameworks": ["tf"]})
    with pytest.raises(ProfileError, match="give test, model or frameworks"):
        parse_profile({"expected": [{"reason": "r"}]})
    with pytest.raises(ProfileError, match="must be a finite number"):
        parse_profile({"tolerance": {"float32": {"rtol": True, "atol": 0}}})


def test_patterns_treat_brackets_literally():
    assert matches("blocks[1]*", "blocks[1].conv")
    assert not matches("blocks[1]", "blocks1")
    assert matches_test_id("test_a.py::test_x[keras]", "tests/test_a.py::test_x[keras]@netparity-keras")
    assert matches_test_id("tests/*::test_x[*]", "tests/test_a.py::test_x[torch]")
    assert not matches_test_id("test_x", "tests/test_a.py::test_x[torch]")
