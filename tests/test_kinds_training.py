"""Every layer kind trains the same way in every framework and in the float64 NumPy reference:
a small network using each kind, three SGD steps with momentum and weight decay, the same
weights, batches and (lockstep) dropout / drop_path masks."""

import numpy as np
import pytest

from netparity.backends import BACKEND_NAMES, available, get_backend
from netparity.compare.lockstep import draw_dropout_masks
from netparity.spec import (LAYER_KINDS, Activation, BatchNorm, Branches, ChannelScale, ChannelShuffle,
                            ChannelSlice, Conv2d, Dense, DropPath, Dropout, Flatten, GlobalAvgPool, GlobalMaxPool,
                            Identity, LayerNorm, MaxPool2d, Normalize, Pad2d, PReLU, Residual, Sequence, Spec,
                            init_weights)
from netparity.spec import reference

NEW_KINDS = {"pad2d", "layernorm", "prelu", "channel_scale", "normalize", "global_maxpool", "drop_path", "identity",
             "channel_shuffle", "channel_slice", "branches"}


def every_kind_spec() -> Spec:
    gate = Sequence(layers=(GlobalAvgPool(keepdims=True), Conv2d(4, 1), Activation("silu"), Conv2d(8, 1),
                            Activation("hardsigmoid")))
    return Spec("every_kind", (3, 8, 8), (
        Normalize((0.5, 0.4, 0.3), (0.5, 0.6, 0.7)),
        Pad2d((0, 1, 0, 1)), Conv2d(8, 3, stride=2), BatchNorm(scale=False), PReLU(),
        Conv2d(8, 3, padding=2, dilation=2, groups=8), LayerNorm(), Activation("hardswish"),
        Branches(branches=(Identity(), gate), merge="mul"),
        Residual(body=Sequence(layers=(Conv2d(8, 1), Activation("gelu", approximate="tanh"), ChannelScale(),
                                       DropPath(0.2)))),
        Branches(branches=(ChannelSlice(0, 4), Sequence(layers=(ChannelSlice(4, 8), Conv2d(4, 1),
                                                                Activation("elu")))), merge="concat"),
        ChannelShuffle(2), MaxPool2d(2),
        Branches(branches=(GlobalMaxPool(keepdims=True), Identity()), merge="add"),
        Activation("leaky_relu", negative_slope=0.1), Activation("gelu"), Flatten(), Dropout(0.3),
        Dense(16), BatchNorm(center=False), Activation("relu6"), Dense(12), Activation("softmax"),
        Activation("tanh"), Dense(10)))


def test_the_training_spec_uses_every_new_kind():
    kinds = {row.kind for row in every_kind_spec().infer().rows}
    assert NEW_KINDS <= kinds and NEW_KINDS <= set(LAYER_KINDS)


def _train(module, spec, weights, data, masks):
    model = module.build(spec, lockstep_dropout=True)
    module.set_weights(model, weights)
    optimizer = module.make_optimizer(model, 0.1, momentum=0.9, weight_decay=1e-3)
    losses = [module.train_step(model, optimizer, x, y, m) for (x, y), m in zip(data, masks)]
    return losses, module.get_weights(model)


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_first_sgd_steps_agree_with_the_reference(name):
    if name not in available():
        pytest.skip(f"{name} is not installed")
    spec = every_kind_spec()
    inference = spec.infer()
    weights = init_weights(spec, seed=0)
    rng = np.random.default_rng(1)
    data = [(rng.standard_normal((6, *spec.input_shape)).astype(np.float32), rng.integers(0, 10, 6))
            for _ in range(3)]
    masks = [draw_dropout_masks(inference, 6, rng) for _ in data]
    assert any(np.any(m["blocks[9].body.layers[3]"] == 0) for m in masks)  # drop_path drops something
    expected_losses, expected = _train(reference, spec, weights, data, masks)
    losses, got = _train(get_backend(name), spec, weights, data, masks)
    # float32 against float64 over three steps of SGD through 25 layers: rounding noise is ~1e-6.
    np.testing.assert_allclose(losses, expected_losses, rtol=2e-5)
    trainable = inference.weight_layout(running_stats=False)
    for key in trainable:
        np.testing.assert_allclose(got[key], expected[key], rtol=0, atol=2e-5, err_msg=f"{name} {key}")
    # the weights did move: a step that changed nothing would also "agree"
    assert max(float(np.max(np.abs(expected[k] - weights[k]))) for k in trainable) > 1e-2
