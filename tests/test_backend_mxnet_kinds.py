"""The MXNet backend's builders for the layer kinds of issue 10, one kind at a time.

Each kind's output is checked against a float64 NumPy computation written here from the
spec's definition (docs: spec/layers.py), independent of the backend and of
netparity.spec.reference: the layer under test gets MXNet's own input to it (the output of
the layer before, in float64), so a case isolates one kind. The same specs then go
through check_parity against the NumPy reference (outputs and input gradients), run
hybridized, round-trip their weights and count their parameters. Training: BatchNorm
without scale/center, drop_path (native and lockstep), and SGD steps on a spec that
uses every new kind, against the reference's float64 train_step.
"""

import importlib
import math

import numpy as np
import pytest

from netparity.backends.frameworks import FrameworkMissing

# Not pytest.importorskip("mxnet"): a bare import of MXNet 1.9.1 fails on NumPy >= 1.24 (np.bool).
try:
    mxb = importlib.import_module("netparity.backends.mxnet.core")
except FrameworkMissing as missing:
    pytest.skip(str(missing), allow_module_level=True)

from netparity.compare import check_parity  # noqa: E402
from netparity.compare.lockstep import draw_dropout_masks  # noqa: E402
from netparity.spec import init_weights  # noqa: E402
from netparity.spec.layers import (Activation, BatchNorm, Branches, ChannelScale, ChannelShuffle,  # noqa: E402
                                   ChannelSlice, Conv2d, Dense, DropPath, Dropout, Flatten, GlobalAvgPool,
                                   GlobalMaxPool, Identity, LayerNorm, Normalize, Pad2d, PReLU, Residual,
                                   Sequence)
from netparity.spec.model import Spec  # noqa: E402

BATCH = 3
# float32 against float64: the measured errors are <= 2e-7; 1e-5 still tells GELU's tanh form
# from its erf form (5e-5) and MXNet's default hard_sigmoid from PyTorch's (8e-2).
RTOL = 1e-5


def rel(got, want) -> float:
    want = np.asarray(want, np.float64)
    return float(np.abs(np.asarray(got, np.float64) - want).max() / max(float(np.abs(want).max()), 1e-30))


# ---------------------------------------------------------------------------------------
# float64 NumPy definitions, straight from the spec's docstrings
# ---------------------------------------------------------------------------------------

