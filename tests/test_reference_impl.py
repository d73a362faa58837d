"""The float64 NumPy reference (netparity.spec.reference) against PyTorch in float64.

Every kind on small random inputs, with the edges where implementations part ways (stride
larger than kernel, ceil mode with padding, dilation with padding, groups == channels,
asymmetric padding, odd sizes, broadcasting merges, count_include_pad False): forward, input
gradient and every weight gradient, in eval and training mode. PyTorch here is
torch.nn.functional in float64, written independently of the netparity torch backend.
"""

import math

import numpy as np
import pytest

from netparity.spec import (LAYER_KINDS, Activation, AdaptiveAvgPool2d, AvgPool2d, BatchNorm, Branches,
                            ChannelScale, ChannelShuffle, ChannelSlice, ConcatBranches, Conv2d, Dense, DenseConcat,
                            DropPath, Dropout, Flatten, GlobalAvgPool, GlobalMaxPool, Identity, LayerNorm,
                            MaxPool2d, Normalize, Pad2d, PReLU, Residual, Sequence, Spec, init_weights)
from netparity.spec import reference
from netparity.spec.reference.erf import erf

torch = pytest.importorskip("torch", reason="the reference is checked against PyTorch")
F = torch.nn.functional

RTOL = 1e-10  # float64 against float64: max|a - b| <= RTOL * max|b|
# PyTorch's float64 hardsigmoid backward multiplies by a float32 1/6 (0.1666666716...: measured,
# x = 0 gives that gradient), 3e-8 off; the reference uses the float64 1/6.
LOOSER = {"activation hardsigmoid: input gradient": 1e-7}


def assert_close(got, expected, what=""):
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    assert got.shape == expected.shape, (what, got.shape, expected.shape)
    scale = max(float(np.max(np.abs(expected))), 1e-300) if expected.size else 1.0
    error = float(np.max(np.abs(got - expected))) if expected.size else 0.0
    assert error <= LOOSER.get(what, RTOL) * scale, f"{what}: max|diff| {error:.3e} vs max|expected| {scale:.3e}"


# ---------------------------------------------------------------------------------------
# PyTorch's float64 version of every kind: a small functional interpreter of a spec
# ---------------------------------------------------------------------------------------

def _per_channel(t, x):
    return t.view(-1, 1, 1) if x.dim() == 4 else t


ACTIVATIONS = {
    "relu": lambda x, l: F.relu(x), "sigmoid": lambda x, l: torch.sigmoid(x), "tanh": lambda x, l: torch.tanh(x),
    "leaky_relu": lambda x, l: F.leaky_relu(x, l.negative_slope), "relu6": lambda x, l: F.relu6(x),
    "elu": lambda x, l: F.elu(x, l.alpha), "silu": lambda x, l: F.silu(x), "hardswish": lambda x, l: F.hardswish(x),
    "hardsigmoid": lambda x, l: F.hardsigmoid(x), "gelu": lambda x, l: F.gelu(x, approximate=l.approximate),
    "softplus": lambda x, l: F.softplus(x), "softmax": lambda x, l: torch.softmax(x, dim=1),
}


