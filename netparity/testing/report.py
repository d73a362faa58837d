"""The plugin's JSON report: one entry per test that used netparity, with its checks.

Each worker attaches what its test did to the test report (``report.netparity``, a JSON string,
so it travels over pytest-xdist's channel like any report field, also to remote workers with no
shared filesystem); the controller, or the only process without xdist, collects them here and
writes one file at the end of the session.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

ATTRIBUTE = "netparity"
FORMAT = 1


def _message(report) -> str | None:
    longrepr = report.longrepr
    if longrepr is None:
        return None
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # a skip: (path, line, reason)
        return str(longrepr[2])
    crash = getattr(longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(longrepr)
    return text if len(text) <= 4000 else text[:4000] + " ..."


@dataclass
class Collector:
    """Test reports in, the JSON document out."""

    tests: dict[str, dict] = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    def add(self, report) -> None:
        data = getattr(report, ATTRIBUTE, None)
        if data is None:
            return
        info = json.loads(data) if isinstance(data, str) else data
        entry = self.tests.setdefault(report.nodeid, {
            "nodeid": info.get("nodeid", report.nodeid), "framework": info.get("framework"),
            "group": info.get("group"), "worker": None, "outcome": "passed", "duration": 0.0, "message": None,
            "checks": []})
        entry["worker"] = getattr(report, "worker_id", None) or entry["worker"]
        entry["duration"] = round(entry["duration"] + float(getattr(report, "duration", 0.0) or 0.0), 4)
        entry["checks"].extend(info.get("checks", []))
        outcome = self._outcome(report, entry["outcome"])
        if outcome != entry["outcome"]:
            entry["outcome"] = outcome
            entry["message"] = _message(report)

    @staticmethod
    def _outcome(report, previous: str) -> str:
        xfail = hasattr(report, "wasxfail")
        if report.when == "call":
            if xfail:
                return "xfailed" if report.skipped else "xpassed"
            return report.outcome
        if report.failed:
            return "error" if previous != "failed" else previous
        if report.when == "setup" and report.skipped:
            return "xfailed" if xfail else "skipped"
        return previous

    def document(self, frameworks, device: str, profile, workers) -> dict:
        from netparity import __version__

        tests = list(self.tests.values())
        counts: dict[str, int] = {}
        for test in tests:
            counts[test["outcome"]] = counts.get(test["outcome"], 0) + 1
        return {"format": FORMAT, "tool": "netparity", "version": __version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started)),
                "seconds": round(time.time() - self.started, 3), "frameworks": list(frameworks), "device": device,
                "profile": profile.to_dict(), "workers": sorted(workers), "summary": counts,
                "checks": sum(len(test["checks"]) for test in tests), "tests": tests}


def write(path, document: dict) -> None:
    from netparity.spec.files import write_atomic

    write_atomic(path, json.dumps(document, indent=1, default=str) + "\n")
