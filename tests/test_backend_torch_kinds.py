"""The PyTorch backend builds every layer kind of issue 10 exactly as spec/layers.py defines it.

Each kind runs in the backend (float32 modules) and is compared with the spec's definition
written out directly in float64 torch ops (forward and input gradient), then through
``check_parity(spec, frameworks=("torch",))``; the training tests run one spec that holds
every new kind, with and without lockstep masks.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

T = pytest.importorskip("netparity.backends.torch.core", reason="PyTorch is not installed (pip install 'netparity[torch]')",
                        exc_type=ImportError)
torch = T.torch
F = torch.nn.functional

from netparity.compare import check_parity  # noqa: E402
from netparity.compare.lockstep import draw_dropout_masks  # noqa: E402
from netparity.spec import reference  # noqa: E402
from netparity.spec import (Activation, AdaptiveAvgPool2d, BatchNorm, Branches, ChannelScale,  # noqa: E402
                            ChannelShuffle, ChannelSlice, Conv2d, Dense, DropPath, Dropout, Flatten, GlobalAvgPool,
                            GlobalMaxPool, Identity, LayerNorm, Normalize, Pad2d, PReLU, Residual, Sequence, Spec,
                            init_weights)
from netparity.spec.layers import ACTIVATIONS as SPEC_ACTIVATIONS  # noqa: E402

TOLERANCE = 1e-5  # float32 modules against float64 definitions, max|a-b| / max|b|


def rel(a, b) -> float:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))


def per_channel(v, x):
    """A (C,) tensor shaped to broadcast over dim 1 of ``x``."""
    return v.view(-1, *([1] * (x.dim() - 2)))


# -- the spec's definitions, in float64 -----------------------------------------------------------

def relu6(x):
    return torch.clamp(x, 0, 6)


ACTIVATION_DEFINITIONS = {
    "relu": lambda x: torch.clamp(x, min=0),
    "sigmoid": lambda x: 1 / (1 + torch.exp(-x)),
    "tanh": torch.tanh,
    "leaky_relu 0.2": lambda x: torch.clamp(x, min=0) + 0.2 * torch.clamp(x, max=0),
    "leaky_relu 0.01": lambda x: torch.clamp(x, min=0) + 0.01 * torch.clamp(x, max=0),
    "relu6": relu6,
    "elu 0.5": lambda x: torch.where(x > 0, x, 0.5 * (torch.exp(x) - 1)),
    "elu": lambda x: torch.where(x > 0, x, torch.exp(x) - 1),
    "silu": lambda x: x / (1 + torch.exp(-x)),
    "hardswish": lambda x: x * relu6(x + 3) / 6,
    "hardsigmoid": lambda x: relu6(x + 3) / 6,
    "gelu": lambda x: 0.5 * x * (1 + torch.erf(x / math.sqrt(2))),
    "gelu (tanh)": lambda x: 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))),
    "softplus": lambda x: torch.log1p(torch.exp(x)),
    "softmax": lambda x: torch.exp(x - x.amax(1, keepdim=True)) / torch.exp(x - x.amax(1, keepdim=True)).sum(
        1, keepdim=True),
}
ACTIVATIONS = [Activation("relu"), Activation("sigmoid"), Activation("tanh"), Activation("leaky_relu"),
               Activation("leaky_relu", negative_slope=0.2), Activation("relu6"), Activation("elu"),
               Activation("elu", alpha=0.5), Activation("silu"), Activation("hardswish"), Activation("hardsigmoid"),
               Activation("gelu"), Activation("gelu", approximate="tanh"), Activation("softplus"),
               Activation("softmax")]


def batchnorm_eval(x, w, key, eps=1e-5):
    """(x - running_mean) / sqrt(running_var + eps) * gamma + beta; gamma 1, beta 0 where absent."""
    mean, var = (per_channel(w[f"{key}.{n}"], x) for n in ("running_mean", "running_var"))
    y = (x - mean) / torch.sqrt(var + eps)
    if f"{key}.weight" in w:
        y = y * per_channel(w[f"{key}.weight"], x)
    if f"{key}.bias" in w:
        y = y + per_channel(w[f"{key}.bias"], x)
    return y


def layernorm(x, w, key, eps=1e-5):
    """Over dim 1 (the channels of each pixel, or the features), biased variance."""
    mean = x.mean(1, keepdim=True)
    var = ((x - mean) ** 2).mean(1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * per_channel(w[f"{key}.weight"], x) + per_channel(w[f"{key}.bias"], x)


def conv(x, w, key, pads=(0, 0, 0, 0), **options):
    """F.conv2d after F.pad by (top, bottom, left, right)."""
    top, bottom, left, right = pads
    return F.conv2d(F.pad(x, (left, right, top, bottom)), w[f"{key}.weight"], w.get(f"{key}.bias"), **options)


def shuffle(x, groups):
    b, c, h, wd = x.shape
    return x.view(b, groups, c // groups, h, wd).transpose(1, 2).reshape(b, c, h, wd)


def gate(x, w, key):
    """The squeeze-and-excitation gate sequence below: avgpool, conv, relu, conv, sigmoid."""
    s = x.mean((2, 3), keepdim=True)
    s = torch.clamp(conv(s, w, f"{key}.layers[1]"), min=0)
    return torch.sigmoid(conv(s, w, f"{key}.layers[3]"))


def se_gate(channels, squeeze, function="sigmoid"):
    return Sequence(layers=(GlobalAvgPool(keepdims=True), Conv2d(squeeze, 1), Activation("relu"),
                            Conv2d(channels, 1), Activation(function)))



# (id, input shape, top-level layers, definition(x, w) of the last block's output, input scale)
CASES = [
    # conv2d: dilation, 4-sided padding, groups
    ("conv_dilation_padding", (3, 9, 8), [Conv2d(4, 3, padding=2, dilation=2)],
     lambda x, w, k: conv(x, w, k, (2, 2, 2, 2), dilation=2)),
    ("conv_dilation_pair", (2, 9, 10), [Conv2d(3, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(2, 3))],
     lambda x, w, k: conv(x, w, k, (1, 1, 2, 2), stride=(2, 1), dilation=(2, 3))),
    ("conv_tf_same_stride2", (3, 8, 8), [Conv2d(4, 3, stride=2, padding=(0, 1, 0, 1))],
     lambda x, w, k: conv(x, w, k, (0, 1, 0, 1), stride=2)),
    ("conv_asymmetric_dilated", (2, 7, 9), [Conv2d(3, 3, padding=(2, 1, 0, 3), dilation=(1, 2), bias=False)],
     lambda x, w, k: conv(x, w, k, (2, 1, 0, 3), dilation=(1, 2))),
    ("conv_four_sided_symmetric", (2, 6, 6), [Conv2d(3, 3, padding=(1, 1, 2, 2))],
     lambda x, w, k: conv(x, w, k, (1, 1, 2, 2))),
    ("conv_depthwise", (4, 7, 7), [Conv2d(4, 3, stride=2, padding=1, groups=4, bias=False)],
     lambda x, w, k: conv(x, w, k, (1, 1, 1, 1), stride=2, groups=4)),
    ("conv_depthwise_multiplier", (3, 6, 6), [Conv2d(6, 3, padding=(0, 1, 0, 1), groups=3)],
     lambda x, w, k: conv(x, w, k, (0, 1, 0, 1), groups=3)),
    ("conv_grouped_stride_over_kernel", (4, 9, 9), [Conv2d(6, 1, stride=3, groups=2)],
     lambda x, w, k: conv(x, w, k, stride=3, groups=2)),
    ("pad2d", (2, 5, 4), [Pad2d((1, 0, 2, 3))], lambda x, w, k: F.pad(x, (2, 3, 1, 0))),
    ("pad2d_symmetric", (2, 5, 4), [Pad2d(1)], lambda x, w, k: F.pad(x, (1, 1, 1, 1))),
    # activations on images and on flat features
    *[(f"activation_{a.describe()}_image", (3, 4, 5), [a],
       lambda x, w, k, a=a: ACTIVATION_DEFINITIONS[a.describe()](x)) for a in ACTIVATIONS],
    *[(f"activation_{a.describe()}_flat", (7,), [a],
       lambda x, w, k, a=a: ACTIVATION_DEFINITIONS[a.describe()](x)) for a in ACTIVATIONS],
    # prelu, channel_scale, normalize
    ("prelu_image", (3, 4, 4), [PReLU()],
     lambda x, w, k: torch.clamp(x, min=0) + per_channel(w[f"{k}.weight"], x) * torch.clamp(x, max=0)),
    ("prelu_flat", (5,), [PReLU()],
     lambda x, w, k: torch.clamp(x, min=0) + w[f"{k}.weight"] * torch.clamp(x, max=0)),
    ("channel_scale_image", (3, 4, 4), [ChannelScale()], lambda x, w, k: x * per_channel(w[f"{k}.weight"], x)),
    ("channel_scale_flat", (5,), [ChannelScale()], lambda x, w, k: x * w[f"{k}.weight"]),
    ("normalize_per_channel", (3, 4, 4), [Normalize(mean=(0.5, -0.2, 0.1), std=(0.2, 0.5, 2.0))],
     lambda x, w, k: (x - torch.tensor([0.5, -0.2, 0.1], dtype=x.dtype).view(-1, 1, 1))
     / torch.tensor([0.2, 0.5, 2.0], dtype=x.dtype).view(-1, 1, 1)),
    ("normalize_one_value", (3, 4, 4), [Normalize(mean=(0.45,), std=(0.225,))], lambda x, w, k: (x - 0.45) / 0.225),
    ("normalize_flat", (2,), [Normalize(mean=(1.0, 2.0), std=(3.0,))],
     lambda x, w, k: (x - torch.tensor([1.0, 2.0], dtype=x.dtype)) / 3.0),
    # batchnorm's scale and center flags (eval mode: running statistics)
    *[(f"batchnorm_scale_{scale}_center_{center}_{where}", shape, [BatchNorm(scale=scale, center=center)],
       lambda x, w, k: batchnorm_eval(x, w, k))
      for scale in (True, False) for center in (True, False)
      for where, shape in (("image", (3, 4, 4)), ("flat", (6,)))],
    # layernorm over the channels of each pixel, or over the features
    ("layernorm_image", (5, 3, 4), [LayerNorm()], lambda x, w, k: layernorm(x, w, k)),
    ("layernorm_flat", (6,), [LayerNorm(eps=1e-3)], lambda x, w, k: layernorm(x, w, k, eps=1e-3)),
    # pools
    ("global_avgpool", (3, 5, 4), [GlobalAvgPool()], lambda x, w, k: x.mean((2, 3))),
    ("global_avgpool_keepdims", (3, 5, 4), [GlobalAvgPool(keepdims=True)],
     lambda x, w, k: x.mean((2, 3), keepdim=True)),
    ("global_maxpool", (3, 5, 4), [GlobalMaxPool()], lambda x, w, k: x.amax((2, 3))),
    ("global_maxpool_keepdims", (3, 5, 4), [GlobalMaxPool(keepdims=True)],
     lambda x, w, k: x.amax((2, 3), keepdim=True)),
    ("adaptive_avgpool_to_1", (3, 5, 4), [AdaptiveAvgPool2d(1)], lambda x, w, k: x.mean((2, 3), keepdim=True)),
    # identity in eval mode
    ("dropout_eval", (3, 4, 4), [Dropout(0.5)], lambda x, w, k: x),
    ("drop_path_eval", (3, 4, 4), [DropPath(0.5)], lambda x, w, k: x),
    ("identity", (3, 4, 4), [Identity()], lambda x, w, k: x),
    # channels
    ("channel_shuffle", (6, 3, 2), [ChannelShuffle(3)], lambda x, w, k: shuffle(x, 3)),
    ("channel_shuffle_2", (8, 2, 2), [ChannelShuffle(2)], lambda x, w, k: shuffle(x, 2)),
    ("channel_slice_image", (5, 3, 3), [ChannelSlice(1, 4)], lambda x, w, k: x[:, 1:4]),
    ("channel_slice_flat", (7,), [ChannelSlice(2, 7)], lambda x, w, k: x[:, 2:7]),
    # branches: concat on channels or features, add, mul with a (C, 1, 1) gate
    ("branches_concat_image", (3, 5, 5), [Branches((Conv2d(2, 3, padding=1), Identity()), merge="concat")],
     lambda x, w, k: torch.cat([conv(x, w, f"{k}.branches[0]", (1, 1, 1, 1)), x], 1)),
    ("branches_concat_flat", (4,), [Branches((Dense(3), Identity(), ChannelSlice(0, 2)), merge="concat")],
     lambda x, w, k: torch.cat([F.linear(x, w[f"{k}.branches[0].weight"], w[f"{k}.branches[0].bias"]),
                             x, x[:, :2]], 1)),
    ("branches_add", (3, 5, 5), [Branches((Sequence(layers=(Conv2d(3, 3, padding=1), Activation("relu"))),
                                           Identity()), merge="add")],
     lambda x, w, k: torch.clamp(conv(x, w, f"{k}.branches[0].layers[0]", (1, 1, 1, 1)), min=0) + x),
    ("branches_squeeze_excitation", (4, 5, 3), [Branches((Identity(), se_gate(4, 2)), merge="mul")],
     lambda x, w, k: x * gate(x, w, f"{k}.branches[1]")),
    ("branches_gate_first_add", (4, 3, 3), [Branches((GlobalMaxPool(keepdims=True), Identity(), Identity()),
                                                     merge="add")],
     lambda x, w, k: x.amax((2, 3), keepdim=True) + x + x),
    ("branches_mul_three", (2, 3, 3), [Branches((Identity(), Activation("sigmoid"), Activation("tanh")),
                                                merge="mul")],
     lambda x, w, k: x * torch.sigmoid(x) * torch.tanh(x)),
]
CASE_IDS = [case[0] for case in CASES]


def test_every_activation_function_is_built_and_tested():
    assert set(T.ACTIVATIONS) == set(SPEC_ACTIVATIONS)
    assert {a.function for a in ACTIVATIONS} == set(SPEC_ACTIVATIONS)


def kind_spec(input_shape, layers) -> tuple[Spec, str]:
    """A spec around the layers under test and the path of the first; a flat (F,) input is
    an (F, 1, 1) image flattened first, since a spec's input is always (C, H, W)."""
    if len(input_shape) == 1:
        return Spec("kind", (*input_shape, 1, 1), (Flatten(), *layers)), "blocks[1]"
    return Spec("kind", tuple(input_shape), tuple(layers)), "blocks[0]"