def torch_layer(layer, path, x, params, masks, training):
    """``layer`` on x (NCHW or (N, F)) with PyTorch's own functions; ``params``: canonical key ->
    tensor (running statistics updated in place in training, as nn.BatchNorm does)."""
    p = lambda name: params.get(f"{path}.{name}")  # noqa: E731
    kind = layer.kind
    if kind == "conv2d":
        top, bottom, left, right = layer.pads
        return F.conv2d(F.pad(x, (left, right, top, bottom)), p("weight"), p("bias"), layer.stride, 0,
                        layer.dilation, layer.groups)
    if kind == "pad2d":
        top, bottom, left, right = layer.pads
        return F.pad(x, (left, right, top, bottom))
    if kind == "batchnorm":
        return F.batch_norm(x, p("running_mean"), p("running_var"), p("weight"), p("bias"), training,
                            layer.momentum, layer.eps)
    if kind == "layernorm":
        if x.dim() == 2:
            return F.layer_norm(x, (x.shape[1],), p("weight"), p("bias"), layer.eps)
        return F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), p("weight"), p("bias"),
                            layer.eps).permute(0, 3, 1, 2)
    if kind == "activation":
        return ACTIVATIONS[layer.function](x, layer)
    if kind == "prelu":
        return F.prelu(x, p("weight"))
    if kind == "channel_scale":
        return x * _per_channel(p("weight"), x)
    if kind == "normalize":
        c = x.shape[1]
        mean = torch.tensor(layer.mean, dtype=torch.float64).expand(c)
        std = torch.tensor(layer.std, dtype=torch.float64).expand(c)
        return (x - _per_channel(mean, x)) / _per_channel(std, x)
    if kind == "maxpool2d":
        return F.max_pool2d(x, layer.kernel, layer.stride, layer.padding, ceil_mode=layer.ceil_mode)
    if kind == "avgpool2d":
        return F.avg_pool2d(x, layer.kernel, layer.stride, layer.padding, ceil_mode=layer.ceil_mode,
                            count_include_pad=layer.count_include_pad)
    if kind == "adaptive_avgpool2d":
        return F.adaptive_avg_pool2d(x, layer.output_size)
    if kind in ("global_avgpool", "global_maxpool"):
        pooled = F.adaptive_avg_pool2d(x, 1) if kind == "global_avgpool" else F.adaptive_max_pool2d(x, 1)
        return pooled if layer.keepdims else pooled.flatten(1)
    if kind == "flatten":
        return x.flatten(1)
    if kind == "dense":
        return F.linear(x, p("weight"), p("bias"))
    if kind in ("dropout", "drop_path"):
        return x * torch.from_numpy(masks[path].astype(np.float64)) if training else x
    if kind == "identity":
        return x
    if kind == "channel_shuffle":  # torchvision's channel_shuffle
        b, c, h, w = x.shape
        return x.view(b, layer.groups, c // layer.groups, h, w).transpose(1, 2).reshape(b, c, h, w)
    if kind == "channel_slice":
        return x[:, layer.start:layer.stop]
    run = lambda child, rel, value: torch_layer(child, f"{path}.{rel}", value, params, masks, training)  # noqa: E731
    if kind == "sequence":
        for rel, child in layer.children():
            x = run(child, rel, x)
        return x
    if kind in ("branches", "concat_branches"):
        outs = [run(child, rel, x) for rel, child in layer.children()]
        merge = getattr(layer, "merge", "concat")
        if merge == "concat":
            return torch.cat(outs, dim=1)
        result = outs[0]
        for out in outs[1:]:
            result = result + out if merge == "add" else result * out
        return result
    if kind == "residual":
        return run(layer.body, "body", x) + (x if layer.shortcut is None else run(layer.shortcut, "shortcut", x))
    if kind == "dense_concat":
        for rel, child in layer.children():
            x = torch.cat([x, run(child, rel, x)], dim=1)
        return x
    raise AssertionError(f"no torch version of {kind}")


def torch_spec(spec, x, weights, masks, training, trainable):
    """(output, input leaf, {key: parameter leaf}) of the spec in torch; backward() fills the grads."""
    params = {k: torch.tensor(v, dtype=torch.float64, requires_grad=k in trainable) for k, v in weights.items()}
    xt = torch.tensor(x, requires_grad=True)
    out = xt
    for row in spec.infer().top_level():
        out = torch_layer(row.layer, row.path, out, params, masks, training)
    return out, xt, params


# ---------------------------------------------------------------------------------------
# The cases: (id, layers, per-example input shape, training)
# ---------------------------------------------------------------------------------------

se_gate = Sequence(layers=(GlobalAvgPool(keepdims=True), Conv2d(2, 1), Activation("relu"), Conv2d(4, 1),
                           Activation("sigmoid")))

CASES = [
    ("conv 3x3 pad 1", [Conv2d(4, 3, padding=1)], (3, 7, 9)),
    ("conv stride larger than kernel", [Conv2d(3, 2, stride=3)], (2, 8, 7)),
    ("conv dilation with padding", [Conv2d(4, 3, padding=2, dilation=2)], (3, 9, 8)),
    ("conv dilation (2, 3) stride 2", [Conv2d(2, (3, 2), stride=2, padding=(1, 2), dilation=(2, 3))], (3, 11, 10)),
    ("conv depthwise stride 2", [Conv2d(6, 3, stride=2, padding=1, groups=6)], (6, 9, 9)),
    ("conv depthwise multiplier 2 no bias", [Conv2d(12, 3, groups=6, bias=False)], (6, 7, 8)),
    ("conv depthwise dilation asymmetric padding", [Conv2d(4, 3, groups=4, padding=(1, 2, 0, 1), dilation=2)],
     (4, 8, 7)),
    ("conv grouped", [Conv2d(6, 3, groups=3, padding=1)], (6, 5, 5)),
    ("conv 1x1 grouped", [Conv2d(4, 1, groups=2)], (6, 3, 5)),
    ("conv 1x1 stride 2 padded", [Conv2d(3, 1, stride=2, padding=1)], (2, 5, 6)),
    ("conv asymmetric padding stride 2", [Conv2d(4, 3, stride=2, padding=(0, 1, 0, 1))], (3, 8, 8)),
    ("conv odd sizes", [Conv2d(3, (3, 2), stride=(2, 1), padding=(1, 0))], (3, 11, 6)),
    ("pad2d", [Pad2d((1, 2, 0, 3))], (2, 4, 5)),
    ("batchnorm eval", [BatchNorm()], (3, 4, 5)),
    ("batchnorm no scale no center", [BatchNorm(scale=False, center=False)], (3, 4, 5)),
    ("batchnorm flat", [Flatten(), BatchNorm(eps=1e-3)], (6, 1, 1)),
    ("layernorm image", [LayerNorm(eps=1e-6)], (4, 3, 5)),
    ("layernorm flat", [Flatten(), LayerNorm()], (5, 1, 1)),
    *[(f"activation {f}", [Activation(f)], (3, 5, 4)) for f in
      ("relu", "sigmoid", "tanh", "relu6", "silu", "hardswish", "hardsigmoid", "gelu", "softplus",
       "softmax")],
    ("leaky_relu 0.2", [Activation("leaky_relu", negative_slope=0.2)], (3, 5, 4)),
    ("elu 0.7", [Activation("elu", alpha=0.7)], (3, 5, 4)),
    ("gelu tanh", [Activation("gelu", approximate="tanh")], (3, 5, 4)),
    ("softmax flat", [Flatten(), Activation("softmax")], (7, 1, 1)),
    ("prelu image", [PReLU()], (3, 4, 4)),
    ("prelu flat", [Flatten(), PReLU()], (5, 1, 1)),
    ("channel_scale", [ChannelScale()], (3, 4, 4)),
    ("normalize per channel", [Normalize(mean=(0.4, -0.1, 0.2), std=(0.5, 2.0, 1.5))], (3, 4, 4)),
    ("normalize one value", [Normalize(mean=(0.3,), std=(0.25,))], (2, 3, 3)),
    ("maxpool 2x2", [MaxPool2d(2)], (2, 6, 7)),
    ("maxpool ceil mode with padding", [MaxPool2d(3, stride=2, padding=1, ceil_mode=True)], (2, 8, 10)),
    ("maxpool stride larger than kernel", [MaxPool2d(2, stride=3)], (2, 8, 9)),
    ("maxpool odd", [MaxPool2d((3, 2), stride=(2, 1), padding=(1, 0))], (2, 7, 5)),
    ("avgpool ceil mode with padding", [AvgPool2d(3, stride=2, padding=1, ceil_mode=True)], (2, 8, 10)),
    ("avgpool ceil count_include_pad False",
     [AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)], (2, 7, 8)),
    ("avgpool stride larger than kernel", [AvgPool2d(2, stride=3)], (2, 8, 9)),
    ("adaptive avgpool uneven windows", [AdaptiveAvgPool2d((3, 2))], (2, 7, 5)),
    ("global_avgpool", [GlobalAvgPool()], (3, 4, 5)),
    ("global_avgpool keepdims", [GlobalAvgPool(keepdims=True)], (3, 4, 5)),
    ("global_maxpool", [GlobalMaxPool()], (3, 4, 5)),
    ("global_maxpool keepdims", [GlobalMaxPool(keepdims=True)], (3, 4, 5)),
    ("flatten dense", [Flatten(), Dense(4)], (2, 3, 3)),
    ("dense no bias", [Flatten(), Dense(3, bias=False)], (5, 1, 1)),
    ("dropout eval", [Dropout(0.5)], (2, 3, 3)),
    ("identity", [Identity()], (2, 3, 3)),
    ("channel_shuffle", [ChannelShuffle(3)], (6, 3, 4)),
    ("channel_slice image", [ChannelSlice(1, 4)], (5, 3, 3)),
    ("channel_slice flat", [Flatten(), ChannelSlice(2, 5)], (6, 1, 1)),
    ("sequence", [Sequence(layers=(Conv2d(4, 3, padding=1), BatchNorm(), Activation("relu")))], (3, 6, 6)),
    ("branches concat", [Branches(branches=(Conv2d(2, 1), Identity()), merge="concat")], (3, 5, 5)),
    ("branches add", [Branches(branches=(Sequence(layers=(Conv2d(3, 3, padding=1),)), Identity()), merge="add")],
     (3, 5, 5)),
    ("branches mul: squeeze-and-excitation broadcast", [Branches(branches=(Identity(), se_gate), merge="mul")],
     (4, 5, 6)),
    ("branches add: (C,1,1) onto (C,H,W)", [Branches(branches=(GlobalMaxPool(keepdims=True), Identity()),
                                                     merge="add")], (3, 4, 4)),
    ("branches concat flat", [Flatten(), Branches(branches=(Dense(3), Identity(), ChannelSlice(0, 2)))], (4, 1, 1)),
    ("concat_branches", [ConcatBranches(branches=(Sequence(layers=(Conv2d(2, 1),)),
                                                   Sequence(layers=(MaxPool2d(3, stride=1, padding=1),))))],
     (3, 5, 5)),
    ("residual identity", [Residual(body=Sequence(layers=(Conv2d(3, 3, padding=1), Activation("relu"))))],
     (3, 5, 5)),
    ("residual projection", [Residual(body=Sequence(layers=(Conv2d(4, 3, stride=2, padding=1),)),
                                      shortcut=Sequence(layers=(Conv2d(4, 1, stride=2),)))], (3, 6, 6)),
    ("dense_concat", [DenseConcat(layers=(Sequence(layers=(BatchNorm(), Conv2d(2, 3, padding=1))),
                                          Sequence(layers=(Conv2d(2, 1),))))], (3, 5, 5)),
]

