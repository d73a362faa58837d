"""Small shared test helpers."""

import pytest

from netparity.backends import BACKEND_NAMES, available
from netparity.spec import Spec, SpecError


def smallest_input(spec: Spec, at_least: int = 8) -> Spec:
    """The spec on the smallest square input >= at_least that it accepts (fast parity runs)."""
    for size in range(at_least, spec.input_shape[1] + 1):
        candidate = spec.with_input(size=size)
        try:
            candidate.infer()
            return candidate
        except SpecError:
            continue
    return spec


def installed_or_skip(minimum: int = 2) -> tuple[str, ...]:
    names = tuple(n for n in BACKEND_NAMES if n in available())
    if len(names) < minimum:
        pytest.skip(f"needs {minimum} installed frameworks, found {list(names)} (pip install 'netparity[all]')")
    return names
