"""The Keras 3 backend builds every layer kind of issue 10 exactly as spec/layers.py defines it.

Each kind runs through ``check_parity(spec, frameworks=("keras",))``: every layer's output, the
input gradient, shapes and parameter counts against the float64 NumPy reference. The flat cases
flatten a real (C, H, W) image first (H, W > 1), so that the features arrive in Keras' (H, W, C)
order and every per-feature weight, constant and merge must follow it. Then the Keras choices
themselves (DepthwiseConv2D, Subsample2D, variables without gamma/beta, PReLU's alpha shape),
drop_path in training, and one network with every new kind: weights, counts, checkpoints and
three lockstep SGD steps against the reference's train_step, here and on the jax Keras backend.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

K = pytest.importorskip("netparity.backends.keras.core",
                        reason="Keras 3 is not installed (pip install 'netparity[keras]')", exc_type=ImportError)
keras = K.keras

from netparity.backends.common import BackendError, record_of  # noqa: E402
from netparity.compare import check_parity  # noqa: E402
from netparity.compare.lockstep import draw_dropout_masks  # noqa: E402
from netparity.spec import reference  # noqa: E402
from netparity.spec import (Activation, AdaptiveAvgPool2d, BatchNorm, Branches, ChannelScale,  # noqa: E402
                            ChannelShuffle, ChannelSlice, Conv2d, Dense, DropPath, Dropout, Flatten, GlobalAvgPool,
                            GlobalMaxPool, Identity, LayerNorm, Normalize, Pad2d, PReLU, Residual, Sequence, Spec,
                            init_weights)
from netparity.spec.layers import ACTIVATIONS as SPEC_ACTIVATIONS  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
IMAGE = (3, 4, 5)  # the input of the image cases: odd, non-square
FLAT_FROM = (3, 2, 4)  # flattened into 24 features in Keras' (H, W, C) order


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))


def se_gate(channels, squeeze, function="sigmoid"):
    return Sequence(layers=(GlobalAvgPool(keepdims=True), Conv2d(squeeze, 1), Activation("relu"),
                            Conv2d(channels, 1), Activation(function)))


ACTIVATIONS = [Activation("relu"), Activation("sigmoid"), Activation("tanh"), Activation("leaky_relu"),
               Activation("leaky_relu", negative_slope=0.2), Activation("leaky_relu", negative_slope=-0.3),
               Activation("leaky_relu", negative_slope=1.5), Activation("relu6"), Activation("elu"),
               Activation("elu", alpha=0.5), Activation("silu"), Activation("hardswish"), Activation("hardsigmoid"),
               Activation("gelu"), Activation("gelu", approximate="tanh"), Activation("softplus"),
               Activation("softmax")]


def image(*layers):
    """An image case: a 3x3 conv first so values have both signs and reach past +-3 and 6."""
    return Spec("image", IMAGE, (Conv2d(4, 3, padding=1), *layers))


def flat(*layers):
    """A flat case in Keras' (H, W, C) feature order, ending in a dense layer (whose rows
    follow the order of what it reads)."""
    return Spec("flat", FLAT_FROM, (Conv2d(3, 1), Flatten(), *layers, Dense(3)))


def concat(*branches):
    """Branches side by side on one input, concatenated: each branch is still compared on
    its own (every layer is), in one Keras model instead of one per branch."""
    return Branches(tuple(branches), merge="concat")


PER_FEATURE = tuple(np.linspace(-1.0, 1.0, 24))  # a constant per flattened feature: its order matters
BATCHNORMS = [BatchNorm(scale=s, center=c, eps=1e-3 if s else 1e-5) for s in (True, False) for c in (True, False)]

CASES = {
    # conv2d: depthwise, grouped, dilation (with stride: Subsample2D or DepthwiseConv2D), 4-sided padding
    "conv_depthwise_stride2": Spec("c", (4, 7, 7), (Conv2d(4, 3, stride=2, padding=1, groups=4),)),
    "conv_depthwise_multiplier_asymmetric": Spec("c", (3, 6, 7), (Conv2d(6, 3, padding=(0, 1, 2, 0), groups=3),)),
    "conv_depthwise_dilated_stride2": Spec("c", (4, 11, 10), (Conv2d(8, 3, stride=2, padding=2, dilation=2,
                                                                     groups=4, bias=False),)),
    "conv_grouped_dilated_stride2": Spec("c", (4, 11, 9), (Conv2d(6, 3, stride=(2, 3), padding=(1, 2, 0, 1),
                                                                  dilation=2, groups=2),)),
    "conv_dilation_pair_stride_one_axis": Spec("c", (2, 9, 10), (Conv2d(3, (3, 2), stride=(2, 1), padding=(1, 2),
                                                                        dilation=(2, 3)),)),
    "conv_tf_same_stride2_one_channel": Spec("c", (1, 8, 8), (Conv2d(4, 3, stride=2, padding=(0, 1, 0, 1)),)),
    "pad2d": Spec("p", (2, 5, 4), (Pad2d((1, 0, 2, 3)), Conv2d(2, 3))),
    # every activation, on images and on (H, W, C)-ordered features
    "activations_image": image(concat(*ACTIVATIONS)),
    "activations_flat": flat(concat(*ACTIVATIONS)),
    # per-channel / per-feature layers: side by side, and one after another into a dense layer
    "batchnorm_flags_image": image(concat(*BATCHNORMS)),
    "batchnorm_flags_flat": flat(concat(*BATCHNORMS)),
    "per_channel_image": image(concat(PReLU(), LayerNorm(eps=1e-6), ChannelScale())),
    "per_feature_flat": flat(PReLU(), LayerNorm(eps=1e-3), ChannelScale(),
                             Normalize(PER_FEATURE, tuple(1.5 + v for v in PER_FEATURE))),
    "normalize_image": Spec("n", IMAGE, (Normalize((0.5, -0.2, 0.1), (0.2, 0.5, 2.0)), Normalize((0.45,), (0.225,)),
                                         Conv2d(2, 1))),
    # pools
    "global_pools_keepdims": image(concat(GlobalAvgPool(keepdims=True), GlobalMaxPool(keepdims=True),
                                          AdaptiveAvgPool2d(1)), Conv2d(2, 1)),
    "global_pools_flat": image(concat(GlobalAvgPool(), GlobalMaxPool()), Dense(2)),
    # identity in eval mode, and the channel plumbing
    "identity_dropout_drop_path_eval": image(Identity(), Dropout(0.5), DropPath(0.5)),
    "drop_path_identity_flat": flat(DropPath(0.3), Identity()),
    "channel_shuffle_and_slice": Spec("s", (6, 3, 2), (Conv2d(6, 1), ChannelShuffle(3), ChannelSlice(1, 4))),
    "channel_slice_flat": flat(ChannelSlice(5, 17)),
    # branches: concat on channels or features, add, mul with a (C, 1, 1) gate
    "branches_concat_image": image(concat(Conv2d(2, 3, padding=1), Identity(), ChannelSlice(1, 2))),
    "branches_concat_flat": flat(concat(Dense(3), Identity(), ChannelSlice(0, 7))),
    "branches_add_flat_same_order": flat(Branches((Identity(), PReLU(), LayerNorm()), merge="add")),
    "branches_mul_flat_mixed_order": flat(Branches((Identity(), Sequence(layers=(Dense(24), Activation("sigmoid")))),
                                                   merge="mul")),
    "branches_single": image(Branches((Conv2d(2, 1),), merge="add")),
    "branches_squeeze_excitation": image(Branches((Identity(), se_gate(4, 2)), merge="mul")),
    "branches_gate_first_add": image(Branches((GlobalMaxPool(keepdims=True), Identity(), Identity()),
                                              merge="add")),
    "branches_mul_three": image(Branches((Identity(), Activation("sigmoid"), Activation("tanh")), merge="mul")),
    "residual_flat_mixed_order": flat(Residual(body=Sequence(layers=(Dense(24),)))),
}


def test_every_kind_and_activation_has_a_case():
    kinds = {row.kind for spec in CASES.values() for row in spec.infer().rows}
    assert kinds >= {"conv2d", "pad2d", "activation", "prelu", "layernorm", "channel_scale", "normalize",
                     "batchnorm", "global_avgpool", "global_maxpool", "adaptive_avgpool2d", "dropout", "drop_path",
                     "identity", "channel_shuffle", "channel_slice", "branches", "residual", "sequence"}
    assert {a.function for a in ACTIVATIONS} == set(SPEC_ACTIVATIONS)


@pytest.mark.parametrize("name", list(CASES))
def test_kind_matches_the_reference(name):
    """Shapes, parameter counts, every layer's output and the input gradient against the
    float64 NumPy reference (rtol 1e-4 per layer)."""
    result = check_parity(CASES[name], frameworks=("keras",), batch=2, seed=3)
    assert result.errors == {}
    assert [(p.a, p.b) for p in result.pairs] == [("keras", "reference")]
    assert result.shape_parity, result.shape_mismatches[:3]
    assert result.parameter_parity, result.count_mismatches[:3]
    assert result.ok, result.pairs


# ---------------------------------------------------------------------------------------
# The Keras layers chosen, and their variables
# ---------------------------------------------------------------------------------------

def built(spec, seed=0, **options):
    model = K.build(spec, **options)
    weights = init_weights(spec, seed)
    K.set_weights(model, weights)
    return model, weights


def test_depthwise_is_depthwiseconv2d_with_pytorchs_channel_order():
    """groups == C: DepthwiseConv2D, kernel (kh, kw, C, multiplier), Keras' [:, :, c, m] is
    PyTorch's output channel c * multiplier + m; other groups: Conv2D(groups=...)."""
    spec = Spec("convs", (3, 7, 7), (Conv2d(6, (3, 2), padding=1, groups=3), Conv2d(4, 1, groups=2)))
    model, weights = built(spec)
    layers = record_of(model, "keras").layers
    depthwise, grouped = layers["blocks[0]"], layers["blocks[1]"]
    assert type(depthwise) is keras.layers.DepthwiseConv2D and depthwise.depth_multiplier == 2
    assert type(grouped) is keras.layers.Conv2D and grouped.groups == 2
    kernel = K.ops.convert_to_numpy(depthwise.kernel)
    assert kernel.shape == (3, 2, 3, 2)
    canonical = weights["blocks[0].weight"]  # (6, 1, 3, 2)
    for c in range(3):
        for m in range(2):
            assert np.array_equal(kernel[:, :, c, m], canonical[c * 2 + m, 0])
    assert K.ops.convert_to_numpy(grouped.kernel).shape == (1, 1, 3, 4)
    back = K.get_weights(model)
    assert all(np.array_equal(back[k], v) for k, v in weights.items())