TRAINING_CASES = [
    ("batchnorm training", [BatchNorm(momentum=0.3)], (3, 4, 5)),
    ("batchnorm training no scale", [BatchNorm(scale=False)], (3, 2, 3)),
    ("batchnorm flat training", [Flatten(), BatchNorm()], (6, 1, 1)),
    ("dropout training", [Dropout(0.4)], (2, 3, 3)),
    ("drop_path training", [Residual(body=Sequence(layers=(Conv2d(2, 3, padding=1), DropPath(0.5))))], (2, 4, 4)),
    # no conv bias before a batchnorm: its gradient is zero up to rounding in training mode
    ("sequence training", [Sequence(layers=(Conv2d(4, 3, padding=1, bias=False), BatchNorm(), Activation("relu"),
                                            Dropout(0.2)))], (3, 6, 6)),
]


def _random_weights(spec, seed):
    """Canonical weights in float64, beyond float32's grid (the reference keeps them as given)."""
    rng = np.random.default_rng(seed)
    return {k: v.astype(np.float64) * (1 + 1e-3 * rng.standard_normal(v.shape))
            for k, v in init_weights(spec, seed).items()}


def _masks(spec, batch, seed):
    from netparity.backends.training import dropout_rows
    rng = np.random.default_rng(seed)
    return {row.path: row.layer.draw_mask(rng, batch, row.output_shape) for row in dropout_rows(spec)}


