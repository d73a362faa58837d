"""The pytest hooks and fixtures of ``netparity.testing`` (registered through the ``pytest11``
entry point, so pytest loads them in every run once netparity is installed).

Everything here must be harmless in a run that does not use it: no framework is imported until a
test asks for one, the options have inert defaults, and no file is written unless a netparity test
ran or a report path was given.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .checks import Context, ParityCheck, active
from .profile import DEVICES, Profile, ProfileError, find_pyproject, load_profile
from .report import ATTRIBUTE, Collector, write

GROUP_PREFIX = "netparity-"
CROSS_GROUP = "netparity-cross-framework"  # tests that run several frameworks in one process
FRAMEWORK_MARK = "netparity_framework"  # on each test the `framework` fixture parametrises


@dataclass
class State:
    profile: Profile
    frameworks: tuple[str, ...]
    device: str
    report_path: Path | None
    report_requested: bool  # by option or profile (write it even when no netparity test ran)
    xdist: bool
    worker: bool
    collector: Collector = field(default_factory=Collector)
    workers: set = field(default_factory=set)
    written: Path | None = None
    _installed: frozenset | None = None

    def installed(self) -> frozenset:
        """The selectable frameworks that are installed (found, not imported)."""
        if self._installed is None:
            from netparity.backends import available

            self._installed = frozenset(available())
        return self._installed


STATE = pytest.StashKey[State]()
RECORDS = pytest.StashKey[list]()  # the checks a test ran
_SENT = pytest.StashKey[int]()  # how many of them already rode on a report


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("netparity", "netparity: cross-framework checks")
    group.addoption("--netparity-frameworks", default=None, metavar="NAMES",
                    help="comma-separated frameworks for the `framework` and `parity` fixtures, e.g. torch,keras "
                         "(default: [tool.netparity] frameworks, else torch,mxnet,keras; missing ones are skipped)")
    group.addoption("--netparity-device", default=None, choices=DEVICES,
                    help="device for netparity's checks (default: [tool.netparity] device, else cpu)")
    group.addoption("--netparity-report", default=None, metavar="PATH",
                    help="write the netparity JSON report here (default: [tool.netparity] report, else next to "
                         "--junitxml as NAME.netparity.json)")
    group.addoption("--netparity-profile", default=None, metavar="PATH",
                    help="the pyproject.toml whose [tool.netparity] holds the tolerance profile "
                         "(default: pytest's pyproject.toml, else the rootdir's)")


def _parse_frameworks(text: str) -> tuple[str, ...]:
    from netparity.backends import BACKEND_NAMES

    names = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    unknown = [name for name in names if name not in BACKEND_NAMES]
    if unknown or not names:
        raise pytest.UsageError(f"--netparity-frameworks: unknown framework(s) {', '.join(unknown) or repr(text)}; "
                                f"choose from {', '.join(BACKEND_NAMES)}")
    return names


def _state(config: pytest.Config) -> State:
    option = config.option
    profile_path = option.netparity_profile or find_pyproject(config.rootpath, config.inipath)
    try:
        profile = load_profile(profile_path)
    except ProfileError as error:
        raise pytest.UsageError(f"netparity: {error}") from None
    if option.netparity_frameworks:
        frameworks = _parse_frameworks(option.netparity_frameworks)
    elif profile.frameworks:
        frameworks = profile.frameworks
    else:
        from netparity.backends import BACKEND_NAMES

        frameworks = tuple(BACKEND_NAMES)
    report_path, requested = None, True
    if option.netparity_report:
        report_path = Path(option.netparity_report)
    elif profile.report:
        report_path = Path(config.rootpath) / profile.report
    elif getattr(option, "xmlpath", None):
        xml = Path(option.xmlpath)
        report_path, requested = xml.with_name(xml.stem + ".netparity.json"), False
    return State(profile=profile, frameworks=frameworks, device=option.netparity_device or profile.device or "cpu",
                 report_path=report_path, report_requested=requested and report_path is not None,
                 xdist=config.pluginmanager.hasplugin("xdist"), worker=hasattr(config, "workerinput"))


def pytest_configure(config: pytest.Config) -> None:
    state = config.stash[STATE] = _state(config)
    config.addinivalue_line("markers", f"{FRAMEWORK_MARK}(name): the framework of a test that takes netparity's "
                                       "`framework` fixture (set by the plugin)")
    if not state.xdist:  # so that tests grouped for xdist still run cleanly (--strict-markers) without it
        config.addinivalue_line("markers", "xdist_group(name): pytest-xdist's group (netparity registers it "
                                           "when pytest-xdist is not installed)")
    if not state.worker:
        config.pluginmanager.register(Session(config, state), "netparity-session")
    else:
        config.pluginmanager.register(LoadGroupIds(), "netparity-loadgroup-ids")
        # One thread pool per worker process, sized to its share of the cores, unless the user chose.
        count = int(config.workerinput.get("workercount", 1))
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(count, 1))))


# ---------------------------------------------------------------------------------------
# Collection: the framework parameter, xdist groups, expected differences
# ---------------------------------------------------------------------------------------

def _uses_our_framework_fixture(metafunc: pytest.Metafunc) -> bool:
    if "framework" not in metafunc.fixturenames:
        return False
    for marker in metafunc.definition.iter_markers("parametrize"):
        names = marker.args[0] if marker.args else marker.kwargs.get("argnames", ())
        names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        if "framework" in names:
            return False  # the test chose its frameworks itself
    definitions = getattr(metafunc, "_arg2fixturedefs", {}).get("framework")
    return not definitions or getattr(definitions[-1].func, "__module__", None) == __name__  # not a user's own


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if not _uses_our_framework_fixture(metafunc):
        return
    from netparity.backends.frameworks import FrameworkMissing

    state = metafunc.config.stash[STATE]
    params = []
    for name in state.frameworks:
        marks = [getattr(pytest.mark, FRAMEWORK_MARK)(name)]
        if name not in state.installed():
            marks.append(pytest.mark.skip(reason=str(FrameworkMissing(name))))
        if state.xdist:
            marks.append(pytest.mark.xdist_group(GROUP_PREFIX + name))
        params.append(pytest.param(name, marks=marks, id=name))
    metafunc.parametrize("framework", params, indirect=True)


def _framework_of(item) -> str | None:
    """The framework netparity's `framework` fixture gives this test (not a test's own "framework" argument)."""
    mark = item.get_closest_marker(FRAMEWORK_MARK)
    return str(mark.args[0]) if mark is not None and mark.args else None


def _is_netparity_test(item) -> bool:
    return _framework_of(item) is not None or "parity" in getattr(item, "fixturenames", ())


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups (it renames node ids by group)
def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    state = config.stash[STATE]
    test_level = [entry for entry in state.profile.expected if entry.test_level]
    for item in items:
        if state.xdist and "parity" in getattr(item, "fixturenames", ()) and _framework_of(item) is None \
                and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(CROSS_GROUP))
        for entry in test_level:
            if entry.matches_test(item.nodeid):
                item.add_marker(pytest.mark.xfail(reason=f"{entry.reason} ({entry.where})", strict=entry.strict))
                break


def _drop_group_suffix(report) -> None:
    """Give a netparity test's report back its own node id: the ``@netparity-...`` that --dist
    loadgroup appends would otherwise reach the terminal and JUnit XML (where pytest 9.2 even reads
    ``test_x[torch]@netparity-torch`` as parameters ``torch]@netparity-torch``), so the same test
    would be named differently with and without xdist."""
    data = getattr(report, ATTRIBUTE, None)
    if not isinstance(data, str):
        return
    import json

    info = json.loads(data)
    group, plain = info.get("group"), info.get("nodeid")
    if group and plain and GROUP_PREFIX in group and report.nodeid == f"{plain}@{group}":
        report.nodeid = plain


class LoadGroupIds:
    """On an xdist worker: make ``--dist loadgroup`` see netparity's groups.

    pytest-xdist (3.8) tells the controller a test's group by renaming its node id to
    ``nodeid@group`` through ``item._nodeid``; pytest 9.2 keeps node ids in a structured ``item._id``
    and ignores that, so loadgroup silently stops grouping (pytest-dev/pytest-xdist#1386, fix pending
    in #1388). After xdist's own hook, this gives the renamed id to the items in a netparity group that
    still lack it; where xdist's renaming works it finds the suffix and does nothing.
    """

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config, items) -> None:
        if not getattr(config.option, "loadgroup", False):
            return
        try:
            from _pytest.nodeid import coerce_node_id
        except ImportError:  # a pytest without structured ids: xdist's renaming works there
            return
        for item in items:
            names = sorted({_mark_group(mark) for mark in item.iter_markers("xdist_group")})
            if not any(name.startswith(GROUP_PREFIX) for name in names):
                continue
            suffix = "@" + "_".join(names)
            if not item.nodeid.endswith(suffix) and hasattr(item, "_id"):
                item._id = coerce_node_id(item.nodeid + suffix)


# ---------------------------------------------------------------------------------------
# Running: one Context per test; what it did rides on its reports
# ---------------------------------------------------------------------------------------

def _mark_group(mark) -> str:
    return str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))


def _group(item) -> str | None:
    """The item's xdist group(s), joined the way xdist joins them in a node id."""
    names = sorted({_mark_group(mark) for mark in item.iter_markers("xdist_group")})
    return "_".join(names) or None


def _plain_nodeid(item) -> str:
    """The node id without the ``@group`` that --dist loadgroup appends."""
    group = _group(item)
    suffix = f"@{group}" if group else None
    return item.nodeid[: -len(suffix)] if suffix and item.nodeid.endswith(suffix) else item.nodeid


# Old-style hook wrappers (hookwrapper=True): a user's older pytest must still load this module.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    state = item.config.stash[STATE]
    records = item.stash.setdefault(RECORDS, [])
    with active(Context(state.profile, _plain_nodeid(item), state.device, records)):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    records = item.stash.get(RECORDS, [])
    sent = item.stash.get(_SENT, 0)
    group = _group(item)
    if records or _is_netparity_test(item) or (group and GROUP_PREFIX in group):
        import json

        setattr(report, ATTRIBUTE, json.dumps({"nodeid": _plain_nodeid(item), "framework": _framework_of(item),
                                               "group": group, "checks": records[sent:]}, default=str))
        item.stash[_SENT] = len(records)



class Session:
    """The controller's side (or the only process without xdist): collects what the tests did and
    writes the report. Registered by pytest_configure, so its hooks know the config."""

    def __init__(self, config: pytest.Config, state: State):
        self.config = config
        self.state = state

    @pytest.hookimpl(tryfirst=True)  # before the terminal and JUnit XML read the node id
    def pytest_runtest_logreport(self, report) -> None:
        if getattr(report, "worker_id", None):
            self.state.workers.add(report.worker_id)
        _drop_group_suffix(report)
        self.state.collector.add(report)

    def pytest_sessionfinish(self, session, exitstatus) -> None:
        state = self.state
        if state.report_path is None or (not state.collector.tests and not state.report_requested):
            return  # the JUnit XML's sibling appears only when netparity tests ran
        write(state.report_path, state.collector.document(state.frameworks, state.device, state.profile,
                                                          state.workers))
        state.written = state.report_path

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.state.written is None:
            return
        tests = self.state.collector.tests.values()
        checks = sum(len(test["checks"]) for test in tests)
        terminalreporter.write_line(f"netparity: {len(tests)} tests, {checks} checks; "
                                    f"report written to {self.state.written}")


# ---------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------

@pytest.fixture
def framework(request) -> str:
    """The framework this test runs in ("torch", "mxnet" or "keras"): the plugin runs the test once
    per framework selected by --netparity-frameworks; a framework that is not installed is skipped
    with the reason. Under pytest-xdist each framework's tests share an xdist group
    (``--dist loadgroup`` keeps them on one worker)."""
    if not hasattr(request, "param"):
        pytest.fail("the `framework` fixture is parametrised by netparity's plugin: take it as a test argument")
    return request.param


@pytest.fixture
def parity(request) -> ParityCheck:
    """``parity(spec_or_zoo_name, input_shape=None, rtol=None, frameworks=None, ...)`` runs
    netparity's check_parity and fails the test (with where and by how much) unless the spec is
    the same function everywhere. With the ``framework`` fixture: that framework only."""
    state = request.config.stash[STATE]
    chosen = _framework_of(request.node)
    return ParityCheck((chosen,) if chosen else state.frameworks, state.device)


@pytest.fixture
def netparity_profile(request) -> Profile:
    """The [tool.netparity] profile (``.tolerance("bfloat16")`` for your own comparisons)."""
    return request.config.stash[STATE].profile


@pytest.fixture
def netparity_device(request) -> str:
    """The device chosen by --netparity-device ("cpu" or "gpu")."""
    return request.config.stash[STATE].device