def test_dilation_with_stride_runs_at_stride_one_then_subsamples():
    """Conv2D refuses strides > 1 with dilation_rate > 1 (a Keras ValueError, whichever
    backend); DepthwiseConv2D takes them as they are."""
    with pytest.raises(ValueError, match="dilation_rate"):
        keras.layers.Conv2D(2, 3, strides=2, dilation_rate=2)
    spec = Spec("dilated", (4, 11, 11), (Conv2d(4, 3, stride=2, dilation=2, groups=2),  # 4x4x4
                                         Conv2d(4, 3, stride=2, padding=2, dilation=2, groups=4)))
    model, _ = built(spec)
    record = record_of(model, "keras")
    conv = record.layers["blocks[0]"]
    assert conv.strides == (1, 1) and conv.dilation_rate == (2, 2)
    assert [type(h).__name__ for h in record.extra["helpers"]["blocks[0]"]] == ["Subsample2D"]
    depthwise = record.layers["blocks[1]"]
    assert depthwise.strides == (2, 2) and depthwise.dilation_rate == (2, 2)
    assert [type(h).__name__ for h in record.extra["helpers"]["blocks[1]"]] == ["ZeroPadding2D"]
    assert K.forward(model, np.ones((1, 4, 11, 11), np.float32)).shape == (1, 4, 2, 2)


