"""The tolerance profile: ``[tool.netparity]`` in the project's pyproject.toml.

Tolerances, per-layer overrides and expected differences live in the project's
configuration as data, each with the reason it exists (the way ONNX Runtime keeps
its backend-test exclusions in a filter file rather than in skip decorators)::

    [tool.netparity]
    frameworks = ["torch", "mxnet"]          # default of --netparity-frameworks
    device = "cpu"                           # default of --netparity-device
    report = "reports/netparity.json"        # default of --netparity-report

    [tool.netparity.tolerance]               # per dtype
    float32 = { rtol = 1e-4, atol = 1e-5 }
    bfloat16 = { rtol = 2e-2, atol = 1e-2 }

    [[tool.netparity.layer]]                 # this layer and every layer after it
    model = "resnet*"
    layer = "stage4.*"
    rtol = 1e-3
    reason = "..."

    [[tool.netparity.expected]]              # a known difference: the test xfails (strictly)
    model = "my_net"
    frameworks = ["keras"]
    reason = "..."

Patterns are globs where ``*`` matches any text and ``?`` one character; brackets are
literal, so test ids such as ``test_x[keras]`` need no escaping.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from netparity.spec.errors import NetparityError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest itself depends on tomli there
    import tomli as tomllib

SECTION = "tool.netparity"
DTYPES = ("float64", "float32", "float16", "bfloat16")
DEVICES = ("cpu", "gpu")


class ProfileError(NetparityError, ValueError):
    """[tool.netparity] cannot be used: names the file and the key."""


@dataclass(frozen=True)
class Tolerance:
    """A value is within tolerance when |a - b| <= atol + rtol * max|b|."""

    rtol: float
    atol: float


@dataclass(frozen=True)
class LayerOverride:
    """Looser tolerance from a layer on: the layer and everything after it in execution order
    (a difference carries forward through the rest of the network)."""

    layer: str
    rtol: float
    reason: str
    model: str = "*"
    atol: float | None = None
    where: str = ""  # [tool.netparity.layer][i], for messages and the report

    def to_dict(self) -> dict:
        return {"model": self.model, "layer": self.layer, "rtol": self.rtol, "atol": self.atol,
                "reason": self.reason, "where": self.where}


@dataclass(frozen=True)
class Expected:
    """A known difference. With only ``test``: the matching tests are marked xfail. With ``model``
    and/or ``frameworks``: a failing check of that model among those frameworks xfails the test
    that ran it. ``strict``: when the difference no longer shows, the test fails (remove the entry)."""

    reason: str
    test: str | None = None
    model: str | None = None
    frameworks: tuple[str, ...] | None = None
    strict: bool = True
    where: str = ""

    @property
    def test_level(self) -> bool:
        return self.model is None and self.frameworks is None

    def matches_test(self, nodeid: str) -> bool:
        return self.test is None or matches_test_id(self.test, nodeid)

    def matches_check(self, nodeid: str, models, frameworks) -> bool:
        if self.test_level or not self.matches_test(nodeid):
            return False
        if self.model is not None and not any(matches(self.model, name) for name in models):
            return False
        return self.frameworks is None or bool(set(self.frameworks) & set(frameworks))

    def to_dict(self) -> dict:
        return {"reason": self.reason, "test": self.test, "model": self.model,
                "frameworks": list(self.frameworks) if self.frameworks else None, "strict": self.strict,
                "where": self.where}


@dataclass
class Profile:
    path: str | None = None
    frameworks: tuple[str, ...] | None = None
    device: str | None = None
    report: str | None = None
    tolerances: dict[str, Tolerance] = field(default_factory=dict)
    layers: list[LayerOverride] = field(default_factory=list)
    expected: list[Expected] = field(default_factory=list)

    def tolerance(self, dtype: str = "float32") -> Tolerance:
        """The profile's tolerance for ``dtype``; float32 falls back on netparity's defaults."""
        if dtype in self.tolerances:
            return self.tolerances[dtype]
        if dtype == "float32":
            from netparity.compare.port import DEFAULT_ATOL, DEFAULT_RTOL

            return Tolerance(DEFAULT_RTOL, DEFAULT_ATOL)
        where = f" in {self.path}" if self.path else ""
        raise ProfileError(f"no tolerance for {dtype!r}: add [tool.netparity.tolerance] {dtype} = "
                           f"{{ rtol = ..., atol = ... }}{where} (netparity has defaults for float32 only)")

    def override_for(self, models, layers, current: Tolerance) -> LayerOverride | None:
        """The first override (in file order) for one of ``models`` and one of ``layers`` that loosens
        ``current``."""
        for override in self.layers:
            if not any(matches(override.model, name) for name in models):
                continue
            if not any(matches(override.layer, name) for name in layers):
                continue
            if override.rtol > current.rtol or (override.atol or 0.0) > current.atol:
                return override
        return None

    def to_dict(self) -> dict:
        return {"path": self.path, "frameworks": list(self.frameworks) if self.frameworks else None,
                "device": self.device, "report": self.report,
                "tolerance": {k: {"rtol": v.rtol, "atol": v.atol} for k, v in self.tolerances.items()},
                "layer": [o.to_dict() for o in self.layers], "expected": [e.to_dict() for e in self.expected]}


# ---------------------------------------------------------------------------------------
# Patterns
# ---------------------------------------------------------------------------------------

def _glob_regex(pattern: str) -> re.Pattern:
    return re.compile(re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".") + r"\Z", re.DOTALL)


def matches(pattern: str, text: str) -> bool:
    return _glob_regex(pattern).match(str(text)) is not None


def matches_test_id(pattern: str, nodeid: str) -> bool:
    """A test pattern matches the whole node id, or the part after its last '/', so
    ``test_models.py::test_x[keras]`` works from any rootdir."""
    ids = {nodeid, nodeid.rsplit("@", 1)[0]}  # with and without xdist's @group suffix (--dist loadgroup)
    return any(matches(pattern, i) or matches(pattern, i.rsplit("/", 1)[-1]) for i in ids)


# ---------------------------------------------------------------------------------------
# Reading and checking
# ---------------------------------------------------------------------------------------

def find_pyproject(rootpath: Path, inipath: Path | None) -> Path | None:
    """pytest's configuration file when it is a pyproject.toml, else the one in the rootdir."""
    if inipath is not None and Path(inipath).name == "pyproject.toml":
        return Path(inipath)
    candidate = Path(rootpath) / "pyproject.toml"
    return candidate if candidate.is_file() else None


