"""Small shared test helpers."""

import dataclasses

import numpy as np
import pytest

from netparity.backends import BACKEND_NAMES, available
from netparity.spec import Spec, SpecError
from netparity.spec.layers import (AvgPool2d, Block, Branches, ConcatBranches, DenseConcat, DropPath, Dropout, Flatten,
                                   GlobalAvgPool, GlobalMaxPool, Identity, MaxPool2d, Residual, Sequence)
from netparity.spec.pooling import avg_pool_divisor, pool_output_size


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
    merge of one branch as that branch, a one-layer branch as that layer, a global pool keeping
    (C, 1, 1) followed by a flatten as the pool to (C,), and a dropout or drop_path with p 0 left
    out: it is the identity in training and in eval and holds no weights (Gluon's Dropout(0)
    writes MXNet's identity op, so an import from MXNet cannot see it). ``parameter_order`` is
    dropped here: the weights are compared by order."""
    out: list = []
    for layer in layers:
        layer = dataclasses.replace(layer, name="")
        if isinstance(layer, Sequence):
            out.extend(normal_form(layer.layers))
        elif isinstance(layer, Residual):
            shortcut = layer.shortcut if layer.shortcut is not None else Identity()
            out.append(_branches((layer.body, shortcut), "add"))
        elif isinstance(layer, (Branches, ConcatBranches)) and len(layer.branches) == 1:
            out.extend(normal_form(layer.branches))  # a merge of one branch is that branch
        elif isinstance(layer, ConcatBranches):
            out.append(_branches(layer.branches, "concat"))
        elif isinstance(layer, DenseConcat):
            out.extend(_branches((Identity(), unit), "concat") for unit in layer.layers)
        elif isinstance(layer, Branches):
            out.append(_branches(layer.branches, layer.merge))
        else:
            assert not isinstance(layer, Block), layer.kind
            if isinstance(layer, (Dropout, DropPath)) and layer.p == 0:
                continue
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


def map_layers(spec: Spec, fix) -> Spec:
    """The spec with ``fix(layer, path)`` applied to every layer, children first: each block is
    rebuilt from its fixed children, then fixed itself."""
    def walk(layer, path):
        if isinstance(layer, Block):
            kids = {rel: walk(child, f"{path}.{rel}") for rel, child in layer.children()}
            if isinstance(layer, Residual):
                layer = dataclasses.replace(layer, body=kids["body"], shortcut=kids.get("shortcut"))
            else:
                field = "layers" if isinstance(layer, (Sequence, DenseConcat)) else "branches"
                layer = dataclasses.replace(layer, **{field: tuple(kids.values())})
        return fix(layer, path)

    return dataclasses.replace(spec, blocks=tuple(walk(b, f"blocks[{i}]") for i, b in enumerate(spec.blocks)))


def idle_pool_flags(spec: Spec) -> Spec:
    """The spec with each pool's ceil_mode and count_include_pad set to the default where, at this
    input, they change no window and no divisor: a source that has no such flags (Keras) or
    states them as explicit padding (netparity's MXNet backend) cannot tell them apart."""
    rows = {row.path: row for row in spec.infer().rows}

    def fix(layer, path):
        if isinstance(layer, (MaxPool2d, AvgPool2d)):
            _, h, w = rows[path].input_shape
            if all(pool_output_size(s, k, st, p, True) == pool_output_size(s, k, st, p, False)
                   for s, k, st, p in zip((h, w), layer.kernel, layer.stride, layer.padding)):
                layer = dataclasses.replace(layer, ceil_mode=False)
            if isinstance(layer, AvgPool2d):
                args = (h, w, layer.kernel, layer.stride, layer.padding, layer.ceil_mode)
                if np.array_equal(avg_pool_divisor(*args, layer.count_include_pad), avg_pool_divisor(*args, True)):
                    layer = dataclasses.replace(layer, count_include_pad=True)
        return layer

    return map_layers(spec, fix)
