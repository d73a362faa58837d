"""The Keras 3 backend against the PyTorch backend: same weights, same function.

Every zoo model runs at a reduced input size; targeted specs cover the traps
of docs/framework-differences.md (stride-2 padding, -inf max-pool padding,
count_include_pad, ceil mode, adaptive pooling, the (H, W, C) flatten order).
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

T = pytest.importorskip("netparity.backends.torch.core", reason="PyTorch is not installed (pip install torch)",
                        exc_type=ImportError)
K = pytest.importorskip("netparity.backends.keras.core",
                        reason="Keras 3 is not installed (pip install keras tensorflow-cpu)",
                        exc_type=ImportError)

from netparity.backends.common import RECORD_ATTRIBUTE, BackendError, record_of  # noqa: E402
from netparity.spec import (LAYER_KINDS, Activation, AdaptiveAvgPool2d, AvgPool2d, BatchNorm,  # noqa: E402
                            ConcatBranches, Conv2d, Dense, Flatten, MaxPool2d, Residual, Sequence, Spec,
                            init_weights, zoo)
from netparity.spec.pooling import pool_padding  # noqa: E402

keras = K.keras
REPO = Path(__file__).resolve().parents[1]

# Reduced input sizes that each zoo model accepts (None: the model's own size).
SIZES = {
    "lenet": None, "lenet_bn": None, "inception_mnist": None, "residual_mnist": None,
    "alexnet": 68, "nin": 67, "tv_alexnet": 64, "tv_resnet18": 64,
    "vgg11": 32, "vgg13": 32, "vgg16": 32, "vgg19": 32, "tv_vgg11": 32, "tv_vgg13": 32,
    "googlenet": 32, "resnet18": 32, "resnet34": 32, "densenet": 32,
}
RTOL = 1e-4


def rel(a: np.ndarray, b: np.ndarray) -> float:
    """max|a - b| / max|b| (absolute when b is all zeros)."""
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    return float(np.max(np.abs(a - b))) / (scale if scale > 0 else 1.0)


def assert_close(got, want, what: str, rtol: float = RTOL):
    assert got.shape == want.shape, f"{what}: keras shape {got.shape}, torch {want.shape}"
    assert np.all(np.isfinite(got)), f"{what}: keras output is not finite"
    error = rel(got, want)
    assert error <= rtol, f"{what}: rel {error:.3g} > {rtol:g}"


def free_models(collect: bool) -> None:
    """Drop Keras' global state; a full collection (about 0.5 s here) only after big models."""
    keras.backend.clear_session(free_memory=False)
    if collect:
        gc.collect()


def both(spec: Spec, seed: int = 0):
    """The spec built in both frameworks with the same canonical weights."""
    weights = init_weights(spec, seed)
    km, tm = K.build(spec), T.build(spec)
    K.set_weights(km, weights)
    T.set_weights(tm, weights)
    return km, tm, weights


def batch(spec: Spec, n: int = 2, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *spec.input_shape)).astype(np.float32)


def check_pair(spec: Spec, x: np.ndarray, rtol: float = RTOL, seed: int = 0):
    """Forward, every layer's output and the input gradient agree with PyTorch."""
    km, tm, weights = both(spec, seed)
    out_k, out_t = K.forward(km, x), T.forward(tm, x)
    assert_close(out_k, out_t, f"{spec.name} output", rtol)
    layers_k, layers_t = K.forward_layers(km, x), T.forward_layers(tm, x)
    inference = spec.infer()
    assert set(layers_k) == {r.path for r in inference.rows}
    for row in inference.rows:
        assert layers_k[row.path].shape == (x.shape[0], *row.output_shape), row.path
        assert_close(layers_k[row.path], layers_t[row.path], f"{spec.name} {row.path}", rtol)
    upstream = np.random.default_rng(7).standard_normal(out_t.shape).astype(np.float32)
    assert_close(K.input_gradient(km, x, upstream), T.input_gradient(tm, x, upstream),
                 f"{spec.name} input gradient", rtol)
    return km, tm, weights


# ---------------------------------------------------------------------------------------
# Interface
# ---------------------------------------------------------------------------------------

def test_layer_builders_cover_every_kind():
    assert set(K.LAYER_BUILDERS) == set(LAYER_KINDS)


def test_same_interface_as_torch_backend():
    public = ["NAME", "FRAMEWORK", "version", "LAYER_BUILDERS", "build", "get_weights", "set_weights",
              "forward", "forward_layers", "input_gradient", "parameter_counts"]
    missing = [name for name in public if not hasattr(K, name)]
    assert not missing
    assert (K.NAME, K.FRAMEWORK) == ("keras", "Keras 3")
    assert K.version().startswith(keras.__version__ + " (")
    assert keras.backend.backend() in K.version()