def _check_against_torch(name, layers, shape, training, seed=0, batch=3):
    spec = Spec(name, shape, tuple(layers))
    rng = np.random.default_rng(seed)
    weights = _random_weights(spec, seed)
    x = rng.standard_normal((batch, *shape))
    masks = _masks(spec, batch, seed) if training else {}
    model = reference.build(spec, lockstep_dropout=True)
    reference.set_weights(model, weights)
    upstream = rng.standard_normal((batch, *spec.infer().output_shape))
    out, dx, dw = reference.gradients(model, x, upstream, training, masks or None)

    trainable = reference.trainable_keys(model)
    expected, xt, params = torch_spec(spec, x, weights, masks, training, trainable)
    (expected * torch.from_numpy(upstream)).sum().backward()
    assert_close(out, expected.detach().numpy(), f"{name}: output")
    assert_close(dx, xt.grad.numpy(), f"{name}: input gradient")
    assert set(dw) == set(trainable)
    for key in trainable:
        assert_close(dw[key], params[key].grad.numpy(), f"{name}: gradient of {key}")
    after = reference.get_weights(model)
    for key in set(weights) - set(trainable):  # running statistics: moved in training, kept in eval
        assert_close(after[key], params[key].detach().numpy(), f"{name}: {key} after the pass")
    return spec, weights, after