def np_conv2d(x, w, layer):
    """Cross-correlation with (top, bottom, left, right) zero padding, stride, dilation, groups."""
    top, bottom, left, right = layer.pads
    x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    (eh, ew), (sh, sw), (dh, dw) = layer.extent, layer.stride, layer.dilation
    windows = np.lib.stride_tricks.sliding_window_view(x, (eh, ew), axis=(2, 3))[:, :, ::sh, ::sw, ::dh, ::dw]
    groups, out = layer.groups, w["weight"].shape[0]
    cin = x.shape[1] // groups
    parts = [np.einsum("nchwij,ocij->nohw", windows[:, g * cin:(g + 1) * cin],
                       w["weight"][g * (out // groups):(g + 1) * (out // groups)]) for g in range(groups)]
    y = np.concatenate(parts, axis=1)
    return y + w["bias"].reshape(1, -1, 1, 1) if "bias" in w else y


def per_channel(v, ndim):
    return np.asarray(v, np.float64).reshape((1, -1) + (1,) * (ndim - 2))


def axes_but_1(x):
    return tuple(i for i in range(x.ndim) if i != 1)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def relu6(x):
    return np.minimum(np.maximum(x, 0), 6)


erf = np.vectorize(math.erf)


def np_activation(x, layer):
    f = layer.function
    if f == "softmax":
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    if f == "gelu" and layer.approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    return {"relu": lambda: np.maximum(x, 0), "sigmoid": lambda: sigmoid(x), "tanh": lambda: np.tanh(x),
            "leaky_relu": lambda: np.maximum(x, 0) + layer.negative_slope * np.minimum(x, 0),
            "relu6": lambda: relu6(x), "elu": lambda: np.where(x > 0, x, layer.alpha * (np.exp(x) - 1)),
            "silu": lambda: x * sigmoid(x), "hardswish": lambda: x * relu6(x + 3) / 6,
            "hardsigmoid": lambda: relu6(x + 3) / 6, "gelu": lambda: 0.5 * x * (1 + erf(x / math.sqrt(2))),
            "softplus": lambda: np.log1p(np.exp(x))}[f]()


def np_batchnorm(x, w, layer, training):
    if training:
        mean, var = x.mean(axis=axes_but_1(x)), x.var(axis=axes_but_1(x))
    else:
        mean, var = w["running_mean"], w["running_var"]
    y = (x - per_channel(mean, x.ndim)) / np.sqrt(per_channel(var, x.ndim) + layer.eps)
    # scale=False / center=False: gamma 1, beta 0, and no weight for them in the spec
    return y * per_channel(w.get("weight", 1.0), x.ndim) + per_channel(w.get("bias", 0.0), x.ndim)


def np_layernorm(x, w, layer):
    mean, var = x.mean(axis=1, keepdims=True), x.var(axis=1, keepdims=True)  # biased
    return (x - mean) / np.sqrt(var + layer.eps) * per_channel(w["weight"], x.ndim) + per_channel(w["bias"], x.ndim)


def np_branch_merge(outs, merge):
    if merge == "concat":
        return np.concatenate(outs, axis=1)
    total = outs[0]
    for out in outs[1:]:
        total = total + out if merge == "add" else total * out
    return total


def np_leaf(x, w, layer, training=False):
    """A leaf layer's float64 output for input x (weights w: the layer's canonical arrays)."""
    kind = layer.kind
    if kind == "conv2d":
        return np_conv2d(x, w, layer)
    if kind == "pad2d":
        top, bottom, left, right = layer.pads
        return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    if kind == "batchnorm":
        return np_batchnorm(x, w, layer, training)
    if kind == "layernorm":
        return np_layernorm(x, w, layer)
    if kind == "activation":
        return np_activation(x, layer)
    if kind == "prelu":
        return np.maximum(x, 0) + per_channel(w["weight"], x.ndim) * np.minimum(x, 0)
    if kind == "channel_scale":
        return x * per_channel(w["weight"], x.ndim)
    if kind == "normalize":
        return (x - per_channel(np.broadcast_to(layer.mean, x.shape[1]), x.ndim)) / \
            per_channel(np.broadcast_to(layer.std, x.shape[1]), x.ndim)
    if kind in ("global_avgpool", "global_maxpool"):
        pooled = x.mean(axis=(2, 3), keepdims=True) if kind == "global_avgpool" else x.max(axis=(2, 3), keepdims=True)
        return pooled if layer.keepdims else pooled[:, :, 0, 0]
    if kind == "flatten":
        return x.reshape(len(x), -1)
    if kind == "dense":
        return x @ w["weight"].T + (w["bias"] if "bias" in w else 0)
    if kind in ("identity", "dropout", "drop_path"):  # eval mode
        return x
    if kind == "channel_shuffle":
        n, c, h, wd = x.shape
        return x.reshape(n, layer.groups, c // layer.groups, h, wd).transpose(0, 2, 1, 3, 4).reshape(n, c, h, wd)
    if kind == "channel_slice":
        return x[:, layer.start:layer.stop]
    raise AssertionError(f"no NumPy definition for {kind}")


def weights_of(weights, path):
    prefix = path + "."
    return {k[len(prefix):]: v.astype(np.float64) for k, v in weights.items()
            if k.startswith(prefix) and "." not in k[len(prefix):]}


def np_output(row_path, layer, x, weights, layers, training=False):
    """float64 output of the layer or block at ``row_path`` given its float64 input ``x``; for
    a block, its children run on NumPy values too, so a block case checks the whole block."""
    if layer.kind == "sequence":
        for i, child in enumerate(layer.layers):
            x = np_output(f"{row_path}.layers[{i}]", child, x, weights, layers, training)
        return x
    if layer.kind == "branches":
        outs = [np_output(f"{row_path}.branches[{i}]", b, x, weights, layers, training)
                for i, b in enumerate(layer.branches)]
        return np_branch_merge(outs, layer.merge)
    return np_leaf(x, weights_of(weights, row_path), layer, training)


# ---------------------------------------------------------------------------------------
# One small spec per kind and edge: the last top-level block is the one under test
# ---------------------------------------------------------------------------------------

def _gate(channels, squeeze, gate="sigmoid"):
    return Sequence(layers=(GlobalAvgPool(keepdims=True), Conv2d(squeeze, 1), Activation("relu"),
                            Conv2d(channels, 1), Activation(gate)))


ACTIVATIONS = [Activation(f) for f in ("relu", "sigmoid", "tanh", "leaky_relu", "relu6", "elu", "silu",
                                        "hardswish", "hardsigmoid", "gelu", "softplus", "softmax")] + [
    Activation("leaky_relu", negative_slope=0.2), Activation("leaky_relu", negative_slope=-0.3),
    Activation("elu", alpha=0.5), Activation("gelu", approximate="tanh")]

CASES = {
    "conv_dilated_grouped": ((6, 9, 8), [], Conv2d(6, (3, 2), stride=(2, 1), padding=(2, 1), dilation=(2, 3),
                                                   groups=3)),
    "conv_depthwise_asymmetric_stride2": ((4, 8, 8), [], Conv2d(4, 3, stride=2, padding=(0, 1, 0, 1), groups=4)),
    "conv_dilated_asymmetric_no_bias": ((3, 9, 10), [], Conv2d(5, 3, padding=(1, 2, 2, 0), dilation=2,
                                                               bias=False)),
    "pad2d": ((2, 5, 6), [], Pad2d((1, 2, 0, 3))),
    "batchnorm_no_scale": ((3, 5, 5), [], BatchNorm(scale=False)),
    "batchnorm_no_center": ((3, 5, 5), [], BatchNorm(center=False, eps=1e-3)),
    "batchnorm_neither_flat": ((2, 3, 3), [Flatten()], BatchNorm(scale=False, center=False)),
    "layernorm_image": ((5, 4, 3), [], LayerNorm(eps=1e-6)),
    "layernorm_flat": ((3, 3, 2), [Flatten()], LayerNorm()),
    "prelu_image": ((4, 5, 5), [], PReLU()),
    "prelu_flat": ((3, 2, 3), [Flatten()], PReLU()),
    "channel_scale_image": ((5, 4, 4), [], ChannelScale()),
    "channel_scale_flat": ((2, 3, 3), [Flatten()], ChannelScale()),
    "normalize_per_channel": ((3, 5, 4), [], Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))),
    "normalize_one_value": ((2, 4, 4), [], Normalize((127.5,), (127.5,))),
    "normalize_flat": ((2, 2, 2), [Flatten()], Normalize((0.5,), (2.0,))),
    "global_maxpool_flat": ((4, 5, 6), [], GlobalMaxPool()),
    "global_maxpool_keepdims": ((4, 6, 5), [], GlobalMaxPool(keepdims=True)),
    "global_avgpool_keepdims": ((4, 5, 3), [], GlobalAvgPool(keepdims=True)),
    "identity": ((3, 4, 4), [], Identity()),
    "drop_path_eval": ((3, 4, 4), [], DropPath(0.4)),
    "channel_shuffle": ((6, 3, 4), [], ChannelShuffle(3)),
    "channel_slice_image": ((6, 4, 4), [], ChannelSlice(1, 4)),
    "channel_slice_flat": ((2, 3, 3), [Flatten()], ChannelSlice(4, 13)),
    "branches_concat_image": ((3, 6, 6), [], Branches(branches=(Conv2d(2, 1), Sequence(layers=(
        Conv2d(3, 3, padding=1), Activation("relu"))), Identity()), merge="concat")),
    "branches_concat_flat": ((2, 3, 3), [Flatten()], Branches(branches=(Dense(3), Identity()), merge="concat")),
    "branches_add_gate_first": ((3, 4, 4), [], Branches(branches=(GlobalMaxPool(keepdims=True), Conv2d(3, 1)),
                                                         merge="add")),
    "branches_mul_squeeze_excitation": ((6, 5, 5), [], Branches(branches=(Identity(), _gate(6, 2)), merge="mul")),
    "branches_mul_three_flat": ((2, 2, 3), [Flatten()], Branches(branches=(
        Identity(), Sequence(layers=(Dense(12), Activation("sigmoid"))), Dense(12)), merge="mul")),
}
for _act in ACTIVATIONS:
    _label = _act.describe().replace(" ", "_").replace("(", "").replace(")", "")
    CASES[f"activation_{_label}"] = ((3, 4, 5), [], _act)
CASES["activation_softmax_flat"] = ((2, 3, 2), [Flatten()], Activation("softmax"))


def case_spec(name) -> Spec:
    shape, before, layer = CASES[name]
    return Spec(f"mx_{name}", shape, tuple(before) + (layer,))


def case_input(spec, seed=1):
    return (3 * np.random.default_rng(seed).standard_normal((BATCH, *spec.input_shape))).astype(np.float32)


def built(spec, weights, **options):
    model = mxb.build(spec, **options)
    mxb.set_weights(model, weights)
    return model


def check_last_block(spec, weights, layers, x, training=False):
    """The last top-level block's MXNet output against NumPy on MXNet's own input to it."""
    last = len(spec.blocks) - 1
    path = f"blocks[{last}]"
    given = x if last == 0 else layers[f"blocks[{last - 1}]"]
    want = np_output(path, spec.blocks[last], np.asarray(given, np.float64), weights, layers, training)
    got = layers[path]
    assert got.shape == want.shape, (got.shape, want.shape)
    return rel(got, want)


@pytest.mark.parametrize("name", list(CASES))
def test_kind_matches_numpy_float64(name):
    spec = case_spec(name)
    weights = init_weights(spec, seed=2)
    model = built(spec, weights)
    x = case_input(spec)
    layers = mxb.forward_layers(model, x)
    assert set(layers) == {r.path for r in spec.infer().rows}
    for row in spec.infer().rows:
        assert layers[row.path].shape == (BATCH, *row.output_shape), row.path
    assert check_last_block(spec, weights, layers, x) < RTOL
    # hybridized: one cached graph computes the same
    hybrid = built(spec, weights, execution="hybrid")
    assert rel(mxb.forward(hybrid, x), mxb.forward(model, x)) < 1e-6
    # weights come back bitwise, and Gluon holds exactly the spec's counts
    back = mxb.get_weights(model)
    assert list(back) == list(weights)
    assert all(np.array_equal(back[k], v) for k, v in weights.items())
    expected = {r.path: (r.parameters, r.running_stats) for r in spec.infer().leaves()
                if r.parameters or r.running_stats}
    assert mxb.parameter_counts(model) == expected


def np_spec(spec, weights, x):
    """The whole spec in float64 NumPy, eval mode."""
    for i, block in enumerate(spec.blocks):
        x = np_output(f"blocks[{i}]", block, x, weights, {})
    return x


@pytest.mark.parametrize("name", list(CASES))
def test_kind_input_gradient_matches_numpy_finite_differences(name):
    """Eval-mode input gradient along random directions v: <grad, v> against the float64
    central difference of the NumPy definition (h = 1e-6: truncation ~1e-12, and a random
    point lies on no kink); a wrong gradient e moves <grad, v> by ~|e|, far beyond 1e-5 |grad|."""
    spec = case_spec(name)
    weights = init_weights(spec, seed=2)
    x = case_input(spec)
    upstream = np.random.default_rng(4).standard_normal((BATCH, *spec.infer().output_shape))
    got = mxb.input_gradient(built(spec, weights), x, upstream.astype(np.float32)).astype(np.float64)
    w64 = {k: v.astype(np.float64) for k, v in weights.items()}
    rng = np.random.default_rng(5)
    for _ in range(2):
        v = rng.standard_normal(x.shape)
        h = 1e-6
        slope = (np.sum(np_spec(spec, w64, x + h * v) * upstream)
                 - np.sum(np_spec(spec, w64, x - h * v) * upstream)) / (2 * h)
        assert abs(np.sum(got * v) - slope) <= 1e-5 * np.linalg.norm(got) + 1e-9, (np.sum(got * v), slope)


def test_numpy_checks_tell_the_wrong_variants_apart():
    """The tolerance is tight enough to fail MXNet's ops of the same names where they differ."""
    mx, nd = mxb.mx, mxb.mx.nd
    x = np.linspace(-5, 5, 201).reshape(1, 1, 3, 67)
    tanh_gelu = np_activation(x, Activation("gelu", approximate="tanh"))
    assert rel(nd.LeakyReLU(nd.array(x), act_type="gelu").asnumpy(), tanh_gelu) > RTOL
    torch_hardsigmoid = np_activation(x, Activation("hardsigmoid"))
    assert rel(nd.hard_sigmoid(nd.array(x)).asnumpy(), torch_hardsigmoid) > 1e-2  # alpha 0.2 by default
    with pytest.raises(mx.base.MXNetError, match="gelu_tanh"):
        nd.LeakyReLU(nd.array(x), act_type="gelu_tanh")  # not in mxnet 1.9.1: the backend builds it


@pytest.mark.parametrize("name", [n for n in CASES if not n.startswith("activation_")] +
                         ["activation_gelu", "activation_gelu_tanh", "activation_hardswish",
                          "activation_softmax", "activation_softmax_flat", "activation_leaky_relu_-0.3"])
def test_kind_agrees_with_the_reference_in_check_parity(name):
    """Outputs of every layer and the input gradient, MXNet alone against the NumPy reference."""
    result = check_parity(case_spec(name), frameworks=("mxnet",), batch=BATCH, seed=1)
    assert result.errors == {}, result.errors
    assert [(p.a, p.b) for p in result.pairs] == [("mxnet", "reference")]
    assert result.shape_parity and result.parameter_parity
    assert result.ok, result.pairs


@pytest.mark.parametrize("execution", ["plain", "hybrid"])
def test_global_maxpool_eval_gradient_goes_to_the_maximum(execution):
    """oneDNN's inference-mode max pool has no argmax workspace and its eval-mode backward is
    garbage (measured: off by 100%); the backend runs it in train mode under record()."""
    spec = Spec("gmax", (4, 5, 6), (GlobalMaxPool(),))
    model = mxb.build(spec, execution=execution)
    x = case_input(spec)
    upstream = np.random.default_rng(3).standard_normal((BATCH, 4)).astype(np.float32)
    got = mxb.input_gradient(model, x, upstream)
    flat = x.reshape(BATCH, 4, -1)
    want = np.zeros_like(flat)
    np.put_along_axis(want, flat.argmax(axis=2)[..., None], upstream[..., None], axis=2)
    assert np.array_equal(got, want.reshape(x.shape))


# ---------------------------------------------------------------------------------------
# BatchNorm without scale / center: fixed, not weights, not trainable
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("scale, center", [(False, True), (True, False), (False, False)])
def test_batchnorm_fixed_gamma_beta_stay_fixed_through_training(scale, center):
    spec = Spec("bn_fixed", (3, 4, 4), (BatchNorm(scale=scale, center=center), Flatten(), Dense(4)))
    weights = init_weights(spec, seed=3)
    model = built(spec, weights)
    norm = model._netparity_record.layers["blocks[0]"]
    optimizer = mxb.make_optimizer(model, lr=0.5, momentum=0.9, weight_decay=0.1)
    fixed = [name for name, on in (("gamma", scale), ("beta", center)) if not on]
    assert all(getattr(norm, name).grad_req == "null" for name in fixed)
    assert [k for k in optimizer.keys if k.startswith("blocks[0].")] == \
        [f"blocks[0].{n}" for n, on in (("weight", scale), ("bias", center)) if on]
    x = case_input(spec, seed=4)
    for _ in range(2):
        mxb.train_step(model, optimizer, x, np.array([0, 1, 2]))
    if not scale:
        assert np.array_equal(norm.gamma.data().asnumpy(), np.ones(3))
    if not center:
        assert np.array_equal(norm.beta.data().asnumpy(), np.zeros(3))
    # training-mode output: batch statistics, gamma 1 / beta 0 where fixed
    layers = mxb.forward_layers(model, x, training=True)
    now = mxb.get_weights(model)
    want = np_batchnorm(x.astype(np.float64), weights_of(now, "blocks[0]"), spec.blocks[0], training=True)
    assert rel(layers["blocks[0]"], want) < RTOL


def test_fixed_gamma_is_one_whatever_gluon_holds():
    """MXNet's fix_gamma ignores the stored gamma (scale=False is safe even on a file holding
    gamma != 1); center=False does not ignore beta, which the backend therefore never sets."""
    spec = Spec("bn_gamma", (2, 3, 3), (BatchNorm(scale=False),))
    weights = init_weights(spec, seed=5)
    model = built(spec, weights)
    x = case_input(spec)
    before = mxb.forward(model, x)
    model._netparity_record.layers["blocks[0]"].gamma.set_data(mxb.mx.nd.full((2,), 3.0))
    assert np.array_equal(mxb.forward(model, x), before)


# ---------------------------------------------------------------------------------------
# drop_path in training
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("execution", ["plain", "hybrid"])
def test_native_drop_path_drops_whole_examples(execution):
    spec = Spec("drop_path", (3, 4, 5), (DropPath(0.5),))
    model = mxb.build(spec, execution=execution)
    mxb.seed_everything(0)
    x = np.ones((64, 3, 4, 5), np.float32)
    assert np.array_equal(mxb.forward(model, x), x)  # eval: identity
    out = mxb.forward(model, x, training=True)
    per_example = out.reshape(64, -1)
    assert np.all(per_example == per_example[:, :1])  # one draw per example
    assert set(np.unique(per_example)) == {0.0, 2.0}  # dropped, or kept and scaled by 1/(1-p)


def test_lockstep_drop_path_multiplies_by_the_given_mask():
    spec = Spec("drop_path_lockstep", (2, 3, 3), (Conv2d(2, 1), DropPath(0.5), Flatten(), Dense(3)))
    weights = init_weights(spec, seed=6)
    model = built(spec, weights, lockstep_dropout=True)
    optimizer = mxb.make_optimizer(model, lr=0.1)
    masks = {"blocks[1]": np.zeros((BATCH, 2, 3, 3), np.float32)}  # every example dropped
    x = case_input(spec)
    mxb.train_step(model, optimizer, x, np.array([0, 1, 2]), dropout_masks=masks)
    after = mxb.get_weights(model)
    # nothing reached the conv, so it has no gradient; the dense bias did learn
    assert np.array_equal(after["blocks[0].weight"], weights["blocks[0].weight"])
    assert not np.array_equal(after["blocks[3].bias"], weights["blocks[3].bias"])


# ---------------------------------------------------------------------------------------
# SGD on a spec that uses every new kind, against the reference's float64 train_step
# ---------------------------------------------------------------------------------------

def every_kind_spec(drop: float = 0.3) -> Spec:
    """Every new kind in one trainable network; ``drop`` is drop_path's and dropout's p."""
    return Spec("mx_every_new_kind", (3, 11, 11), (
        Normalize((0.5, 0.4, 0.3), (0.2, 0.3, 0.25)),
        Pad2d((0, 1, 0, 1)),
        Conv2d(8, 3, stride=2, padding=(1, 0, 1, 0), bias=False),
        BatchNorm(scale=False),
        PReLU(),
        Branches(branches=(Identity(), Sequence(layers=(
            Conv2d(8, 3, padding=2, dilation=2, groups=8), LayerNorm(eps=1e-6), Activation("gelu"), Conv2d(8, 1),
            ChannelScale(), DropPath(drop)), parameter_order=(4, 0, 1, 2, 3, 5))), merge="add"),
        Branches(branches=(Identity(), Sequence(layers=(
            GlobalAvgPool(keepdims=True), Conv2d(4, 1), Activation("silu"), Conv2d(8, 1),
            Activation("hardsigmoid")))), merge="mul"),
        Activation("hardswish"),
        Branches(branches=(ChannelSlice(0, 4), Sequence(layers=(
            ChannelSlice(4, 8), Conv2d(4, 1, bias=False), BatchNorm(center=False), Activation("relu6")))),
                 merge="concat"),
        ChannelShuffle(2),
        Activation("leaky_relu", negative_slope=0.2),
        Activation("elu", alpha=0.7),
        Branches(branches=(GlobalMaxPool(keepdims=True), Activation("softmax")), merge="add"),
        Branches(branches=(GlobalMaxPool(), GlobalAvgPool()), merge="concat"),
        Dense(12), Activation("gelu", approximate="tanh"), LayerNorm(), Dropout(drop), Dense(5),
    ))


def trained(backend, spec, weights, steps, **options):
    """SGD with momentum over ``steps`` (masks given where built with lockstep_dropout=True):
    (losses, weights after)."""
    model = backend.build(spec, **options)
    backend.set_weights(model, weights)
    optimizer = backend.make_optimizer(model, lr=0.2, momentum=0.9)
    lockstep = options.get("lockstep_dropout", False)
    losses = [backend.train_step(model, optimizer, x, y, dropout_masks=masks if lockstep else None)
              for x, y, masks in steps]
    return losses, backend.get_weights(model)


def check_training_agrees(oracle, drop=0.3, **mx_options):
    spec = every_kind_spec(drop)
    weights = init_weights(spec, seed=7)
    rng = np.random.default_rng(8)
    steps = [(rng.standard_normal((4, *spec.input_shape)).astype(np.float32) * 0.3 + 0.4, rng.integers(0, 5, 4),
              draw_dropout_masks(spec.infer(), 4, rng)) for _ in range(3)]
    mx_losses, mx_weights = trained(mxb, spec, weights, steps, **mx_options)
    want_losses, want_weights = trained(oracle, spec, weights, steps, lockstep_dropout=True)
    assert np.allclose(mx_losses, want_losses, rtol=1e-5, atol=0), (mx_losses, want_losses)
    trainable = spec.infer().weight_layout(running_stats=False)
    for key in trainable:
        step = np.abs(want_weights[key].astype(np.float64) - weights[key]).max()
        assert step > 1e-4, key  # every weight learned: no branch is dead, no gradient lost
        assert np.abs(mx_weights[key].astype(np.float64) - want_weights[key]).max() <= 1e-4 * step, key
    # MXNet's running variance is the biased one (docs/framework-differences.md 1c); the means agree
    for key in (k for k in weights if k.endswith("running_mean")):
        assert rel(mx_weights[key], want_weights[key]) < 1e-5, key


def test_every_new_kind_trains_like_the_reference():
    """Three lockstep SGD steps (momentum 0.9, masks for dropout and drop_path) on a spec using
    every new kind: losses and every trainable weight as in the float64 reference."""
    spec = every_kind_spec()
    kinds = {row.kind for row in spec.infer().rows}
    assert {"normalize", "pad2d", "prelu", "layernorm", "channel_scale", "drop_path", "identity", "branches",
            "channel_slice", "channel_shuffle", "global_maxpool", "global_avgpool", "dropout", "batchnorm",
            "conv2d"} <= kinds
    check_training_agrees(importlib.import_module("netparity.spec.reference"), lockstep_dropout=True)


def test_every_new_kind_trains_hybridized():
    """The same steps through one cached graph (execution="hybrid"), with dropout and drop_path
    at p = 0 since a hybridized model draws its own masks."""
    check_training_agrees(importlib.import_module("netparity.spec.reference"), drop=0.0, execution="hybrid")


# ---------------------------------------------------------------------------------------
# A gradient cycle in MXNet 1.9.1's hybridized graphs (issue 13)
# ---------------------------------------------------------------------------------------

def five_flat_branches_spec() -> Spec:
    """Five concatenated branches that each begin with a flatten: MXNet's common-subexpression
    elimination merges the five flattens into one tensor with 8 consumers, one of them a
    residual add, another a PReLU. With ``+`` for the residual, building the hybridized
    graph failed with "control dep not found in graph" (backends/mxnet/core.py Residual)."""
    return Spec("five_flat_branches", (2, 3, 3), (
        Branches(branches=(
            Sequence(layers=(Flatten(), ChannelSlice(1, 5))),
            Sequence(layers=(Flatten(), Residual(body=Sequence(layers=(Dense(18),))))),
            Sequence(layers=(Flatten(), PReLU())),
            Sequence(layers=(Flatten(), Branches(branches=(Identity(), Sequence(layers=(
                Dense(18), Activation("sigmoid")))), merge="mul"))),
            Sequence(layers=(Flatten(), Dense(3))),
        ), merge="concat"),
        Dense(4),
    ))


def test_five_flat_branches_with_a_residual_run_hybridized():
    """The hybridized model computes what the imperative one does, forward and one SGD step
    (which differentiates through the cached graph)."""
    spec = five_flat_branches_spec()
    weights = init_weights(spec, seed=5)
    x = np.random.default_rng(6).standard_normal((BATCH, *spec.input_shape)).astype(np.float32)
    y = np.arange(BATCH) % 4
    results = {}
    for execution in ("plain", "hybrid"):
        model = mxb.build(spec, execution=execution)
        mxb.set_weights(model, weights)
        out = mxb.forward(model, x)
        optimizer = mxb.make_optimizer(model, lr=0.1, momentum=0.9)
        loss = mxb.train_step(model, optimizer, x, y)
        results[execution] = out, loss, mxb.get_weights(model)
    (out, loss, after), (hybrid_out, hybrid_loss, hybrid_after) = results["plain"], results["hybrid"]
    assert rel(hybrid_out, out) <= 1e-6 and abs(hybrid_loss - loss) <= 1e-6 * abs(loss)
    for key in after:
        assert rel(hybrid_after[key], after[key]) <= 1e-6, key


def test_emitted_five_flat_branches_run_hybridized(tmp_path):
    """The same spec's emitted Gluon code, hybridized, with the weight file the emitter
    writes: the backend's outputs and input gradient (through the cached graph)."""
    from netparity.backends.emit import get_emitter
    from netparity.backends.emit.source import load_module

    emitter = get_emitter("mxnet")
    spec = five_flat_branches_spec()
    weights = init_weights(spec, seed=5)
    source = emitter.emit_source(spec)
    assert "return F.broadcast_add(out, x)" in source and "return out + x" not in source
    emitter.write_weights(spec, weights, tmp_path / "five.params", source)
    model = load_module(source).build_model()
    model.load_parameters(str(tmp_path / "five.params"))
    model.hybridize()
    reference = mxb.build(spec)
    mxb.set_weights(reference, weights)
    x = np.random.default_rng(6).standard_normal((BATCH, *spec.input_shape)).astype(np.float32)
    upstream = np.random.default_rng(7).standard_normal((BATCH, 4)).astype(np.float32)
    mx = mxb.mx
    data = mx.nd.array(x)
    data.attach_grad()
    with mx.autograd.record(train_mode=False):
        out = model(data)
    out.backward(mx.nd.array(upstream), train_mode=False)
    assert rel(out.asnumpy(), mxb.forward(reference, x)) <= 1e-6
    assert rel(data.grad.asnumpy(), mxb.input_gradient(reference, x, upstream)) <= 1e-6
