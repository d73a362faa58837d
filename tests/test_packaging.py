"""The wheel ships every module under its netparity.* name, and builds without deprecation warnings.

(tests/packaging/wheel_smoke.sh, run by `make wheel-smoke` in CI, installs that wheel in a fresh venv.)"""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# repository folder -> installed package (setup.py's mapping)
FOLDERS = {"netparity": "netparity", "spec": "netparity/spec", "backends": "netparity/backends",
           "compare": "netparity/compare"}
NOT_SOURCES = (".git", ".venv", "build", "*.egg-info", "__pycache__", "runs", "out", "tests", "docs",
               ".pytest_cache", ".hypothesis")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(wheel path, build log): built once from a copy of the tree, so a stale in-tree build/
    folder cannot add files the sources no longer have."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCES))
    # --no-build-isolation: the test venv's setuptools, no download; -v shows the backend's warnings
    run = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation",
                          "-w", str(work / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    wheel, = (work / "dist").glob("netparity-*.whl")
    return wheel, run.stdout + run.stderr


def test_every_module_is_in_the_wheel(built):
    wheel, _ = built
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"{package}/{path.relative_to(ROOT / folder).as_posix()}"
                for folder, package in FOLDERS.items()
                for path in (ROOT / folder).rglob("*.py") if "__pycache__" not in path.parts}
    assert "netparity/spec/zoo/__init__.py" in expected  # the subpackage the hand list left out
    assert sorted(expected - names) == []
    # nothing from the checkout lands outside netparity/ (tests, setup.py, the unmapped folders)
    assert sorted(n for n in names if not n.startswith(("netparity/", "netparity-"))) == []


def test_metadata_spdx_license_and_console_script(built):
    wheel, log = built
    with zipfile.ZipFile(wheel) as archive:
        info = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(info).decode()
        entry_points = archive.read(info.replace("METADATA", "entry_points.txt")).decode()
    assert "License-Expression: Apache-2.0" in metadata
    assert "netparity = netparity.cli:main" in entry_points
    warnings = [line for line in log.splitlines() if "Warning" in line or "deprecated" in line.lower()]
    assert not [line for line in warnings if "license" in line.lower()], "\n".join(warnings)
    assert not [line for line in warnings if "Deprecat" in line], "\n".join(warnings)
