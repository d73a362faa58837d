"""Every backend package has the same modules, and in each the same functions with the same
parameters (backends.INTERFACE), as Keras 3's backend consistency test does for its backends.

A backend missing a function, or one whose parameters drift from the others', fails here; so
does a framework import in a module that must work without its framework.
"""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import pytest

from netparity.backends import BACKEND_NAMES, FRAMEWORK_FREE, INTERFACE, available
from netparity.backends.frameworks import FrameworkMissing, import_framework


def _module(framework: str, name: str):
    if name not in FRAMEWORK_FREE:
        try:
            import_framework(framework)
        except FrameworkMissing as error:
            pytest.skip(f"{framework} is not installed: {error}")
    return importlib.import_module(f"netparity.backends.{framework}.{name}")


def _parameters(function) -> list[tuple]:
    """Names, kinds and defaults (annotations differ in spelling between modules)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def _public_functions(module) -> set[str]:
    return {name for name, value in vars(module).items()
            if inspect.isfunction(value) and not name.startswith("_") and value.__module__ == module.__name__}


@pytest.mark.parametrize("module_name", sorted(INTERFACE))
def test_every_backend_defines_the_interface_with_the_same_parameters(module_name):
    frameworks = BACKEND_NAMES if module_name in FRAMEWORK_FREE else available()
    if len(frameworks) < 2:
        pytest.skip(f"fewer than two frameworks installed to compare {module_name} modules")
    modules = {framework: _module(framework, module_name) for framework in frameworks}
    for function_name in INTERFACE[module_name]:
        signatures = {}
        for framework, module in modules.items():
            function = getattr(module, function_name, None)
            assert inspect.isfunction(function), \
                f"backends/{framework}/{module_name}: missing {function_name}() of the backend interface"
            signatures[framework] = _parameters(function)
        first = next(iter(signatures.values()))
        for framework, parameters in signatures.items():
            assert parameters == first, (f"{function_name}() differs between backends: "
                                         f"{ {fw: [p[0] for p in ps] for fw, ps in signatures.items()} }")


@pytest.mark.parametrize("module_name", ["layout", "tracing"])
def test_small_modules_define_nothing_public_beyond_the_interface(module_name):
    for framework in BACKEND_NAMES:
        extra = _public_functions(_module(framework, module_name)) - set(INTERFACE[module_name])
        assert not extra, f"backends/{framework}/{module_name}.py: public functions outside the interface: {extra}"


def test_layout_modules_state_the_same_facts():
    layouts = {framework: _module(framework, "layout") for framework in BACKEND_NAMES}
    kinds = {framework: set(layout.NATIVE_NAMES) for framework, layout in layouts.items()}
    assert len({frozenset(k) for k in kinds.values()}) == 1, kinds
    for layout in layouts.values():
        assert isinstance(layout.CHANNELS_LAST, bool) and isinstance(layout.RUNNING_VAR_UNBIASED, bool)
        for kind, names in layout.NATIVE_NAMES.items():
            assert set(names) == set(layouts["torch"].NATIVE_NAMES[kind]), (kind, names)


def test_framework_free_modules_import_no_framework():
    modules = [f"netparity.backends.{fw}.{name}" for fw in BACKEND_NAMES for name in FRAMEWORK_FREE]
    code = ("import importlib, sys\n"
            f"for name in {modules!r}:\n"
            "    importlib.import_module(name)\n"
            "loaded = sorted(m for m in ('torch', 'mxnet', 'keras', 'tensorflow', 'jax') if m in sys.modules)\n"
            "assert not loaded, loaded\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
