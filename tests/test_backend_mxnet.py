"""The MXNet Gluon backend against the PyTorch reference, one model at a time.

Every zoo model at a reduced input size, with the same canonical weights in both
frameworks: outputs, per-layer shapes, input gradients, weight round trips and
parameter counts. Then PyTorch's pooling geometry (ceil mode, count_include_pad),
which MXNet cannot express natively and the backend emulates.
"""

import importlib

import numpy as np
import pytest

from netparity.backends.frameworks import FrameworkMissing

# Not pytest.importorskip("mxnet"): a bare import of MXNet 1.9.1 fails on NumPy >= 1.24
# (np.bool); the backends import it through frameworks.import_mxnet, which says what is missing.
try:
    tb = importlib.import_module("netparity.backends.torch.core")
    mxb = importlib.import_module("netparity.backends.mxnet.core")
except FrameworkMissing as missing:
    pytest.skip(str(missing), allow_module_level=True)

from netparity.backends.common import BackendError  # noqa: E402
from netparity.spec import (LAYER_KINDS, Activation, AdaptiveAvgPool2d, AvgPool2d, BatchNorm, Conv2d,  # noqa: E402
                            Dense, Dropout, Flatten, MaxPool2d, Spec, init_weights, zoo)

RTOL = 1e-4
BATCH = 2

# Reduced square inputs, the smallest sizes each architecture accepts (or close to it),
# so that the heavy 224-px nets stay cheap. None keeps the model's own size.
SIZES = {
    "lenet": None, "lenet_bn": None, "inception_mnist": None, "residual_mnist": None,
    "alexnet": 67, "nin": 67, "tv_alexnet": 64,
    "vgg11": 32, "vgg13": 32, "vgg16": 32, "vgg19": 32, "tv_vgg11": 32, "tv_vgg13": 32,
    "googlenet": 32, "resnet18": 32, "resnet34": 32, "densenet": 32, "tv_resnet18": 32,
}


def rel(got, want) -> float:
    want = np.asarray(want)
    scale = float(np.abs(want).max()) or 1.0
    return float(np.abs(np.asarray(got) - want).max()) / scale


def batch_for(spec, seed=1):
    return np.random.default_rng(seed).standard_normal((BATCH, *spec.input_shape)).astype(np.float32)


def both(spec, weights):
    torch_model, mx_model = tb.build(spec), mxb.build(spec)
    tb.set_weights(torch_model, weights)
    mxb.set_weights(mx_model, weights)
    return torch_model, mx_model


def test_the_size_table_names_zoo_models():
    # The classic models are compared with PyTorch here layer by layer; every zoo model, the
    # modern ones included, is also checked in every framework against the NumPy reference by
    # tests/test_parity.py::test_zoo_model_parity_at_reduced_size, so this table need not grow.
    assert set(SIZES) <= set(zoo.names())


def test_layer_builders_cover_every_kind():
    assert set(mxb.LAYER_BUILDERS) == set(LAYER_KINDS)


@pytest.fixture(scope="module", params=list(SIZES))
def zoo_pair(request):
    spec = zoo.get(request.param)
    if SIZES[request.param]:
        spec = spec.with_input(SIZES[request.param])
    weights = init_weights(spec, seed=0)
    torch_model, mx_model = both(spec, weights)
    return spec, weights, torch_model, mx_model, batch_for(spec)


def test_forward_matches_torch(zoo_pair):
    spec, _, torch_model, mx_model, x = zoo_pair
    want = tb.forward(torch_model, x)
    got = mxb.forward(mx_model, x)
    assert got.shape == want.shape == (BATCH, *spec.infer().output_shape)
    assert rel(got, want) < RTOL


def test_every_layer_has_the_spec_shape_and_torch_values(zoo_pair):
    spec, _, torch_model, mx_model, x = zoo_pair
    got = mxb.forward_layers(mx_model, x)
    want = tb.forward_layers(torch_model, x)
    rows = spec.infer().rows
    assert set(got) == {r.path for r in rows}
    for row in rows:
        assert got[row.path].shape == (BATCH, *row.output_shape), row.path
        assert rel(got[row.path], want[row.path]) < RTOL, row.path


def test_input_gradient_matches_torch(zoo_pair):
    spec, _, torch_model, mx_model, x = zoo_pair
    upstream = np.random.default_rng(2).standard_normal((BATCH, *spec.infer().output_shape)).astype(np.float32)
    want = tb.input_gradient(torch_model, x, upstream)
    got = mxb.input_gradient(mx_model, x, upstream)
    assert got.shape == x.shape
    assert rel(got, want) < RTOL