def built(spec, seed=0, **options):
    model = T.build(spec, **options)
    weights = init_weights(spec, seed)
    T.set_weights(model, weights)
    return model, weights


def float64(weights):
    return {k: torch.from_numpy(v).double() for k, v in weights.items()}


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_kind_computes_the_spec_definition(case):
    """Forward and input gradient of the float32 module against the definition in float64."""
    _, input_shape, layers, definition = case
    spec, key = kind_spec(input_shape, layers)
    model, weights = built(spec)
    rng = np.random.default_rng(1)
    x = (3 * rng.standard_normal((3, *spec.input_shape))).astype(np.float32)  # both signs, past +-3 and 6
    x64 = torch.from_numpy(x).double().requires_grad_(True)
    expected = definition(x64.view(3, *input_shape), float64(weights), key)
    got = T.forward(model, x)
    assert rel(got, expected.detach()) <= TOLERANCE
    assert got.shape == (3, *spec.infer().output_shape)
    upstream = rng.standard_normal(got.shape).astype(np.float32)
    (expected * torch.from_numpy(upstream).double()).sum().backward()
    assert rel(T.input_gradient(model, x, upstream), x64.grad) <= TOLERANCE


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_kind_passes_check_parity(case):
    """Shapes, parameter counts, and every layer's output and the input gradient against the
    float64 NumPy reference (PyTorch alone is still a real check)."""
    spec, _ = kind_spec(case[1], case[2])
    result = check_parity(spec, frameworks=("torch",), batch=2, seed=3)
    assert result.errors == {}
    assert result.frameworks == ["torch"]
    assert [(p.a, p.b) for p in result.pairs] == [("torch", "reference")]
    assert result.shape_parity, result.shape_mismatches[:3]
    assert result.parameter_parity, result.count_mismatches[:3]
    for pair in result.pairs:
        assert pair.ok, pair
    assert result.ok