def load_profile(path: Path | str | None) -> Profile:
    """The profile in ``path`` (a pyproject.toml); an empty profile when the file or the section is
    absent. ProfileError names the file and the key for anything it cannot use."""
    if path is None:
        return Profile()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ProfileError(f"{path}: cannot read it: {error}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        if "netparity" not in text:
            return Profile()  # not ours to judge; pytest reports a broken configuration itself
        raise ProfileError(f"{path}: not valid TOML: {error}") from None
    section = data.get("tool", {}).get("netparity")
    if section is None:
        return Profile()
    return parse_profile(section, str(path))


def parse_profile(section, path: str = "") -> Profile:
    where = f"{path}: [{SECTION}]" if path else f"[{SECTION}]"
    table = _table(section, where)
    _known(table, ("frameworks", "device", "report", "tolerance", "layer", "expected"), where)
    profile = Profile(path=path or None)
    if "frameworks" in table:
        profile.frameworks = _frameworks(table["frameworks"], f"{where}.frameworks")
    if "device" in table:
        profile.device = _choice(table["device"], DEVICES, f"{where}.device")
    if "report" in table:
        profile.report = _text(table["report"], f"{where}.report")
    tolerances = _table(table.get("tolerance", {}), f"{where}.tolerance")
    for dtype, entry in tolerances.items():
        key = f"{where}.tolerance.{dtype}"
        if dtype not in DTYPES:
            raise ProfileError(f"{key}: unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
        entry = _table(entry, key)
        _known(entry, ("rtol", "atol"), key)
        _required(entry, ("rtol", "atol"), key)
        profile.tolerances[dtype] = Tolerance(_number(entry["rtol"], f"{key}.rtol"),
                                              _number(entry["atol"], f"{key}.atol"))
    for index, entry in enumerate(_array(table.get("layer", []), f"{where}.layer")):
        key = f"{where}.layer[{index}]"
        entry = _table(entry, key)
        _known(entry, ("model", "layer", "rtol", "atol", "reason"), key)
        _required(entry, ("layer", "rtol", "reason"), key)
        profile.layers.append(LayerOverride(
            layer=_text(entry["layer"], f"{key}.layer"), rtol=_number(entry["rtol"], f"{key}.rtol"),
            reason=_text(entry["reason"], f"{key}.reason"), model=_text(entry.get("model", "*"), f"{key}.model"),
            atol=_number(entry["atol"], f"{key}.atol") if "atol" in entry else None,
            where=f"[{SECTION}.layer][{index}]"))
    for index, entry in enumerate(_array(table.get("expected", []), f"{where}.expected")):
        key = f"{where}.expected[{index}]"
        entry = _table(entry, key)
        _known(entry, ("test", "model", "frameworks", "reason", "strict"), key)
        _required(entry, ("reason",), key)
        if not {"test", "model", "frameworks"} & set(entry):
            raise ProfileError(f"{key}: say what is expected to differ: give test, model or frameworks")
        strict = entry.get("strict", True)
        if not isinstance(strict, bool):
            raise ProfileError(f"{key}.strict must be true or false, got {strict!r}")
        profile.expected.append(Expected(
            reason=_text(entry["reason"], f"{key}.reason"),
            test=_text(entry["test"], f"{key}.test") if "test" in entry else None,
            model=_text(entry["model"], f"{key}.model") if "model" in entry else None,
            frameworks=_frameworks(entry["frameworks"], f"{key}.frameworks") if "frameworks" in entry else None,
            strict=strict, where=f"[{SECTION}.expected][{index}]"))
    return profile


def _table(value, key: str) -> dict:
    if not isinstance(value, dict):
        raise ProfileError(f"{key} must be a table, got {type(value).__name__} {value!r}")
    return value


def _array(value, key: str) -> list:
    if not isinstance(value, list):
        raise ProfileError(f"{key} must be an array of tables ([[{key.rsplit('[', 1)[-1].rstrip(']')}]]), "
                           f"got {type(value).__name__}")
    return value


def _known(table: dict, allowed, key: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ProfileError(f"{key}: unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed)}")


def _required(table: dict, needed, key: str) -> None:
    missing = [name for name in needed if name not in table]
    if missing:
        raise ProfileError(f"{key}: missing {', '.join(map(repr, missing))}")


def _number(value, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ProfileError(f"{key} must be a finite number >= 0, got {value!r}")
    return float(value)


def _text(value, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ProfileError(f"{key} must be a non-empty string, got {value!r}")
    return value


def _choice(value, choices, key: str) -> str:
    if value not in choices:
        raise ProfileError(f"{key} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _frameworks(value, key: str) -> tuple[str, ...]:
    from netparity.backends import BACKEND_NAMES

    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ProfileError(f"{key} must be a list of framework names, got {value!r}")
    unknown = [v for v in value if v not in BACKEND_NAMES]
    if unknown:
        raise ProfileError(f"{key}: unknown framework(s) {', '.join(map(repr, unknown))}; "
                           f"choose from {', '.join(BACKEND_NAMES)}")
    return tuple(value)