# ---------------------------------------------------------------------------------------
# Every zoo model
# ---------------------------------------------------------------------------------------

def test_the_size_table_names_zoo_models():
    # The classic models are compared with PyTorch here layer by layer; every zoo model, the
    # modern ones included, is also checked in every framework against the NumPy reference by
    # tests/test_parity.py::test_zoo_model_parity_at_reduced_size, so this table need not grow
    # (at their full 224 px the modern ones took minutes, and tv_regnet_y_400mf's input
    # gradient sits on a ReLU kink there: a 1e-6 nudge moves PyTorch's own gradient by 1.9e-3).
    assert set(SIZES) <= set(zoo.names())


@pytest.mark.parametrize("name", list(SIZES))
def test_zoo_model_matches_torch(name):
    spec = zoo.get(name)
    if SIZES.get(name):
        spec = spec.with_input(SIZES[name])
    inference = spec.infer()
    try:
        km, tm, weights = check_pair(spec, batch(spec))

        back = K.get_weights(km)
        assert list(back) == list(weights)
        for key, value in weights.items():
            assert back[key].dtype == np.float32 and np.array_equal(back[key], value), f"{key} not bitwise"

        expected = {r.path: (r.parameters, r.running_stats) for r in inference.leaves()
                    if r.parameters or r.running_stats}
        assert K.parameter_counts(km) == expected
    finally:
        km = tm = weights = back = None  # noqa: F841 - drop the references before free_models collects
        free_models(collect=inference.parameters > 20_000_000)


# ---------------------------------------------------------------------------------------
# Targeted traps
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kernel,stride,padding,size", [(3, 2, 1, 8), (7, 2, 3, 16), (3, 2, 1, 9), (5, 2, 2, 10),
                                                        (1, 2, 0, 8)])
def test_stride2_conv_padding(kernel, stride, padding, size):
    spec = Spec("conv", (3, size, size), (Conv2d(4, kernel, stride, padding),))
    km, _, _ = check_pair(spec, batch(spec), rtol=1e-5)
    convs = [layer for layer in km.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs and all(layer.padding == "valid" for layer in convs)


@pytest.mark.parametrize("kernel,stride,padding", [(3, 2, 1), (2, 2, 1), (3, 1, 1)])
def test_maxpool_padding_on_negative_inputs(kernel, stride, padding):
    spec = Spec("maxpool", (2, 7, 8), (MaxPool2d(kernel, stride, padding),))
    x = -(np.abs(batch(spec)) + 1.0)
    km, tm, _ = both(spec)
    out = K.forward(km, x)
    assert out.max() < 0, "padding leaked into the max pool"
    np.testing.assert_array_equal(out, T.forward(tm, x))  # a max selects: no rounding to differ
    upstream = batch(Spec("u", out.shape[1:], ()), seed=3)
    np.testing.assert_array_equal(K.input_gradient(km, x, upstream), T.input_gradient(tm, x, upstream))


@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avgpool_count_include_pad(count_include_pad):
    spec = Spec("avgpool", (2, 6, 7), (AvgPool2d(3, 2, 1, count_include_pad=count_include_pad),))
    check_pair(spec, batch(spec), rtol=1e-6)
    km, _, _ = both(spec)
    corner = K.forward(km, np.ones((1, 2, 6, 7), np.float32))[0, 0, 0, 0]
    assert corner == pytest.approx(4 / 9 if count_include_pad else 1.0, rel=1e-6)


CEIL_CASES = [(7, 2, 2, 1), (7, 3, 2, 1), (6, 3, 2, 1), (5, 2, 2, 0), (8, 3, 3, 1), (6, 3, 2, 0), (9, 2, 3, 1),
              (5, 3, 2, 1), (10, 4, 3, 2)]


@pytest.mark.parametrize("kind", ["max", "avg", "avg_exclude_pad"])
def test_ceil_mode_pooling(kind):
    # At least one case must need extra bottom/right padding, or ceil mode is not exercised.
    assert any(pool_padding(h, k, s, p, True)[1] > p for h, k, s, p in CEIL_CASES)
    for h, k, s, p in CEIL_CASES:
        if kind == "max":
            pool = MaxPool2d(k, s, p, ceil_mode=True)
        else:
            pool = AvgPool2d(k, s, p, ceil_mode=True, count_include_pad=(kind == "avg"))
        spec = Spec("ceil", (2, h, h + 1), (pool,))
        x = batch(spec) - 2.0  # mostly negative: a zero pad would show in max pools
        check_pair(spec, x, rtol=1e-6)


@pytest.mark.parametrize("shape,output_size", [((3, 5, 5), 3), ((2, 1, 1), 7), ((2, 5, 1), (3, 7)),
                                               ((2, 6, 6), 4), ((2, 7, 7), 7), ((2, 13, 9), (6, 4))])
def test_adaptive_avgpool(shape, output_size):
    spec = Spec("adaptive", shape, (AdaptiveAvgPool2d(output_size),))
    check_pair(spec, batch(spec), rtol=1e-6)


def test_flatten_dense_permutes_rows():
    spec = Spec("flat", (3, 7, 9), (Conv2d(4, 3), Flatten(), BatchNorm(), Dense(6), Activation("tanh")))
    km, _, weights = check_pair(spec, batch(spec, n=4), rtol=1e-5)
    # The notes' formula: Keras flattens (H, W, C), so the dense rows are permuted.
    o, (c, h, w) = 6, (4, 5, 7)
    kernel = record_of(km, "keras").layers["blocks[3]"].kernel
    expected = weights["blocks[3].weight"].reshape(o, c, h, w).transpose(2, 3, 1, 0).reshape(h * w * c, o)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(kernel), expected)
    back = K.get_weights(km)
    assert all(np.array_equal(back[k], v) for k, v in weights.items())