def test_asymmetric_padding_differs_from_symmetric():
    """The explicit (0, 1, 0, 1) padding is really used: PyTorch's symmetric padding 1 with the
    same weights gives a different function (a builder that fell back to it would fail)."""
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    same, weights = built(Spec("tf_same", (3, 8, 8), (Conv2d(4, 3, stride=2, padding=(0, 1, 0, 1)),)))
    symmetric = T.build(Spec("symmetric", (3, 8, 8), (Conv2d(4, 3, stride=2, padding=1),)))
    T.set_weights(symmetric, weights)
    assert rel(T.forward(same, x), T.forward(symmetric, x)) > 0.1


# -- batchnorm's fixed gamma and beta -------------------------------------------------------------

@pytest.mark.parametrize("scale,center", [(True, True), (True, False), (False, True), (False, False)])
@pytest.mark.parametrize("shape", [(3, 4, 4), (6,)])
def test_batchnorm_fixed_gamma_beta_are_not_weights(scale, center, shape):
    spec, key = kind_spec(shape, [BatchNorm(scale=scale, center=center, momentum=0.3)])
    model, weights = built(spec)
    expected = [n for n, on in (("weight", scale), ("bias", center)) if on]
    module = model[-1]
    assert sorted(n for n, _ in module.named_parameters()) == sorted(expected)
    assert set(module.state_dict()) == {*expected, "running_mean", "running_var", "num_batches_tracked"}
    assert T.parameter_counts(model) == {key: (shape[0] * len(expected), 2 * shape[0])}
    assert set(T.get_weights(model)) == set(spec.infer().weight_layout())

    # training mode: batch statistics (biased variance) normalise; running stats move by PyTorch's rule
    x = np.random.default_rng(2).standard_normal((5, *spec.input_shape)).astype(np.float32)
    x64 = torch.from_numpy(x).double().view(5, *shape)
    w = float64(weights)
    axes = (0, 2, 3) if len(shape) == 3 else (0,)
    mean, var = x64.mean(axes), x64.var(axes, unbiased=False)
    stats = {f"{key}.running_mean": mean, f"{key}.running_var": var}
    assert rel(T.forward(model, x, training=True), batchnorm_eval(x64, {**w, **stats}, key)) <= TOLERANCE
    n = x64.numel() // shape[0]
    after = T.get_weights(model)
    assert rel(after[f"{key}.running_mean"], 0.7 * w[f"{key}.running_mean"] + 0.3 * mean) <= TOLERANCE
    assert rel(after[f"{key}.running_var"], 0.7 * w[f"{key}.running_var"] + 0.3 * var * n / (n - 1)) <= TOLERANCE