@pytest.mark.parametrize("scale,center", [(True, True), (True, False), (False, True), (False, False)])
def test_batchnorm_without_scale_or_center_has_no_such_variable(scale, center):
    spec = Spec("bn", (3, 4, 4), (BatchNorm(scale=scale, center=center),))
    model, weights = built(spec)
    native = record_of(model, "keras").layers["blocks[0]"]
    names = {v.name for v in native.trainable_weights}
    assert names == {n for n, on in (("gamma", scale), ("beta", center)) if on}
    assert K.parameter_counts(model) == {"blocks[0]": (3 * (scale + center), 6)}
    assert set(K.get_weights(model)) == set(weights)
    assert len(model.trainable_variables) == scale + center


def test_prelu_alpha_shapes_and_order():
    """(1, 1, C) shared over H and W on images; one per feature, in (H, W, C) order, when flat."""
    spec = Spec("prelu", (3, 2, 2), (PReLU(), Flatten(), PReLU(), Dense(2)))
    model, weights = built(spec)
    layers = record_of(model, "keras").layers
    on_image = K.ops.convert_to_numpy(layers["blocks[0]"].alpha)
    on_flat = K.ops.convert_to_numpy(layers["blocks[2]"].alpha)
    assert on_image.shape == (1, 1, 3) and np.array_equal(on_image.reshape(-1), weights["blocks[0].weight"])
    assert on_flat.shape == (12,)
    assert np.array_equal(on_flat, weights["blocks[2].weight"].reshape(3, 2, 2).transpose(1, 2, 0).reshape(-1))
    assert K.parameter_counts(model) == {"blocks[0]": (3, 0), "blocks[2]": (12, 0), "blocks[3]": (26, 0)}