def test_flatten_layouts_through_blocks():
    """A flatten as the output, and a residual adding (H, W, C) and (C, H, W) flat tensors."""
    spec = Spec("layouts", (2, 3, 4), (
        Conv2d(3, 1),
        Residual(body=Sequence(layers=(Flatten(), Dense(36))), shortcut=Sequence(layers=(Flatten(),))),
        Activation("sigmoid"),
    ))
    check_pair(spec, batch(spec), rtol=1e-5)
    spec = Spec("flat_out", (2, 3, 4), (Conv2d(3, 1), Flatten(), Activation("relu")))
    check_pair(spec, batch(spec), rtol=1e-6)


def test_grouped_conv():
    spec = Spec("groups", (6, 8, 8), (Conv2d(9, 3, 2, 1, groups=3), BatchNorm(), Conv2d(6, 1, groups=3, bias=False)))
    km, _, weights = check_pair(spec, batch(spec), rtol=1e-5)
    assert all(np.array_equal(K.get_weights(km)[k], v) for k, v in weights.items())


def test_concat_single_branch_and_empty_blocks():
    spec = Spec("odd", (2, 4, 4), (ConcatBranches(branches=(Conv2d(3, 1),)), Sequence(layers=()),
                                   Residual(body=Sequence(layers=()))))
    check_pair(spec, batch(spec), rtol=1e-6)


def test_train_mode_batchnorm_matches_torch():
    spec = Spec("bn", (3, 6, 6), (Conv2d(4, 3, padding=1), BatchNorm(), Activation("relu")))
    km, tm, weights = both(spec)
    x = batch(spec, n=4)
    assert_close(K.forward(km, x, training=True), T.forward(tm, x, training=True), "train forward", 1e-5)
    k_w, t_w = K.get_weights(km), T.get_weights(tm)
    assert_close(k_w["blocks[1].running_mean"], t_w["blocks[1].running_mean"], "running mean", 1e-5)
    # PyTorch moves running_var by the unbiased batch variance, Keras by the biased one.
    n = 4 * 6 * 6
    v0 = weights["blocks[1].running_var"]
    assert_close(k_w["blocks[1].running_var"] - 0.9 * v0, (t_w["blocks[1].running_var"] - 0.9 * v0) * (n - 1) / n,
                 "running var", 1e-4)


# ---------------------------------------------------------------------------------------
# The native model and errors
# ---------------------------------------------------------------------------------------

def test_functional_channels_last_model():
    spec = zoo.get("lenet_bn")
    model = K.build(spec)
    assert isinstance(model, keras.Model) and not isinstance(model, keras.Sequential)
    assert tuple(model.inputs[0].shape) == (None, 28, 28, 1)
    names = {layer.name for layer in model.layers}
    assert {"blocks_0", "blocks_1", "blocks_8", "blocks_15"} <= names
    record = getattr(model, RECORD_ATTRIBUTE)
    assert record.spec is spec and record.extra["hwc_flat"]["blocks[8]"] == (16, 4, 4)
    # The record is invisible to Keras' tracking: the weights are the layers' and no more.
    assert sum(int(np.prod(v.shape)) for v in model.weights) == spec.infer().parameters + spec.infer().running_stats
    model.summary(print_fn=lambda *args, **kwargs: None)
    model.get_config()

    # Helper layers are named after their spec path; the custom ones survive a config round trip.
    spec = Spec("custom", (2, 9, 7), (Conv2d(3, 3, 2, 1), MaxPool2d(3, 2, 1, ceil_mode=True),
                                      AvgPool2d(2, 1, 1, count_include_pad=False), AdaptiveAvgPool2d((3, 2))))
    model, _, _ = both(spec)
    assert {"blocks_0_pad", "blocks_1_pad", "blocks_2_pad", "blocks_2_divisor"} <= {l.name for l in model.layers}
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    x = np.transpose(batch(spec), (0, 2, 3, 1))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(clone(x)), keras.ops.convert_to_numpy(model(x)))