def test_normalize_constants_are_not_weights_and_follow_the_module():
    spec = Spec("normalize", (3, 2, 2), (Normalize(mean=(1.0, 2.0, 3.0), std=(0.5,)), Flatten(), Dense(2)))
    model, _ = built(spec)
    assert list(model.state_dict()) == ["2.weight", "2.bias"]
    assert "blocks[0]" not in T.parameter_counts(model)
    assert model[0].mean.dtype == torch.float32
    model.double()  # buffers follow the module, as they would to a GPU
    assert model[0].mean.dtype == torch.float64


# -- drop_path in training --------------------------------------------------------------------------

def test_drop_path_in_training_drops_whole_examples():
    """torchvision's StochasticDepth "row": each example is zero or scaled by 1 / (1 - p)."""
    spec = Spec("drop_path", (2, 3, 3), (DropPath(0.4),))
    model = T.build(spec)
    x = np.random.default_rng(0).uniform(0.5, 1.5, (400, 2, 3, 3)).astype(np.float32)
    torch.manual_seed(0)
    out = T.forward(model, x, training=True)
    dropped = np.all(out == 0, axis=(1, 2, 3))
    kept = np.all(np.isclose(out, x / 0.6, rtol=1e-6), axis=(1, 2, 3))
    assert np.all(dropped | kept)
    assert 0.3 < dropped.mean() < 0.5  # p = 0.4 on 400 draws: 8 standard deviations wide
    assert np.array_equal(T.forward(model, x), x)  # eval mode: the identity