def test_weights_come_back_bitwise(zoo_pair):
    _, weights, _, mx_model, _ = zoo_pair
    back = mxb.get_weights(mx_model)
    assert list(back) == list(weights)
    for key, value in weights.items():
        assert back[key].dtype == np.float32 and np.array_equal(back[key], value), key


def test_parameter_counts_match_the_spec(zoo_pair):
    spec, _, torch_model, mx_model, _ = zoo_pair
    expected = {r.path: (r.parameters, r.running_stats) for r in spec.infer().leaves()
                if r.parameters or r.running_stats}
    assert mxb.parameter_counts(mx_model) == expected
    assert mxb.parameter_counts(mx_model) == tb.parameter_counts(torch_model)


@pytest.mark.parametrize("name, size", [("lenet_bn", 28), ("tv_resnet18", 64)])
def test_train_mode_uses_batch_statistics_like_torch(name, size):
    """BatchNorm on (C, H, W) and on (C,) inputs (lenet_bn), no dropout to randomise.

    Not tv_resnet18 at 32 px: its last stage is 1x1, so BatchNorm would normalise
    over N*H*W = 2 values per channel, where fp32 rounding alone moves outputs ~1e-3.
    """
    spec = zoo.get(name).with_input(size)
    weights = init_weights(spec, seed=4)
    torch_model, mx_model = both(spec, weights)
    x = np.random.default_rng(5).standard_normal((4, *spec.input_shape)).astype(np.float32)
    upstream = np.random.default_rng(6).standard_normal((4, *spec.infer().output_shape)).astype(np.float32)
    eval_out = mxb.forward(mx_model, x)
    train_out = mxb.forward(mx_model, x, training=True)
    assert rel(train_out, tb.forward(torch_model, x, training=True)) < RTOL
    assert rel(eval_out, train_out) > 1e-3  # batch statistics did matter
    assert rel(mxb.input_gradient(mx_model, x, upstream, training=True),
               tb.input_gradient(torch_model, x, upstream, training=True)) < RTOL


def test_hybridized_model_keeps_its_graph_and_gives_the_same_answers():
    spec = zoo.get("residual_mnist")
    weights = init_weights(spec, seed=7)
    torch_model, mx_model = both(spec, weights)
    x = batch_for(spec)
    upstream = np.random.default_rng(8).standard_normal((BATCH, 10)).astype(np.float32)
    plain = mxb.forward(mx_model, x)
    mx_model.hybridize()
    assert np.array_equal(mxb.forward(mx_model, x), plain)
    layers = mxb.forward_layers(mx_model, x)  # hooks need the blocks to run one by one
    assert set(layers) == {r.path for r in spec.infer().rows}
    assert rel(mxb.input_gradient(mx_model, x, upstream), tb.input_gradient(torch_model, x, upstream)) < RTOL
    assert mx_model._active and mx_model[0]._active


def test_uncommon_fields_match_torch_plain_and_hybridized():
    """Groups, non-square geometry, no biases, sigmoid/tanh, ceil pools inside a net,
    BatchNorm on dense features: also through one hybridized graph (-inf pad, Constant)."""
    spec = Spec("odd", (4, 13, 11), (
        Conv2d(6, (3, 1), (2, 1), (1, 0), groups=2), Activation("tanh"),
        MaxPool2d(2, 2, 1, ceil_mode=True), Conv2d(8, 2, bias=False), Activation("sigmoid"),
        AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False), Dropout(0.3),
        Flatten(), Dense(7, bias=False), BatchNorm(), Dense(3)))
    torch_model, mx_model = both(spec, init_weights(spec, seed=3))
    x = batch_for(spec)
    upstream = np.random.default_rng(2).standard_normal((BATCH, 3)).astype(np.float32)
    want, want_grad = tb.forward(torch_model, x), tb.input_gradient(torch_model, x, upstream)
    for hybridized in (False, True):
        mx_model.hybridize(hybridized)
        assert rel(mxb.forward(mx_model, x), want) < RTOL, hybridized
        assert rel(mxb.input_gradient(mx_model, x, upstream), want_grad) < RTOL, hybridized
        assert set(mxb.forward_layers(mx_model, x)) == {r.path for r in spec.infer().rows}


def test_eval_gradient_through_max_pool_is_not_onednn_garbage():
    """oneDNN's inference-mode max pool keeps no argmax, yet its backward reads one."""
    spec = Spec("pool", (3, 8, 8), (MaxPool2d(2),))
    model = mxb.build(spec)
    x = batch_for(spec)
    upstream = np.ones((BATCH, 3, 4, 4), np.float32)
    first = mxb.input_gradient(model, x, upstream)
    assert np.array_equal(first, mxb.input_gradient(model, x, upstream))
    assert first.sum() == upstream.sum() and set(np.unique(first)) <= {0.0, 1.0}


