"""Hypothesis strategies: random valid specs over every layer kind, and invalid mutations of them.

``specs()`` builds a network layer by layer, tracking the shape, so every draw is valid by
construction (no rejection sampling): each step picks a kind that fits the current shape and
parameters that keep the network inside a small size. ``mutations()`` turns a valid spec's JSON
into an invalid one in one place (a wrong type, an out-of-range value, a missing or unknown
field, an impossible shape) and says where, so a test can demand a SpecError naming that place.
"""

from __future__ import annotations

import copy

from hypothesis import assume, strategies as st

from netparity.spec import LAYER_KINDS
from netparity.spec.layers import (ACTIVATIONS, Activation, AdaptiveAvgPool2d, AvgPool2d, BatchNorm, Branches,
                                   ChannelScale, ChannelShuffle, ChannelSlice, ConcatBranches, Conv2d, Crop2d, Dense,
                                   DenseConcat, DropPath, Dropout, Flatten, GlobalAvgPool, GlobalMaxPool, Identity,
                                   LayerNorm, MaxPool2d, Normalize, Pad2d, PReLU, Residual, Sequence)
from netparity.spec.model import Spec

MAX_CHANNELS = 8


def _activation(draw) -> Activation:
    function = draw(st.sampled_from(ACTIVATIONS))
    if function == "leaky_relu":
        return Activation(function, negative_slope=draw(st.sampled_from([0.01, 0.1, 0.3])))
    if function == "elu":
        return Activation(function, alpha=draw(st.sampled_from([1.0, 0.5])))
    if function == "gelu":
        return Activation(function, approximate=draw(st.sampled_from(["none", "tanh"])))
    return Activation(function)