def test_lockstep_drop_path_multiplies_by_the_given_mask():
    """A residual branch behind a drop_path: with lockstep masks the branch counts for one example
    (scaled by 1 / (1 - p)) and not for the other, in the loss and in which weights move."""
    p = 0.5
    spec = Spec("lockstep_drop_path", (2, 4, 4), (
        Residual(body=Sequence(layers=(Conv2d(2, 3, padding=1), DropPath(p)))), Flatten(), Dense(3)))
    path = "blocks[0].body.layers[1]"
    model, weights = built(spec, lockstep_dropout=True)
    assert isinstance(T.record_of(model, "torch").layers[path], T.MaskedDropout)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 2, 4, 4)).astype(np.float32)
    y = np.array([0, 2])
    mask = np.zeros((2, 2, 4, 4), np.float32)
    mask[1] = 1 / (1 - p)
    optimizer = T.make_optimizer(model, lr=0.1)
    loss = T.train_step(model, optimizer, x, y, dropout_masks={path: mask})

    w = float64(weights)
    x64 = torch.from_numpy(x).double()
    body = conv(x64, w, "blocks[0].body.layers[0]", (1, 1, 1, 1))
    logits = F.linear((x64 + body * torch.from_numpy(mask).double()).flatten(1), w["blocks[2].weight"],
                      w["blocks[2].bias"])
    assert abs(loss - F.cross_entropy(logits, torch.from_numpy(y)).item()) <= 1e-5

    model, _ = built(spec, lockstep_dropout=True)
    optimizer = T.make_optimizer(model, lr=0.1)
    T.train_step(model, optimizer, x, y, dropout_masks={path: np.zeros_like(mask)})
    after = T.get_weights(model)
    assert np.array_equal(after["blocks[0].body.layers[0].weight"], weights["blocks[0].body.layers[0].weight"])
    assert not np.array_equal(after["blocks[2].weight"], weights["blocks[2].weight"])
    with pytest.raises(T.BackendError, match=r"missing blocks\[0\]\.body\.layers\[1\]"):
        T.train_step(model, optimizer, x, y, dropout_masks={})
    with pytest.raises(T.BackendError, match="without a dropout mask"):
        T.forward(model, x, training=True)