@pytest.mark.parametrize("name, layers, shape", CASES, ids=[c[0] for c in CASES])
def test_kind_matches_torch_in_eval_mode(name, layers, shape):
    _check_against_torch(name, layers, shape, training=False)


@pytest.mark.parametrize("name, layers, shape", TRAINING_CASES, ids=[c[0] for c in TRAINING_CASES])
def test_kind_matches_torch_in_training_mode(name, layers, shape):
    _check_against_torch(name, layers, shape, training=True)


def test_batchnorm_training_updates_running_stats_with_pytorchs_unbiased_variance():
    spec, weights, after = _check_against_torch("bn", [BatchNorm(momentum=0.25)], (2, 3, 3), training=True, batch=2)
    x = np.random.default_rng(0).standard_normal((2, 2, 3, 3))
    values = x.transpose(1, 0, 2, 3).reshape(2, -1)
    mean, var = values.mean(1), values.var(1, ddof=1)  # n - 1: PyTorch's running variance
    expected_var = 0.75 * weights["blocks[0].running_var"] + 0.25 * var
    np.testing.assert_allclose(after["blocks[0].running_mean"], 0.75 * weights["blocks[0].running_mean"] + 0.25 * mean)
    np.testing.assert_allclose(after["blocks[0].running_var"], expected_var)
    assert not np.allclose(after["blocks[0].running_var"],
                           0.75 * weights["blocks[0].running_var"] + 0.25 * values.var(1))


def test_reference_covers_every_layer_kind():
    assert set(reference.REFERENCE) == set(LAYER_KINDS)
    assert reference.LAYER_BUILDERS is reference.REFERENCE


def test_erf_is_within_two_ulps_of_math_erf():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(20000) * 3, rng.uniform(-7, 7, 20000), rng.standard_normal(2000) * 1e-4,
                        np.linspace(-6.2, 6.2, 4001), [0.0, 1e-300, 5.9, 6.0, 6.1, 40.0, np.inf, -np.inf]])
    expected = np.array([math.erf(v) for v in x])
    got = erf(x)
    assert np.all(np.abs(got - expected) <= 2 * np.spacing(np.abs(expected)))
    assert np.isnan(erf(np.array([np.nan])))[0]