def test_normalize_constants_are_not_variables():
    spec = Spec("normalize", (3, 2, 2), (Normalize((1.0, 2.0, 3.0), (0.5,)), Flatten(), Dense(2)))
    model, _ = built(spec)
    assert len(model.weights) == 2  # the dense kernel and bias only
    assert "blocks[0]" not in K.parameter_counts(model)


# ---------------------------------------------------------------------------------------
# drop_path in training
# ---------------------------------------------------------------------------------------

def test_drop_path_in_training_drops_whole_examples():
    """Dropout(p, noise_shape=(None, 1, 1, 1)): each example is zero or scaled by 1 / (1 - p)."""
    keras.utils.set_random_seed(0)
    model = K.build(Spec("drop_path", (2, 3, 3), (DropPath(0.4),)))
    x = np.random.default_rng(0).uniform(0.5, 1.5, (400, 2, 3, 3)).astype(np.float32)
    out = K.forward(model, x, training=True)
    dropped = np.all(out == 0, axis=(1, 2, 3))
    kept = np.all(np.isclose(out, x / 0.6, rtol=1e-6), axis=(1, 2, 3))
    assert np.all(dropped | kept)
    assert 0.3 < dropped.mean() < 0.5  # p = 0.4 on 400 draws: 8 standard deviations wide
    assert np.array_equal(K.forward(model, x), x)  # eval mode: the identity


def test_lockstep_drop_path_multiplies_by_the_given_mask():
    """A residual branch behind a drop_path: a zero mask leaves the branch's conv untouched by
    the step while the dense layer after it moves; masks are required in training."""
    spec = Spec("lockstep_drop_path", (2, 4, 4), (
        Residual(body=Sequence(layers=(Conv2d(2, 3, padding=1), DropPath(0.5)))), Flatten(), Dense(3)))
    path = "blocks[0].body.layers[1]"
    model, weights = built(spec, lockstep_dropout=True)
    assert isinstance(record_of(model, "keras").layers[path], K.MaskedDropout)
    x = np.random.default_rng(4).standard_normal((2, 2, 4, 4)).astype(np.float32)
    y = np.array([0, 2])
    optimizer = K.make_optimizer(model, lr=0.1)
    K.train_step(model, optimizer, x, y, dropout_masks={path: np.zeros((2, 2, 4, 4), np.float32)})
    after = K.get_weights(model)
    assert np.array_equal(after["blocks[0].body.layers[0].weight"], weights["blocks[0].body.layers[0].weight"])
    assert not np.array_equal(after["blocks[2].weight"], weights["blocks[2].weight"])
    with pytest.raises(BackendError, match=r"missing blocks\[0\]\.body\.layers\[1\]"):
        K.train_step(model, optimizer, x, y, dropout_masks={})
    with pytest.raises(BackendError, match="without a dropout mask"):
        K.forward(model, x, training=True)