def test_errors():
    spec = Spec("tiny", (1, 4, 4), (Conv2d(2, 3),))
    with pytest.raises(BackendError, match="unknown device"):
        K.build(spec, device="tpu")
    if not K._gpu_visible()[0]:
        with pytest.raises(BackendError, match="sees no GPU"):
            K.build(spec, device="gpu")
    model = K.build(spec)
    with pytest.raises(BackendError, match="does not fit"):
        K.forward(model, np.zeros((1, 1, 5, 5), np.float32))
    with pytest.raises(BackendError, match="missing"):
        K.set_weights(model, {})
    with pytest.raises(BackendError, match="upstream"):
        K.input_gradient(model, np.zeros((1, 1, 4, 4), np.float32), np.zeros((1, 3), np.float32))
    with pytest.raises(BackendError, match="not built by netparity"):
        K.forward(keras.Sequential([keras.layers.Dense(1)]), np.zeros((1, 1, 4, 4), np.float32))


# ---------------------------------------------------------------------------------------
# The custom layers on the other Keras backends (KERAS_BACKEND is fixed per process)
# ---------------------------------------------------------------------------------------

OTHER_BACKEND_SCRIPT = textwrap.dedent("""
    import json, numpy as np
    from netparity.backends import get_backend
    from netparity.spec import (Spec, init_weights, Conv2d, BatchNorm, Activation, MaxPool2d, AvgPool2d,
                                AdaptiveAvgPool2d, Flatten, Dense, Dropout, ConcatBranches, Sequence)
    T, K = get_backend("torch"), get_backend("keras")
    rel = lambda a, b: float(np.abs(a - b).max() / np.abs(b).max())
    spec = Spec("mix", (3, 9, 7), (
        Conv2d(4, 3, 2, 1), BatchNorm(), MaxPool2d(3, 2, 1, ceil_mode=True),
        ConcatBranches(branches=(Sequence(layers=(AvgPool2d(3, 1, 1, count_include_pad=False),)), Conv2d(2, 1))),
        AdaptiveAvgPool2d((3, 2)), Flatten(), Dropout(0.0), Dense(5)))  # Dropout: a seed variable
    w = init_weights(spec, 3)
    km, tm = K.build(spec), T.build(spec)
    K.set_weights(km, w); T.set_weights(tm, w)
    x = np.random.default_rng(0).standard_normal((4, 3, 9, 7)).astype(np.float32)
    up = np.random.default_rng(1).standard_normal((4, 5)).astype(np.float32)
    la, lb = K.forward_layers(km, x), T.forward_layers(tm, x)
    result = {
        "version": K.version(),
        "forward": rel(K.forward(km, x), T.forward(tm, x)),
        "layers": max(rel(la[p], lb[p]) for p in lb),
        "gradient": rel(K.input_gradient(km, x, up), T.input_gradient(tm, x, up)),
        "train_gradient": rel(K.input_gradient(km, x, up, training=True),
                              T.input_gradient(tm, x, up, training=True)),
        "running_mean": rel(K.get_weights(km)["blocks[1].running_mean"], T.get_weights(tm)["blocks[1].running_mean"]),
        "bitwise": all(np.array_equal(v, w[k]) for k, v in K.get_weights(km).items() if "running" not in k),
    }
    # three SGD steps (momentum, weight decay) on this Keras backend follow torch.optim.SGD
    y = np.array([0, 1, 2, 4])
    ok, ot = K.make_optimizer(km, 0.1, 0.9, 1e-3), T.make_optimizer(tm, 0.1, 0.9, 1e-3)
    result["train_losses"] = rel(np.array([K.train_step(km, ok, x, y) for _ in range(3)]),
                                 np.array([T.train_step(tm, ot, x, y) for _ in range(3)]))
    kw, tw = K.get_weights(km), T.get_weights(tm)
    # running_var excepted: PyTorch's is unbiased, Keras' biased (docs/framework-differences.md row 1c)
    result["trained_weights"] = max(rel(kw[k], tw[k]) for k in tw if not k.endswith("running_var"))
    print("RESULT " + json.dumps(result))
""")


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_other_keras_backends(backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed: the Keras {backend} backend cannot be checked")
    env = {**os.environ, "KERAS_BACKEND": backend, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    done = subprocess.run([sys.executable, "-c", OTHER_BACKEND_SCRIPT], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT "):])
    assert f"({backend} " in result["version"]
    assert result["bitwise"]
    for key in ("forward", "layers", "gradient", "train_gradient", "running_mean", "train_losses",
                "trained_weights"):
        assert result[key] <= 1e-5, f"Keras {backend} backend: {key} rel {result[key]:.3g}"