# ---------------------------------------------------------------------------------------
# Training: PyTorch's SGD in float64
# ---------------------------------------------------------------------------------------

def test_sgd_steps_with_momentum_and_weight_decay_match_torch_optim_sgd():
    spec = Spec("small", (2, 6, 6), (Conv2d(3, 3, padding=1), BatchNorm(), Activation("relu"), MaxPool2d(2),
                                     Flatten(), Dropout(0.3), Dense(4)))
    weights = _random_weights(spec, 1)
    model = reference.build(spec, lockstep_dropout=True)
    reference.set_weights(model, weights)
    optimizer = reference.make_optimizer(model, lr=0.1, momentum=0.9, weight_decay=0.01)
    trainable = reference.trainable_keys(model)
    params = {k: torch.tensor(v, requires_grad=k in trainable) for k, v in weights.items()}
    sgd = torch.optim.SGD([params[k] for k in trainable], lr=0.1, momentum=0.9, weight_decay=0.01)
    rng = np.random.default_rng(2)
    for step in range(3):
        x, y = rng.standard_normal((5, 2, 6, 6)), rng.integers(0, 4, 5)
        masks = _masks(spec, 5, step)
        loss = reference.train_step(model, optimizer, x, y, dropout_masks=masks)
        out = torch.tensor(x)
        for row in spec.infer().top_level():
            out = torch_layer(row.layer, row.path, out, params, masks, True)
        expected = F.cross_entropy(out, torch.from_numpy(y))
        sgd.zero_grad()
        expected.backward()
        sgd.step()
        assert abs(loss - expected.item()) <= 1e-12 * abs(expected.item()), step
        after = reference.get_weights(model)
        for key, value in params.items():
            assert_close(after[key], value.detach().numpy(), f"step {step}: {key}")


def test_train_step_refuses_masks_without_lockstep_and_labels_out_of_range():
    spec = Spec("small", (1, 4, 4), (Flatten(), Dropout(0.5), Dense(3)))
    model = reference.build(spec)
    optimizer = reference.make_optimizer(model, lr=0.1)
    x = np.zeros((2, 1, 4, 4))
    with pytest.raises(Exception, match="lockstep_dropout"):
        reference.train_step(model, optimizer, x, np.array([0, 1]), dropout_masks=_masks(spec, 2, 0))
    with pytest.raises(Exception, match=r"labels must lie in \[0, 3\)"):
        reference.train_step(model, optimizer, x, np.array([0, 3]))
    with pytest.raises(Exception, match="lr must be positive"):
        reference.make_optimizer(model, lr=0.0)


# ---------------------------------------------------------------------------------------
# The backend-shaped API
# ---------------------------------------------------------------------------------------

def test_api_checks_weights_and_inputs_like_the_backends():
    from netparity.backends import BackendError

    spec = Spec("small", (1, 5, 5), (Conv2d(2, 3), Flatten(), Dense(2)))
    model = reference.build(spec)
    weights = init_weights(spec)
    with pytest.raises(BackendError, match="missing 1 .first: blocks.2..bias"):
        reference.set_weights(model, {k: v for k, v in weights.items() if k != "blocks[2].bias"})
    with pytest.raises(BackendError, match="blocks.0..weight has shape"):
        reference.set_weights(model, {**weights, "blocks[0].weight": np.zeros((2, 1, 2, 2))})
    with pytest.raises(BackendError, match="does not fit the spec"):
        reference.forward(model, np.zeros((2, 1, 4, 5)))
    with pytest.raises(BackendError, match="CPU only"):
        reference.build(spec, device="gpu")
    reference.set_weights(model, weights)
    assert list(reference.get_weights(model)) == list(weights)
    assert reference.parameter_counts(model) == {"blocks[0]": (20, 0), "blocks[2]": (38, 0)}
    x = np.random.default_rng(0).standard_normal((3, 1, 5, 5)).astype(np.float32)
    layers = reference.forward_layers(model, x)
    assert list(layers) == ["blocks[0]", "blocks[1]", "blocks[2]"]
    np.testing.assert_array_equal(layers["blocks[2]"], reference.forward(model, x))
    # input_gradient after forward_layers reuses its graph; either way the same numbers
    upstream = np.ones((3, 2))
    first = reference.input_gradient(model, x, upstream)
    np.testing.assert_array_equal(first, reference.input_gradient(model, x, upstream))