# ---------------------------------------------------------------------------------------
# One network with every new kind: weights, counts, checkpoints, training
# ---------------------------------------------------------------------------------------

def every_kind_spec() -> Spec:
    """Every new kind, with the Keras-specific paths: DepthwiseConv2D with stride and dilation,
    Conv2D + Subsample2D, a negative leaky slope, and per-feature layers and merges on
    (H, W, C)-ordered features after a flatten."""
    features = np.linspace(-0.5, 0.5, 72)
    return Spec("keras_every_new_kind", (3, 11, 11), (
        Normalize(mean=(0.5, 0.4, 0.3), std=(0.25,)),
        Pad2d((0, 1, 0, 1)),
        Conv2d(8, 3, stride=2, padding=(1, 0, 1, 0)),  # 8x6x6
        BatchNorm(scale=False),
        PReLU(),
        Conv2d(8, 3, padding=2, dilation=2, groups=8, bias=False),
        BatchNorm(center=False),
        Activation("hardswish"),
        Branches((Identity(), se_gate(8, 4, "hardsigmoid")), merge="mul"),
        Branches((Sequence(layers=(LayerNorm(), Conv2d(8, 1), Activation("gelu", approximate="tanh"),
                                   ChannelScale(), DropPath(0.5))), Identity()), merge="add"),
        Branches((ChannelSlice(0, 4), Sequence(layers=(ChannelSlice(4, 8), Conv2d(4, 3, padding=2, dilation=2,
                                                                                  groups=2),
                                                       Activation("elu", alpha=0.5),
                                                       Activation("leaky_relu", negative_slope=-0.1)))),
                 merge="concat"),
        ChannelShuffle(2),
        Branches((GlobalMaxPool(keepdims=True), Identity()), merge="add"),
        Conv2d(8, 3, stride=2, padding=2, dilation=2, groups=2),  # Subsample2D: 8x3x3
        Activation("silu"),
        Activation("relu6"),
        Activation("softmax"),
        BatchNorm(scale=False, center=False),
        Activation("gelu"),
        Flatten(),  # 72 features in (H, W, C) order from here
        Normalize(mean=tuple(features), std=(0.5,)),
        LayerNorm(),
        PReLU(),
        ChannelScale(),
        BatchNorm(),
        Branches((Identity(), Sequence(layers=(Dense(72), Activation("sigmoid")))), merge="mul"),
        Branches((ChannelSlice(3, 40), Identity()), merge="concat"),
        DropPath(0.3),
        Dropout(0.1),
        Dense(5),
    ))


DROP_PATH = "blocks[9].branches[0].layers[4]"


def test_every_kind_weights_round_trip_and_counts():
    spec = every_kind_spec()
    inference = spec.infer()
    model, weights = built(spec)
    got = K.get_weights(model)
    assert list(got) == list(inference.weight_layout())
    assert all(np.array_equal(got[k], weights[k]) for k in weights)
    expected = {r.path: (r.parameters, r.running_stats) for r in inference.leaves() if r.parameters or r.running_stats}
    assert K.parameter_counts(model) == expected
    assert sum(int(np.prod(v.shape)) for v in model.trainable_variables) == inference.parameters


def test_every_kind_passes_check_parity():
    result = check_parity(every_kind_spec(), frameworks=("keras",), batch=2, seed=0)
    assert result.errors == {}
    assert [(p.a, p.b) for p in result.pairs] == [("keras", "reference")]
    assert result.ok, (result.shape_mismatches[:3], result.count_mismatches[:3], result.pairs)


def lockstep_batches(spec, count=3, size=4, seed=8):
    """(x, labels, masks) of ``count`` minibatches; over all of them the drop_path both drops
    and keeps examples."""
    inference = spec.infer()
    rng = np.random.default_rng(seed)
    batches = [(rng.standard_normal((size, *spec.input_shape)).astype(np.float32), rng.integers(0, 5, size),
                draw_dropout_masks(inference, size, rng)) for _ in range(count)]
    kept = np.concatenate([masks[DROP_PATH][:, 0, 0, 0] for _, _, masks in batches])
    assert 0 < np.count_nonzero(kept) < len(kept)
    return batches


