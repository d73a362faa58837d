"""Small shared test helpers."""

import dataclasses

import pytest

from netparity.backends import BACKEND_NAMES, available
from netparity.spec import Spec, SpecError
from netparity.spec.layers import (Block, Branches, ConcatBranches, DenseConcat, Flatten, GlobalAvgPool,
                                   GlobalMaxPool, Identity, Residual, Sequence)


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


def normal_form(layers) -> tuple:
    """A spec's layers with names and block spelling taken out: sequences spliced into their
    parent, ``residual`` as ``branches`` add of body and shortcut (or identity), ``concat_branches``
    as ``branches`` concat, ``dense_concat`` as consecutive concats of identity and each layer, a
    one-layer branch as that layer, and a global pool keeping (C, 1, 1) followed by a flatten as the
    pool to (C,). ``parameter_order`` is dropped here: the weights are compared by order."""
    out: list = []
    for layer in layers:
        layer = dataclasses.replace(layer, name="")
        if isinstance(layer, Sequence):
            out.extend(normal_form(layer.layers))
        elif isinstance(layer, Residual):
            shortcut = layer.shortcut if layer.shortcut is not None else Identity()
            out.append(_branches((layer.body, shortcut), "add"))
        elif isinstance(layer, ConcatBranches):
            out.append(_branches(layer.branches, "concat"))
        elif isinstance(layer, DenseConcat):
            out.extend(_branches((Identity(), unit), "concat") for unit in layer.layers)
        elif isinstance(layer, Branches):
            out.append(_branches(layer.branches, layer.merge))
        else:
            assert not isinstance(layer, Block), layer.kind
            if isinstance(layer, Flatten) and out and isinstance(out[-1], (GlobalAvgPool, GlobalMaxPool)) \
                    and out[-1].keepdims:
                out[-1] = dataclasses.replace(out[-1], keepdims=False)
                continue
            out.append(layer)
    return tuple(out)


def _branches(branches, merge) -> tuple:
    inner = []
    for branch in branches:
        flat = normal_form((branch,))
        inner.append(flat[0] if len(flat) == 1 else flat or (Identity(),))
    return ("branches", merge, tuple(inner))