# PyTorch's pooling geometry: (H, W, kernel, stride, padding). Ceil mode includes cases
# where MXNet's own ceil mode keeps a window PyTorch drops (7, k2 s2 p1: 5 vs 4).
CEIL_CASES = [(7, 7, 2, 2, 1), (7, 7, 3, 2, 1), (8, 8, 3, 2, 0), (9, 9, 3, 2, 1), (10, 10, 3, 3, 1),
              (6, 6, 2, 2, 0), (11, 11, 4, 3, 2), (5, 5, 2, 2, 1), (7, 9, (3, 2), (2, 2), (1, 1)),
              (13, 8, (3, 3), (2, 3), (1, 0))]
POOLS = {
    "max": lambda k, s, p, ceil: MaxPool2d(k, s, p, ceil_mode=ceil),
    "avg": lambda k, s, p, ceil: AvgPool2d(k, s, p, ceil_mode=ceil),
    "avg_exclude_pad": lambda k, s, p, ceil: AvgPool2d(k, s, p, ceil_mode=ceil, count_include_pad=False),
}


def _pool_against_torch(pool, height, width):
    spec = Spec("pool", (2, height, width), (pool,))
    torch_model, mx_model = tb.build(spec), mxb.build(spec)
    x = batch_for(spec, seed=height * 31 + width)  # signed inputs: -inf padding must not leak
    want, got = tb.forward(torch_model, x), mxb.forward(mx_model, x)
    assert got.shape == want.shape == (BATCH, *spec.infer().output_shape)
    assert rel(got, want) < 1e-6
    upstream = np.random.default_rng(3).standard_normal(want.shape).astype(np.float32)
    assert rel(mxb.input_gradient(mx_model, x, upstream), tb.input_gradient(torch_model, x, upstream)) < 1e-6


@pytest.mark.parametrize("kind", POOLS)
@pytest.mark.parametrize("case", CEIL_CASES, ids=lambda c: "H{}W{}k{}s{}p{}".format(*c))
def test_ceil_mode_pooling_matches_torch(kind, case):
    height, width, kernel, stride, padding = case
    _pool_against_torch(POOLS[kind](kernel, stride, padding, True), height, width)


@pytest.mark.parametrize("kind", POOLS)
@pytest.mark.parametrize("case", CEIL_CASES[:5], ids=lambda c: "H{}W{}k{}s{}p{}".format(*c))
def test_floor_mode_pooling_matches_torch(kind, case):
    height, width, kernel, stride, padding = case
    _pool_against_torch(POOLS[kind](kernel, stride, padding, False), height, width)


@pytest.mark.parametrize("size, out", [(5, 3), (1, 7), (13, 6), (7, 7), (2, 7)])
def test_adaptive_avgpool_matches_torch_on_uneven_sizes(size, out):
    _pool_against_torch(AdaptiveAvgPool2d(out), size, size)


def test_batchnorm_momentum_and_eps_come_from_the_spec():
    spec = Spec("bn", (3, 4, 4), (Conv2d(4, 3), BatchNorm(eps=1e-3, momentum=0.25), Activation("tanh"),
                                  Flatten(), Dense(5), BatchNorm(eps=2e-5)))
    model = mxb.build(spec)
    record = getattr(model, mxb.RECORD_ATTRIBUTE)
    image_norm, flat_norm = record.layers["blocks[1]"], record.layers["blocks[5]"]
    assert image_norm._kwargs["eps"] == 1e-3 and image_norm._kwargs["momentum"] == 0.75
    assert flat_norm._kwargs["eps"] == 2e-5 and flat_norm._kwargs["momentum"] == pytest.approx(0.9)
    torch_model, mx_model = both(spec, init_weights(spec, seed=9))
    x = batch_for(spec)
    assert rel(mxb.forward(mx_model, x), tb.forward(torch_model, x)) < RTOL


def test_errors_are_backend_errors():
    spec = zoo.get("lenet")
    model = mxb.build(spec)
    with pytest.raises(BackendError, match="does not fit"):
        mxb.forward(model, np.zeros((2, 1, 32, 32), np.float32))
    with pytest.raises(BackendError, match="missing"):
        mxb.set_weights(model, {})
    with pytest.raises(BackendError, match="not built by netparity"):
        mxb.get_weights(mxb.nn.HybridSequential())
    with pytest.raises(BackendError, match="unknown device"):
        mxb.build(spec, device="tpu")
    if mxb.mx.context.num_gpus() == 0:
        with pytest.raises(BackendError, match="no GPU"):
            mxb.build(spec, device="gpu")