def test_every_kind_lockstep_sgd_follows_the_reference():
    """Three lockstep SGD steps (momentum, weight decay, the same dropout and drop_path masks):
    Keras' losses and every weight and running mean as in the float64 reference. running_var
    is left out: Keras keeps the biased batch variance, PyTorch and the reference the unbiased
    one (docs/framework-differences.md row 1c)."""
    spec = every_kind_spec()
    start = init_weights(spec, seed=1)
    batches = lockstep_batches(spec)
    trajectories = {}
    for backend in (K, reference):
        model = backend.build(spec, lockstep_dropout=True)
        backend.set_weights(model, start)
        optimizer = backend.make_optimizer(model, lr=0.05, momentum=0.9, weight_decay=1e-3)
        losses = [backend.train_step(model, optimizer, x, y, dropout_masks=masks) for x, y, masks in batches]
        trajectories[backend.NAME] = losses, backend.get_weights(model)
    (losses, weights), (reference_losses, reference_weights) = trajectories["keras"], trajectories["reference"]
    assert np.allclose(losses, reference_losses, rtol=1e-5, atol=0), (losses, reference_losses)
    assert set(weights) == set(reference_weights)
    for key in weights:
        if key.endswith("running_var"):
            continue
        assert not np.array_equal(reference_weights[key], start[key]), key
        assert rel(weights[key], reference_weights[key]) <= 2e-5, (key, rel(weights[key], reference_weights[key]))


def layout_spec() -> Spec:
    """Every weight whose Keras layout differs from PyTorch's in a new way (depthwise kernel,
    PReLU's (1, 1, C) alpha, per-feature vectors in (H, W, C) order), with drawn dropout and
    drop_path masks."""
    return Spec("keras_layouts", (4, 6, 6), (
        Conv2d(8, 3, padding=1, groups=4), PReLU(), LayerNorm(), ChannelScale(), DropPath(0.3),
        Conv2d(4, 3, stride=2, padding=2, dilation=2, groups=2), Flatten(), LayerNorm(), PReLU(), ChannelScale(),
        BatchNorm(scale=False), Dropout(0.2), Dense(5)))


def test_new_kinds_train_without_lockstep_and_resume_from_a_checkpoint(tmp_path):
    """Drawn dropout and drop_path masks: every trainable weight moves; a checkpoint taken
    after two steps (momentums through the new layouts to the canonical one and back)
    continues exactly as the uninterrupted run, drawn masks included."""
    spec = layout_spec()
    start = init_weights(spec, seed=2, nontrivial=False)
    rng = np.random.default_rng(9)
    x, y = rng.standard_normal((6, *spec.input_shape)).astype(np.float32), rng.integers(0, 5, 6)
    keras.utils.set_random_seed(0)
    model = K.build(spec)
    K.set_weights(model, start)
    optimizer = K.make_optimizer(model, lr=0.05, momentum=0.9, weight_decay=1e-4)
    assert optimizer.keys == list(spec.infer().weight_layout(running_stats=False))
    losses = [K.train_step(model, optimizer, x, y) for _ in range(2)]
    assert all(np.isfinite(losses)), losses
    moved = K.get_weights(model)
    for key in optimizer.keys:
        assert not np.array_equal(moved[key], start[key]), f"{key} did not move"

    K.save_checkpoint(model, optimizer, tmp_path / "layouts.npz")
    resumed = K.build(spec)
    resumed_optimizer = K.make_optimizer(resumed, lr=0.01, momentum=0.9, weight_decay=1e-4)
    K.load_checkpoint(resumed, resumed_optimizer, tmp_path / "layouts.npz")
    for a, b in zip(optimizer.native.momentums, resumed_optimizer.native.momentums):
        assert np.array_equal(K.ops.convert_to_numpy(a), K.ops.convert_to_numpy(b))
    K.train_step(model, optimizer, x, y)
    K.train_step(resumed, resumed_optimizer, x, y)
    final, again = K.get_weights(model), K.get_weights(resumed)
    assert all(np.array_equal(final[k], again[k]) for k in final)


# ---------------------------------------------------------------------------------------
# The same on the jax and torch Keras backends (KERAS_BACKEND is fixed per process)
# ---------------------------------------------------------------------------------------