def test_lockstep_model_needs_masks_in_training_mode():
    spec = Spec("small", (1, 4, 4), (Flatten(), Dropout(0.5), Dense(3)))
    model = reference.build(spec, lockstep_dropout=True)
    with pytest.raises(Exception, match="dropout_masks"):
        reference.forward(model, np.zeros((2, 1, 4, 4)), training=True)
    free = reference.build(spec)  # draws its own masks, from a seeded generator
    out = reference.forward(free, np.ones((2, 1, 4, 4)), training=True)
    assert out.shape == (2, 3)


# ---------------------------------------------------------------------------------------
# The reference in check_parity
# ---------------------------------------------------------------------------------------

def _tampered_reference(target: str):
    """A stand-in framework: the reference itself, with one weight 1% off on the way in (a
    mistake every framework could share)."""
    from types import SimpleNamespace

    def set_weights(model, weights):
        weights = dict(weights)
        weights[target] = weights[target] * 1.01
        reference.set_weights(model, weights)

    return SimpleNamespace(**{**{name: getattr(reference, name) for name in reference.__all__},
                              "set_weights": set_weights})


def test_check_parity_compares_every_framework_with_the_reference(monkeypatch):
    from netparity.compare import parity

    honest = parity._backend
    monkeypatch.setattr(parity, "_backend", lambda name: reference if name in ("fake_a", "fake_b") else
                        _tampered_reference("blocks[4].weight") if name == "fake_wrong" else honest(name))
    result = parity.check_parity("lenet_bn", ("fake_a", "fake_wrong", "fake_b"))
    assert [r.framework for r in result.runs] == ["fake_a", "fake_wrong", "fake_b", "reference"]
    assert result.frameworks == ["fake_a", "fake_wrong", "fake_b"] and result.reference
    assert [(p.a, p.b) for p in result.pairs] == [
        ("fake_a", "fake_wrong"), ("fake_a", "fake_b"), ("fake_wrong", "fake_b"),
        ("fake_a", "reference"), ("fake_wrong", "reference"), ("fake_b", "reference")]
    for pair in result.pairs:
        wrong = "fake_wrong" in (pair.a, pair.b)
        assert pair.ok is not wrong
        assert pair.first_divergence == ("blocks[4]" if wrong else None)
    assert not result.ok and result.shape_parity and result.parameter_parity


def test_a_check_that_compares_nothing_is_not_ok(monkeypatch):
    from netparity.compare import parity

    monkeypatch.setattr(parity, "_backend", lambda name: reference)
    alone = parity.check_parity("lenet", ("fake",), reference=False)
    assert alone.pairs == [] and not alone.compared and not alone.ok
    assert alone.to_dict()["compared"] is False and alone.to_dict()["ok"] is False
    only_reference = parity.check_parity("lenet", ())
    assert [r.framework for r in only_reference.runs] == ["reference"] and not only_reference.ok
    with_reference = parity.check_parity("lenet", ("fake",))
    assert [(p.a, p.b) for p in with_reference.pairs] == [("fake", "reference")] and with_reference.ok


def test_one_installed_framework_is_a_real_check_against_the_reference():
    pytest.importorskip("torch")
    from netparity.compare import check_parity

    result = check_parity("lenet_bn", ("torch",))
    assert result.frameworks == ["torch"] and [(p.a, p.b) for p in result.pairs] == [("torch", "reference")]
    pair, = result.pairs
    assert result.ok and 0 < pair.output_max_rel <= 1e-6 and 0 < pair.gradient_max_rel <= 1e-5