# -- one network with every new kind: weights, counts, training ------------------------------------

def every_kind_spec() -> Spec:
    return Spec("every_new_kind", (3, 9, 9), (
        Normalize(mean=(0.5, 0.4, 0.3), std=(0.25,)),
        Pad2d((0, 1, 0, 1)),
        Conv2d(8, 3, stride=2, padding=(1, 0, 1, 0)),
        BatchNorm(scale=False),
        PReLU(),
        Conv2d(8, 3, padding=2, dilation=2, groups=8, bias=False),
        BatchNorm(center=False),
        Activation("hardswish"),
        Branches((Identity(), se_gate(8, 4, "hardsigmoid")), merge="mul"),
        Branches((Sequence(layers=(LayerNorm(), Conv2d(8, 1), Activation("gelu", approximate="tanh"),
                                   ChannelScale(), DropPath(0.5))), Identity()), merge="add"),
        Branches((ChannelSlice(0, 4), Sequence(layers=(ChannelSlice(4, 8), Conv2d(4, 1), Activation("elu", alpha=0.5),
                                                       Activation("leaky_relu", negative_slope=0.1)))),
                 merge="concat"),
        ChannelShuffle(2),
        Activation("silu"),
        Activation("relu6"),
        Activation("softmax"),
        BatchNorm(scale=False, center=False),
        Activation("gelu"),
        Branches((GlobalAvgPool(), GlobalMaxPool()), merge="concat"),
        LayerNorm(),
        PReLU(),
        Dropout(0.1),
        Dense(5),
    ))


def test_every_kind_weights_round_trip_and_counts():
    spec = every_kind_spec()
    inference = spec.infer()
    model, weights = built(spec)
    got = T.get_weights(model)
    assert list(got) == list(inference.weight_layout())
    assert all(np.array_equal(got[k], weights[k]) for k in weights)
    expected = {r.path: (r.parameters, r.running_stats) for r in inference.leaves() if r.parameters or r.running_stats}
    assert T.parameter_counts(model) == expected
    assert sum(p.numel() for p in model.parameters()) == inference.parameters
    # readable native names: the spec's own kinds, not anonymous wrappers
    assert type(model[2]).__name__ == "PaddedConv2d" and type(model[8]).__name__ == "Branches"
    assert model[8].merge == "mul"