OTHER_BACKEND_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    sys.path.insert(0, "tests")
    from test_backend_keras_kinds import every_kind_spec, lockstep_batches, rel
    from netparity.backends import get_backend
    from netparity.spec import reference, init_weights, Spec, DropPath
    K = get_backend("keras")
    result = {"version": K.version()}
    # three lockstep SGD steps over every new kind against the reference: the training-mode
    # forward of every kind (broadcasting merges included) and every weight's gradient
    spec = every_kind_spec()
    start = init_weights(spec, seed=1)
    runs = {}
    for backend in (K, reference):
        model = backend.build(spec, lockstep_dropout=True)
        backend.set_weights(model, start)
        optimizer = backend.make_optimizer(model, lr=0.05, momentum=0.9, weight_decay=1e-3)
        losses = [backend.train_step(model, optimizer, x, y, dropout_masks=m) for x, y, m in lockstep_batches(spec)]
        runs[backend.NAME] = losses, backend.get_weights(model)
    (losses, weights), (ref_losses, ref_weights) = runs["keras"], runs["reference"]
    result["losses"] = rel(np.array(losses), np.array(ref_losses))
    result["weights"] = max(rel(weights[k], ref_weights[k]) for k in weights if not k.endswith("running_var"))
    result["moved"] = all(not np.array_equal(weights[k], start[k]) for k in weights)
    # drawn drop_path masks: Keras' Dropout(noise_shape=...) drops whole examples on this backend too
    model = K.build(Spec("drop_path", (2, 3, 3), (DropPath(0.4),)))
    x = np.random.default_rng(0).uniform(0.5, 1.5, (400, 2, 3, 3)).astype(np.float32)
    out = K.forward(model, x, training=True)
    dropped = np.all(out == 0, axis=(1, 2, 3))
    kept = np.all(np.isclose(out, x / 0.6, rtol=1e-6), axis=(1, 2, 3))
    result["whole_examples"] = bool(np.all(dropped | kept))
    result["dropped"] = float(dropped.mean())
    print("RESULT " + json.dumps(result))
""")


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_new_kinds_on_other_keras_backends(backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed: the Keras {backend} backend cannot be checked")
    env = {**os.environ, "KERAS_BACKEND": backend, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    done = subprocess.run([sys.executable, "-c", OTHER_BACKEND_SCRIPT], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT "):])
    assert f"({backend} " in result["version"]
    assert result["losses"] <= 1e-5 and result["weights"] <= 2e-5 and result["moved"], result
    assert result["whole_examples"] and 0.3 < result["dropped"] < 0.5, result


def test_a_graph_deeper_than_pythons_recursion_limit_builds_and_runs():
    """Keras walks a functional graph recursively; torchvision's efficientnet_v2_l (1091 layers)
    exceeded Python's default limit. The backend raises the limit for the walk and restores it."""
    depth = sys.getrecursionlimit() + 200
    spec = Spec("deep", (1, 2, 2), tuple(Activation("silu") for _ in range(depth)))
    limit = sys.getrecursionlimit()
    model = K.build(spec)
    assert sys.getrecursionlimit() == limit
    x = np.linspace(-1, 1, 4, dtype=np.float32).reshape(1, 1, 2, 2)
    expected = reference.forward(reference.build(spec), x)
    np.testing.assert_allclose(K.forward(model, x), expected, rtol=1e-4, atol=1e-5)


def test_emitted_keras_code_of_a_deep_graph_builds_too():
    """The emitted file raises the limit itself (it may not import netparity)."""
    from netparity.backends.emit import emit_source
    from netparity.backends.emit.source import load_module

    spec = Spec("deep", (1, 2, 2), tuple(Activation("tanh") for _ in range(sys.getrecursionlimit() + 200)))
    source = emit_source(spec, "keras")
    assert "sys.setrecursionlimit" in source and "import netparity" not in source and "from netparity" not in source
    model = load_module(source).build_model()
    x = np.linspace(-1, 1, 4, dtype=np.float32).reshape(1, 1, 2, 2)
    expected = reference.forward(reference.build(spec), x)
    np.testing.assert_allclose(np.asarray(model(x.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2), expected,
                               rtol=1e-4, atol=1e-6)