def _conv(draw, shape, keep_size: bool = False, channels: int | None = None) -> Conv2d:
    c, h, w = shape
    groups = draw(st.sampled_from(sorted({1, c} | ({2} if c % 2 == 0 else set()))))
    out = channels or groups * draw(st.integers(1, max(1, MAX_CHANNELS // groups)))
    if channels and channels % groups:
        groups = 1
    if keep_size:  # stride 1, 'same' output: odd kernel, padding (k-1)/2 * dilation
        k = draw(st.sampled_from([1, 3]))
        d = draw(st.sampled_from([1, 2])) if k == 3 and min(h, w) >= 5 else 1
        return Conv2d(out, k, padding=(k - 1) // 2 * d, dilation=d, groups=groups, bias=draw(st.booleans()))
    kh = draw(st.integers(1, min(3, h)))
    kw = draw(st.integers(1, min(3, w)))
    stride = draw(st.sampled_from([1, 1, 2, 3]))
    dilation = 1
    if kh == kw == 3 and min(h, w) >= 7:
        dilation = draw(st.sampled_from([1, 2]))
    if draw(st.booleans()):
        padding = tuple(draw(st.integers(0, 2)) for _ in range(4))
    else:
        padding = (draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2)))
    layer = Conv2d(out, (kh, kw), stride=stride, padding=padding, groups=groups, dilation=dilation,
                   bias=draw(st.booleans()))
    try:
        out_shape = layer.output_shape(shape, "")
    except Exception:
        return Conv2d(out, 1, groups=groups)
    if min(out_shape[1:]) < 1:
        return Conv2d(out, 1, groups=groups)
    return layer


def _crop(draw, h: int, w: int) -> Crop2d:
    """Up to 2 rows / columns off each side, at least 1x1 left; sometimes the symmetric pair."""
    if draw(st.booleans()) and min(h, w) >= 3:
        return Crop2d((draw(st.integers(0, min(2, (h - 1) // 2))), draw(st.integers(0, min(2, (w - 1) // 2)))))
    top = draw(st.integers(0, min(2, h - 1)))
    bottom = draw(st.integers(0, min(2, h - 1 - top)))
    left = draw(st.integers(0, min(2, w - 1)))
    right = draw(st.integers(0, min(2, w - 1 - left)))
    return Crop2d((top, bottom, left, right))


def _pool(draw, shape):
    c, h, w = shape
    k = draw(st.integers(1, min(3, h, w)))
    stride = draw(st.integers(1, 3))
    padding = draw(st.integers(0, k // 2))
    cls = draw(st.sampled_from([MaxPool2d, AvgPool2d]))
    extra = {"count_include_pad": draw(st.booleans())} if cls is AvgPool2d else {}
    return cls(k, stride, padding, ceil_mode=draw(st.booleans()), **extra)


def _image_layer(draw, shape, depth: int):
    """One layer (or block) that takes a (C, H, W) input."""
    c, h, w = shape
    kinds = ["conv", "conv", "pad", "crop", "pool", "bn", "ln", "act", "act", "prelu", "scale", "normalize", "adaptive",
             "shuffle", "slice", "drop", "identity"]
    if depth < 2:
        kinds += ["branches", "branches", "residual", "concat_branches", "dense_concat"]
    kind = draw(st.sampled_from(kinds))
    if kind == "conv":
        return _conv(draw, shape)
    if kind == "pad":
        return Pad2d(tuple(draw(st.integers(0, 2)) for _ in range(4)))
    if kind == "crop" and max(h, w) >= 2:
        return _crop(draw, h, w)
    if kind == "pool" and min(h, w) >= 2:
        return _pool(draw, shape)
    if kind == "bn":
        return BatchNorm(eps=draw(st.sampled_from([1e-5, 1e-3])), momentum=draw(st.sampled_from([0.1, 0.01])),
                         scale=draw(st.booleans()), center=draw(st.booleans()))
    if kind == "ln":
        return LayerNorm(eps=draw(st.sampled_from([1e-5, 1e-6])))
    if kind == "prelu":
        return PReLU()
    if kind == "scale":
        return ChannelScale()
    if kind == "normalize":
        n = draw(st.sampled_from([1, c]))
        return Normalize(tuple(draw(st.floats(-1, 1)) for _ in range(n)),
                         tuple(draw(st.floats(0.25, 2)) for _ in range(n)))
    if kind == "adaptive":
        return AdaptiveAvgPool2d((draw(st.integers(1, h)), draw(st.integers(1, w))))
    if kind == "shuffle" and c > 1:
        divisors = [g for g in range(2, c + 1) if c % g == 0]
        return ChannelShuffle(draw(st.sampled_from(divisors)))
    if kind == "slice" and c > 1:
        start = draw(st.integers(0, c - 1))
        return ChannelSlice(start, draw(st.integers(start + 1, c)))
    if kind == "drop":
        return draw(st.sampled_from([Dropout(0.3), DropPath(0.2)]))
    if kind == "identity":
        return Identity()
    if kind == "branches":
        return _branches(draw, shape, depth)
    if kind == "residual":
        body = Sequence(layers=tuple(_chain(draw, shape, depth + 1, keep=True, length=2)))
        return Residual(body=body)
    if kind == "concat_branches":
        return ConcatBranches(branches=tuple(Sequence(layers=(_conv(draw, shape, keep_size=True),))
                                             for _ in range(draw(st.integers(1, 3)))))
    if kind == "dense_concat":  # each layer sees the input and every earlier layer's output
        layers, current = [], shape
        for _ in range(draw(st.integers(1, 2))):
            conv = _conv(draw, current, keep_size=True)
            layers.append(Sequence(layers=(conv,)))
            current = (current[0] + conv.out_channels, *current[1:])
        return DenseConcat(layers=tuple(layers))
    return _activation(draw)


def _chain(draw, shape, depth: int, keep: bool, length: int) -> list:
    """``length`` layers from ``shape``; with ``keep`` the chain ends at ``shape`` again
    (size-keeping layers and a final conv back to the channel count)."""
    layers = []
    current = shape
    for _ in range(draw(st.integers(0, length))):
        if keep:
            layer = draw(st.sampled_from(["conv", "act", "bn", "prelu", "ln", "scale", "identity"]))
            layer = {"conv": lambda: _conv(draw, current, keep_size=True), "act": lambda: _activation(draw),
                     "bn": lambda: BatchNorm(scale=draw(st.booleans())), "prelu": PReLU, "ln": LayerNorm,
                     "scale": ChannelScale, "identity": Identity}[layer]()
        else:
            layer = _image_layer(draw, current, depth)
        current = layer.output_shape(current, "")
        layers.append(layer)
    if keep and current != shape:
        layers.append(_conv(draw, current, keep_size=True, channels=shape[0]))
    return layers


def _branches(draw, shape, depth: int) -> Branches:
    merge = draw(st.sampled_from(["concat", "add", "mul"]))
    count = draw(st.integers(1, 3))
    branches = []
    for i in range(count):
        if merge != "concat" and i == count - 1 and draw(st.booleans()):
            gate = draw(st.sampled_from(["sigmoid", "hardsigmoid", "relu"]))
            branches.append(Sequence(layers=(draw(st.sampled_from([GlobalAvgPool(keepdims=True),
                                                                    GlobalMaxPool(keepdims=True),
                                                                    AdaptiveAvgPool2d(1)])),
                                             Conv2d(shape[0], 1), Activation(gate))))
        elif draw(st.booleans()) and merge != "concat" or i == 0 and draw(st.booleans()):
            branches.append(Identity())
        else:
            chain = _chain(draw, shape, depth + 1, keep=merge != "concat", length=2)
            if merge == "concat":  # same spatial size as the others: only size-keeping layers
                chain = [_conv(draw, shape, keep_size=True)] + [_activation(draw)] * draw(st.integers(0, 1))
            branches.append(Sequence(layers=tuple(chain)))
    return Branches(branches=tuple(branches), merge=merge)


def _flat_layer(draw, features: int):
    kind = draw(st.sampled_from(["dense", "dense", "act", "bn", "ln", "prelu", "scale", "slice", "drop",
                                 "normalize", "branches"]))
    if kind == "dense":
        return Dense(draw(st.integers(1, 12)), bias=draw(st.booleans()))
    if kind == "bn":
        return BatchNorm(scale=draw(st.booleans()), center=draw(st.booleans()))
    if kind == "ln":
        return LayerNorm()
    if kind == "prelu":
        return PReLU()
    if kind == "scale":
        return ChannelScale()
    if kind == "slice" and features > 1:
        start = draw(st.integers(0, features - 1))
        return ChannelSlice(start, draw(st.integers(start + 1, features)))
    if kind == "drop":
        return draw(st.sampled_from([Dropout(0.5), DropPath(0.1)]))
    if kind == "normalize":
        return Normalize((draw(st.floats(-1, 1)),), (draw(st.floats(0.5, 2)),))
    if kind == "branches":
        merge = draw(st.sampled_from(["concat", "add", "mul"]))
        other = Dense(features) if merge != "concat" else Dense(draw(st.integers(1, 6)))
        return Branches(branches=(Identity(), Sequence(layers=(other, _activation(draw)))), merge=merge)
    return _activation(draw)


@st.composite
def specs(draw, max_layers: int = 6) -> Spec:
    """A valid spec over every layer kind: an image part, then (often) a flat part."""
    shape = (draw(st.integers(1, 4)), draw(st.integers(5, 10)), draw(st.integers(5, 10)))
    layers = []
    current = shape
    for _ in range(draw(st.integers(1, max_layers))):
        layer = _image_layer(draw, current, depth=0)
        try:
            out = layer.output_shape(current, "")
        except Exception:
            continue  # a layer that does not fit this shape (too small after pooling): draw another
        if len(out) != 3 or out[0] > 4 * MAX_CHANNELS or min(out[1:]) < 1:
            continue
        layers.append(layer)
        current = out
    if draw(st.booleans()):
        head = draw(st.sampled_from([Flatten(), GlobalAvgPool(), GlobalMaxPool()]))
        layers.append(head)
        features = head.output_shape(current, "")[0]
        for _ in range(draw(st.integers(0, 3))):
            layer = _flat_layer(draw, features)
            features = layer.output_shape((features,), "")[0]
            layers.append(layer)
    if not layers:
        layers = [Identity()]
    spec = Spec("fuzz", shape, tuple(layers))
    # A layernorm or softmax over a single channel is a constant function (its output is the bias,
    # or 1): its true input gradient is 0 and what the frameworks return is rounding noise,
    # amplified by 1/sqrt(eps), so a relative comparison means nothing there. A layernorm over two
    # channels is nearly one: (x1 - x2) / sqrt((x1 - x2)^2 + 4 eps) is +-1 unless the two are within
    # ~sqrt(eps), and its small gradient comes out of a float32 cancellation (CI drew BatchNorm ->
    # global pool -> layernorm of 2 features: mxnet and keras input gradients 1.1e-4 apart, each
    # moving 3.4e-5 under a 1e-5 nudge of the input, every output equal to 2e-7).
    assume(not any((row.kind == "layernorm" and row.input_shape[0] <= 2)
                   or (row.kind == "activation" and row.layer.function == "softmax" and row.input_shape[0] == 1)
                   for row in spec.infer().rows))
    return spec


# ---------------------------------------------------------------------------------------
# Invalid mutations
# ---------------------------------------------------------------------------------------

def _layer_paths(data: dict) -> list[tuple[str, dict]]:
    """(spec path, layer object) of every layer in a spec's JSON, as SpecError names them."""
    found = []

    def walk(layer, path):
        found.append((path, layer))
        for key, value in layer.items():
            if isinstance(value, dict):
                walk(value, f"{path}.{key}")
            elif isinstance(value, list) and any(isinstance(v, dict) for v in value):
                for i, v in enumerate(value):
                    walk(v, f"{path}.{key}[{i}]")

    for i, block in enumerate(data["blocks"]):
        walk(block, f"blocks[{i}]")
    return found


# Values that are never valid for a field of the given current value's type.
_WRONG_FOR_INT = [True, False, "2", 2.5, None, [1, 2, 3], -1]
_WRONG_FOR_FLOAT = [True, "0.1", None, [0.1]]
_WRONG_FOR_BOOL = [1, 0, "true", None]


@st.composite
def mutations(draw, valid: st.SearchStrategy = specs()) -> tuple[dict, str]:
    """(an invalid spec's JSON object, the path a SpecError must name)."""
    spec = draw(valid)
    data = copy.deepcopy(spec.to_dict())
    layers = _layer_paths(data)
    path, layer = draw(st.sampled_from(layers))
    cls = LAYER_KINDS[layer["kind"]]
    how = draw(st.sampled_from(["unknown_field", "unknown_kind", "missing_kind", "wrong_type", "input_shape",
                                "not_an_object", "impossible_shape"]))
    if how == "unknown_field":
        layer["bogus_field"] = 1
        return data, path
    if how == "unknown_kind":
        layer["kind"] = draw(st.sampled_from(["conv3d", "Conv2d", "", "relu"]))
        return data, path
    if how == "missing_kind":
        del layer["kind"]
        return data, path
    if how == "input_shape":
        data["input_shape"] = draw(st.sampled_from([[1, 8], [True, 8, 8], ["1", 8, 8], [1, 0, 8], [1, -3, 8],
                                                    [1, 8.0, 8], "1x8x8"]))
        return data, "input_shape"
    if how == "not_an_object":
        data["blocks"][0] = draw(st.sampled_from([[], 3, "conv2d", None]))
        return data, "blocks[0]"
    if how == "impossible_shape":
        # a 9x9 kernel on an input of at most 10x10 after the first layer cannot fit everywhere;
        # instead put a dense layer straight onto the image: always impossible
        data["blocks"].insert(0, {"kind": "dense", "out_features": 3})
        return data, "blocks[0]"
    # wrong_type: a field of this kind with a value of the wrong type or range
    from dataclasses import fields
    def holds_layers(value) -> bool:
        return isinstance(value, dict) or isinstance(value, list) and any(isinstance(v, dict) for v in value)

    own = [f for f in fields(cls) if f.name != "name" and not holds_layers(layer.get(f.name))
           and f.type in ("int", "float", "bool", "Pair", "Pair | Pads", "str")]
    if not own:
        layer["kind"] = "no_such_kind"
        return data, path
    f = draw(st.sampled_from(own))
    wrong = {"int": _WRONG_FOR_INT, "Pair": _WRONG_FOR_INT[:4] + [[1, "2"], [1, 2, 3]],
             "Pair | Pads": _WRONG_FOR_INT[:4] + [[1, 2, 3], [True, 0]],
             "float": _WRONG_FOR_FLOAT, "bool": _WRONG_FOR_BOOL, "str": [3, None, "no_such_option"]}[f.type]
    layer[f.name] = draw(st.sampled_from(wrong))
    return data, path