def test_every_kind_trains():
    spec = every_kind_spec()
    inference = spec.infer()
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 3, 9, 9)).astype(np.float32)
    y = rng.integers(0, 5, 6)
    masks = draw_dropout_masks(inference, 6, np.random.default_rng(6))
    assert set(masks) == {"blocks[9].branches[0].layers[4]", "blocks[20]"}
    kept = masks["blocks[9].branches[0].layers[4]"][:, 0, 0, 0]
    assert 0 < np.count_nonzero(kept) < len(kept)  # the drop_path keeps some examples and drops some
    for lockstep in (False, True):
        torch.manual_seed(0)
        model = T.build(spec, lockstep_dropout=lockstep)
        start = init_weights(spec, seed=0, nontrivial=False)
        T.set_weights(model, start)
        optimizer = T.make_optimizer(model, lr=0.05, momentum=0.9, weight_decay=1e-4)
        assert optimizer.keys == list(inference.weight_layout(running_stats=False))
        assert {id(p) for p in model.parameters()} == {id(p) for p in optimizer.native.param_groups[0]["params"]}
        losses = [T.train_step(model, optimizer, x, y, dropout_masks=masks if lockstep else None) for _ in range(3)]
        assert all(np.isfinite(losses)), losses
        after = T.get_weights(model)
        for key in optimizer.keys:
            assert not np.array_equal(after[key], start[key]), f"{key} did not move"
        assert np.all(np.isfinite(T.forward(model, x)))


def test_every_kind_in_channels_last_matches_plain():
    spec = every_kind_spec()
    x = np.random.default_rng(7).standard_normal((2, 3, 9, 9)).astype(np.float32)
    plain, weights = built(spec)
    fast = T.build(spec, execution="channels_last")
    T.set_weights(fast, weights)
    assert rel(T.forward(fast, x), T.forward(plain, x)) <= 1e-5


def test_every_kind_passes_check_parity():
    result = check_parity(every_kind_spec(), frameworks=("torch",), batch=2, seed=0)
    assert result.errors == {}
    assert [(p.a, p.b) for p in result.pairs] == [("torch", "reference")]
    assert result.ok, (result.shape_mismatches[:3], result.count_mismatches[:3], result.pairs)


def test_every_kind_lockstep_sgd_follows_the_reference():
    """Three lockstep SGD steps (momentum, weight decay, the same dropout and drop_path masks):
    PyTorch's losses and every weight and running statistic as in the float64 reference."""
    spec = every_kind_spec()
    inference = spec.infer()
    start = init_weights(spec, seed=1)
    rng = np.random.default_rng(8)
    batches = [(rng.standard_normal((4, 3, 9, 9)).astype(np.float32), rng.integers(0, 5, 4),
                draw_dropout_masks(inference, 4, rng)) for _ in range(3)]
    kept = np.concatenate([masks["blocks[9].branches[0].layers[4]"][:, 0, 0, 0] for _, _, masks in batches])
    assert 0 < np.count_nonzero(kept) < len(kept)  # the drop_path both drops and keeps examples
    trajectories = {}
    for backend in (T, reference):
        model = backend.build(spec, lockstep_dropout=True)
        backend.set_weights(model, start)
        optimizer = backend.make_optimizer(model, lr=0.05, momentum=0.9, weight_decay=1e-3)
        losses = [backend.train_step(model, optimizer, x, y, dropout_masks=masks) for x, y, masks in batches]
        trajectories[backend.NAME] = losses, backend.get_weights(model)
    (losses, weights), (reference_losses, reference_weights) = trajectories["torch"], trajectories["reference"]
    assert np.allclose(losses, reference_losses, rtol=1e-5, atol=0)
    assert set(weights) == set(reference_weights)
    for key in weights:
        assert not np.array_equal(reference_weights[key], start[key]), key
        assert rel(weights[key], reference_weights[key]) <= 2e-5, (key, rel(weights[key], reference_weights[key]))
