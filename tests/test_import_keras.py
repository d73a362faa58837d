"""Importing Keras 3 models (issue 11): ``backends.keras.importer.import_model``.

- keras.applications' CNNs (weights=None, random non-trivial BatchNorm statistics, biases and
  scales) import at a small input size; the imported spec built in PyTorch and MXNet with the
  imported weights reproduces Keras' own output (max|a-b| / max|b| <= 1e-4).
- Small models, one per layer family, reproduce Keras in the float64 NumPy reference, output and
  every layer the runner can name (so a layer's name, its value and its weights all line up).
- Round trip: a zoo spec built by the keras backend imports back as the same spec (names and block
  spelling aside: both are folded from their graphs the same way) with bitwise the same weights.
- What has no exact mapping is refused with an error naming the layer and its class.
"""

from __future__ import annotations

import dataclasses
import textwrap
from functools import lru_cache

import numpy as np
import pytest

K = pytest.importorskip("netparity.backends.keras.core",
                        reason="Keras 3 is not installed (pip install 'netparity[keras]')", exc_type=ImportError)
keras = K.keras
L = keras.layers

from netparity.backends import available, get_backend  # noqa: E402
from netparity.backends.graph_folding import GraphError, fold_graph, leaf, merge  # noqa: E402
from netparity.backends.importing import ImportSourceError, import_source, self_check  # noqa: E402
from netparity.backends.keras.importer import KerasImportError, import_model  # noqa: E402
from netparity.spec import (AvgPool2d, BatchNorm, Branches, ConcatBranches, DenseConcat, MaxPool2d,  # noqa: E402
                            Residual, Sequence, init_weights, reference, zoo)
from netparity.spec.layers import Block  # noqa: E402
from netparity.spec.pooling import avg_pool_divisor, pool_output_size  # noqa: E402

from helpers import smallest_input  # noqa: E402

TOLERANCE = 1e-4  # against Keras' own output, another framework
EXACT = 1e-5  # a small model in float32 Keras against the float64 reference


def relative_error(actual, expected) -> float:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = np.abs(expected).max()
    assert scale > 0, "an all-zero output checks nothing"
    return float(np.abs(actual - expected).max() / scale)


def batch(shape, seed: int = 1, n: int = 2, scale: float = 1.0, shift: float = 0.0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((n, *shape)) * scale + shift).astype(np.float32)


def randomize(model, seed: int = 0) -> None:
    """Every variable a fresh Keras model holds at a constant (BatchNorm statistics, gamma and beta,
    biases, ConvNeXt's layer scale at 1e-6, Normalization's mean and variance) drawn at random, so
    that a weight on the wrong key or in the wrong layout shows in the output."""
    rng = np.random.default_rng(seed)
    ranges = {"moving_mean": (-0.3, 0.3), "moving_variance": (0.5, 1.5), "gamma": (0.5, 1.5), "beta": (-0.2, 0.2),
              "bias": (-0.1, 0.1), "alpha": (0.05, 0.45), "mean": (-0.3, 0.3), "variance": (0.5, 1.5)}
    layers = [model]
    while layers:
        layer = layers.pop()
        layers.extend(getattr(layer, "layers", []))
        for variable in layer.weights if layer is not model else []:
            name = "gamma" if type(layer).__name__ == "LayerScale" else variable.name
            if name in ranges and variable.dtype == "float32" and variable.path.startswith(layer.name):
                variable.assign(rng.uniform(*ranges[name], variable.shape).astype(np.float32))
        if isinstance(layer, L.Normalization) and layer.input_mean is None and layer.built:
            layer.finalize_state()  # the adapted mean/variance are read into the constants it divides by


def reference_model(imported):
    model = reference.build(imported.spec)
    reference.set_weights(model, imported.weights)
    return model


def check_against_reference(model, x=None, input_shape=None, rtol=EXACT):
    """Import ``model``; the spec in the float64 reference reproduces Keras' output and the output
    of every layer the runner names. Returns the ImportedModel."""
    imported = import_model(model, input_shape)
    spec = imported.spec
    if x is None:
        x = batch(spec.input_shape)
    ours = reference_model(imported)
    assert relative_error(reference.forward(ours, x), imported.runner.forward(x)) <= rtol
    by_name = {row.layer.name: row.path for row in spec.infer().rows if row.layer.name}
    layers = reference.forward_layers(ours, x)
    named = imported.runner.layers(x)
    assert named, "the runner names no layer"
    for name, out in named.items():
        if np.abs(out).max() > 0:
            assert relative_error(layers[by_name[name]], out) <= rtol, name
    assert list(imported.weights) == list(spec.infer().weight_layout())
    return imported


def functional(input_shape, build, name="net"):
    # Keras' own initialisers draw the kernels: seeded, so every run checks the same model (an
    # unseeded draw once left a two-ReLU head with one output of 4e-4 made by cancellation, whose
    # float32 rounding alone was 1.04e-5 of it)
    keras.utils.set_random_seed(0)
    inputs = keras.Input(input_shape)
    model = keras.Model(inputs, build(inputs), name=name)
    randomize(model)
    return model


def layer_named(imported, name):
    return next(row.layer for row in imported.spec.infer().rows if row.layer.name == name)


def weight_of(imported, name: str, parameter: str = "weight") -> np.ndarray:
    path = next(row.path for row in imported.spec.infer().rows if row.layer.name == name)
    return imported.weights[f"{path}.{parameter}"]


def keras_variable(imported, name: str, attribute: str = "kernel") -> np.ndarray:
    return keras.ops.convert_to_numpy(getattr(imported.runner.graph.get_layer(name), attribute))


def kinds(imported) -> list[str]:
    return [row.layer.kind for row in imported.spec.infer().leaves() if row.layer.name]


# ---------------------------------------------------------------------------------------
# Layers, one family at a time
# ---------------------------------------------------------------------------------------

def test_conv2d_same_padding_is_explicit_and_asymmetric_where_keras_makes_it_so():
    def build(x):
        x = L.Conv2D(4, 3, strides=2, padding="same", name="s2")(x)  # 8x9 -> 4x5, pads (0, 1) and (1, 1)
        x = L.Conv2D(6, 4, padding="same", use_bias=False, name="even")(x)  # pads (1, 2)
        x = L.Conv2D(6, 3, padding="same", dilation_rate=2, groups=2, activation="relu", name="dilated")(x)
        return L.Conv2D(5, (3, 1), strides=(1, 2), padding="valid", name="valid")(x)

    imported = check_against_reference(functional((8, 9, 3), build))
    assert layer_named(imported, "s2").padding == (0, 1, 1, 1)
    assert layer_named(imported, "even").padding == (1, 2, 1, 2) and not layer_named(imported, "even").bias
    dilated = layer_named(imported, "dilated")
    assert (dilated.padding, dilated.dilation, dilated.groups) == ((2, 2), (2, 2), 2)
    assert layer_named(imported, "dilated/relu").function == "relu"
    assert layer_named(imported, "valid").padding == (0, 0)


def test_zero_padding_is_folded_into_the_convolution_it_feeds_alone():
    def build(x):
        x = L.ZeroPadding2D(((1, 2), (0, 1)), name="pad")(x)
        x = L.Conv2D(4, 3, strides=2, name="conv")(x)
        shared = L.ZeroPadding2D(1, name="shared_pad")(x)  # feeds two layers: stays a pad2d
        return L.Add(name="add")([L.Conv2D(4, 3, name="a")(shared), L.Conv2D(4, 3, name="b")(shared)])

    imported = check_against_reference(functional((9, 8, 3), build))
    assert layer_named(imported, "conv").padding == (1, 2, 0, 1)
    assert layer_named(imported, "shared_pad").kind == "pad2d"
    assert "pad" not in [row.layer.name for row in imported.spec.infer().rows]


def test_cropping_after_zero_padding_is_a_crop2d_in_either_data_format():
    def build(x):
        x = L.Conv2D(4, 3, name="conv")(x)  # 9x8 -> 7x6
        x = L.ZeroPadding2D(((0, 1), (0, 1)), name="pad")(x)  # NASNet's shift: pad after, crop before
        x = L.Cropping2D(((1, 0), (1, 0)), name="shift")(x)
        x = L.Cropping2D(((2, 1), (0, 3)), name="crop")(x)  # 7x6 -> 4x3
        x = L.Cropping2D(1, name="symmetric")(x)  # -> 2x1
        return L.Conv2D(3, (2, 1), name="after")(x)

    imported = check_against_reference(functional((9, 8, 3), build))
    assert kinds(imported) == ["conv2d", "pad2d", "crop2d", "crop2d", "crop2d", "conv2d"]
    assert layer_named(imported, "shift").crops == (1, 0, 1, 0)
    assert layer_named(imported, "crop").crop == (2, 1, 0, 3)
    assert layer_named(imported, "symmetric").crop == (1, 1)
    keras.config.set_image_data_format("channels_first")
    try:
        model = functional((3, 9, 8), lambda x: L.Conv2D(2, 1, name="conv")(
            L.Cropping2D(((2, 1), (0, 3)), name="crop")(L.Conv2D(4, 1, name="first")(x))))
    finally:
        keras.config.set_image_data_format("channels_last")
    imported = check_against_reference(model)
    assert layer_named(imported, "crop").crop == (2, 1, 0, 3)
    assert imported.spec.infer().rows[-1].output_shape == (2, 6, 5)


def test_depthwise_and_separable_convolutions():
    def build(x):
        x = L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2, name="dw")(x)
        return L.SeparableConv2D(5, 3, padding="same", depth_multiplier=2, activation="relu6", name="sep")(x)

    imported = check_against_reference(functional((8, 8, 3), build))
    dw = layer_named(imported, "dw")
    assert (dw.out_channels, dw.groups, dw.padding) == (6, 3, (0, 1, 0, 1))
    depthwise, pointwise = layer_named(imported, "sep/depthwise"), layer_named(imported, "sep/pointwise")
    assert (depthwise.groups, depthwise.out_channels, depthwise.bias) == (6, 12, False)
    assert (pointwise.kernel, pointwise.out_channels, pointwise.bias) == ((1, 1), 5, True)
    # DepthwiseConv2D's kernel (kh, kw, C, m) is PyTorch's (C*m, 1, kh, kw), output channel c*m + j
    kernel = keras_variable(imported, "dw")
    assert kernel.shape == (3, 3, 3, 2)
    assert np.array_equal(weight_of(imported, "dw")[1 * 2 + 1, 0], kernel[:, :, 1, 1])


def test_batchnorm_flags_momentum_and_flattened_features():
    def build(x):
        x = L.Conv2D(3, 3, name="conv")(x)
        x = L.BatchNormalization(momentum=0.9, epsilon=1e-3, name="bn")(x)
        x = L.Flatten(name="flat")(x)  # (H, W, C) order: the next layers' weights are permuted
        x = L.BatchNormalization(center=False, scale=False, momentum=0.99, name="bn_flat")(x)
        return L.Dense(7, name="fc")(x)

    imported = check_against_reference(functional((6, 5, 2), build))
    bn = layer_named(imported, "bn")
    assert (bn.momentum, bn.eps, bn.scale, bn.center) == (0.1, 1e-3, True, True)
    flat = layer_named(imported, "bn_flat")
    assert (flat.momentum, flat.scale, flat.center) == (0.01, False, False)
    # the dense rows: Keras' kernel row (h, w, c) is the spec's column c*H*W + h*W + w
    fc, weight = keras_variable(imported, "fc"), weight_of(imported, "fc")
    c, h, w = 3, 4, 3
    assert weight.shape == (7, c * h * w)
    assert np.array_equal(weight[:, 2 * h * w + 1 * w + 0], fc[(1 * w + 0) * c + 2])


ACTIVATION_NAMES = ["relu", "relu6", "sigmoid", "tanh", "silu", "swish", "gelu", "hard_sigmoid", "hard_silu",
                    "hard_swish", "elu", "leaky_relu", "softmax"]


def test_activations_map_to_the_spec_functions_keras_computes():
    def build(x):
        for name in ACTIVATION_NAMES:
            x = L.Activation(name, name=f"act_{name}")(x)
            x = L.Conv2D(4, 1, name=f"mix_{name}")(x)  # keeps values spread over the breakpoints
        x = L.ReLU(name="relu")(x)
        x = L.ReLU(max_value=6.0, name="relu6")(x)
        x = L.ReLU(negative_slope=0.1, name="leaky")(L.Conv2D(4, 1, name="c1")(x))
        x = L.LeakyReLU(name="leaky_default")(L.Conv2D(4, 1, name="c2")(x))
        x = L.ELU(alpha=0.5, name="elu")(L.Conv2D(4, 1, name="c3")(x))
        x = L.PReLU(shared_axes=[1, 2], name="prelu")(L.Conv2D(4, 1, name="c4")(x))
        x = L.Activation("linear", name="linear")(x)
        x = keras.ops.gelu(L.Conv2D(4, 1, name="c5")(x), approximate=True)  # keras ops in the graph
        x = keras.ops.leaky_relu(keras.ops.hard_silu(L.Conv2D(4, 1, name="c6")(x)), negative_slope=0.05)
        return L.Softmax(name="softmax")(x)

    imported = check_against_reference(functional((5, 4, 4), build), x=batch((4, 5, 4), scale=4.0))
    expected = {"relu": "relu", "relu6": "relu6", "sigmoid": "sigmoid", "tanh": "tanh", "silu": "silu",
                "swish": "silu", "gelu": "gelu", "hard_sigmoid": "hardsigmoid", "hard_silu": "hardswish",
                "hard_swish": "hardswish", "elu": "elu", "leaky_relu": "leaky_relu", "softmax": "softmax"}
    for name, function in expected.items():
        assert layer_named(imported, f"act_{name}").function == function
    assert layer_named(imported, "act_gelu").approximate == "none"  # keras.activations.gelu is exact
    assert layer_named(imported, "act_leaky_relu").negative_slope == 0.2
    assert layer_named(imported, "leaky").negative_slope == 0.1
    assert layer_named(imported, "leaky_default").negative_slope == 0.3
    assert layer_named(imported, "elu").alpha == 0.5
    assert layer_named(imported, "linear").kind == "identity"
    assert layer_named(imported, "prelu").kind == "prelu"
    ops = [row.layer for row in imported.spec.infer().leaves() if row.layer.kind == "activation"][-4:-1]
    assert [(layer.function, layer.approximate, layer.negative_slope) for layer in ops] == [
        ("gelu", "tanh", 0.01), ("hardswish", "none", 0.01), ("leaky_relu", "none", 0.05)]


def test_pooling_valid_and_same_max_pooling_never_lets_padding_win():
    def build(x):
        a = L.MaxPooling2D(3, strides=2, padding="same", name="max_same")(x)  # 8x7 -> 4x4, pads (0, 1)/(1, 1)
        a = L.AveragePooling2D(3, strides=2, padding="same", name="avg_same")(a)  # excludes padding
        a = L.ZeroPadding2D(1, name="zpad")(a)
        a = L.AveragePooling2D(3, strides=1, name="avg_zero_pad")(a)  # counts the zeros: folded
        b = L.ZeroPadding2D(((0, 1), (1, 0)), name="pad_for_max")(x)
        b = L.MaxPooling2D(2, name="max_after_zeros")(b)  # zeros can win here: the pad stays a pad2d
        b = L.AveragePooling2D(3, strides=2, padding="same", name="avg_same_ceil")(b)  # 4x4 -> 2x2, pads (0, 1)
        a = L.GlobalAveragePooling2D(keepdims=True, name="gap")(a)
        b = L.GlobalMaxPooling2D(keepdims=True, name="gmp")(b)
        return L.Flatten(name="flat")(L.Concatenate(name="cat")([a, b]))

    # negative inputs: a max pool that let its padding win would give 0
    imported = check_against_reference(functional((8, 7, 3), build), x=batch((3, 8, 7), shift=-3.0))
    max_same = layer_named(imported, "max_same")
    assert isinstance(max_same, MaxPool2d) and max_same.padding in ((0, 1), (1, 1))
    avg_same = layer_named(imported, "avg_same")
    assert isinstance(avg_same, AvgPool2d) and not avg_same.count_include_pad
    folded = layer_named(imported, "avg_zero_pad")
    assert (folded.padding, folded.count_include_pad) == ((1, 1), True)
    assert layer_named(imported, "pad_for_max").kind == "pad2d"
    ceil = layer_named(imported, "avg_same_ceil")
    assert (ceil.padding, ceil.ceil_mode, ceil.count_include_pad) == ((0, 0), True, False)
    assert layer_named(imported, "gap").keepdims
    # padding after but not before, at stride 1: no PyTorch-style pool has those windows
    refused(tiny(L.AveragePooling2D(2, strides=1, padding="same", name="even")), "'even' (AveragePooling2D)",
            "no PyTorch-style pool")
    refused(tiny(L.MaxPooling2D(2, strides=1, padding="same", name="even")), "'even' (MaxPooling2D)",
            "no PyTorch-style pool")


def test_squeeze_excitation_merges_and_concatenation():
    def build(x):
        x = L.Conv2D(8, 3, padding="same", name="conv")(x)
        gate = L.GlobalAveragePooling2D(name="squeeze")(x)
        gate = L.Reshape((1, 1, 8), name="se_reshape")(gate)  # becomes the pool with keepdims
        gate = L.Conv2D(2, 1, activation="relu", name="reduce")(gate)
        gate = L.Conv2D(8, 1, activation="sigmoid", name="expand")(gate)
        y = L.Multiply(name="excite")([x, gate])
        y = L.Add(name="residual")([y, x])
        z = L.Concatenate(name="cat")([y, L.Conv2D(3, 1, name="side")(x)])
        return L.GlobalMaxPooling2D(name="gmp")(z)

    imported = check_against_reference(functional((6, 6, 3), build))
    assert layer_named(imported, "squeeze").keepdims
    assert "se_reshape" not in [row.layer.name for row in imported.spec.infer().rows]
    assert isinstance(layer_named(imported, "excite"), Branches) and layer_named(imported, "excite").merge == "mul"
    assert layer_named(imported, "cat").merge == "concat"


def test_dropout_drop_path_identity_and_dense_on_pixels():
    def build(x):
        x = L.LayerNormalization(epsilon=1e-6, name="ln")(x)
        x = L.Dense(8, activation="gelu", name="pointwise")(x)  # Dense on NHWC: a 1x1 convolution
        x = L.Dropout(0.3, name="drop")(x)
        x = L.Dropout(0.2, noise_shape=(None, 1, 1, 1), name="drop_path")(x)
        x = L.Identity(name="same")(x)
        return L.Dense(3, name="fc")(L.GlobalAveragePooling2D(name="gap")(x))

    imported = check_against_reference(functional((4, 5, 6), build))
    assert layer_named(imported, "ln").eps == 1e-6 and layer_named(imported, "ln").kind == "layernorm"
    pointwise = layer_named(imported, "pointwise")
    assert pointwise.kind == "conv2d" and pointwise.kernel == (1, 1)
    assert layer_named(imported, "drop").p == 0.3 and layer_named(imported, "drop").kind == "dropout"
    assert layer_named(imported, "drop_path").kind == "drop_path"
    assert layer_named(imported, "same").kind == "identity"


def test_preprocessing_layers_and_scalar_ops_are_exact_normalizations():
    mean, variance = [0.5, -1.0, 2.0], [4.0, 0.25, 1.0]

    def build(x):
        x = L.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(x)
        x = L.Normalization(mean=mean, variance=variance, name="norm")(x)
        x = L.Rescaling([2.0, 0.5, 4.0], name="per_channel")(x)
        x = (x + 3.0) * 2.0 - 1.0
        x = x / 4.0
        x = L.Conv2D(4, 1, name="conv")(x)
        return L.ReLU(6.0, name="hs_relu6")(x + 3.0) * (1.0 / 6.0)  # MobileNetV3's hard sigmoid

    imported = check_against_reference(functional((4, 4, 3), build), x=batch((3, 4, 4), scale=50.0))
    rescale = layer_named(imported, "rescale")
    assert rescale.mean == pytest.approx((127.5,)) and rescale.std == pytest.approx((127.5,))
    norm = layer_named(imported, "norm")
    assert norm.mean == pytest.approx(tuple(mean)) and norm.std == pytest.approx((2.0, 0.5, 1.0))
    assert layer_named(imported, "per_channel").std == pytest.approx((0.5, 2.0, 0.25))
    assert kinds(imported)[-2:] == ["conv2d", "activation"]
    assert imported.spec.infer().leaves()[-1].layer.function == "hardsigmoid"


def test_channel_shuffle_and_a_permute_that_undoes_the_flatten_order():
    def build(x):
        x = L.Conv2D(6, 1, name="conv")(x)
        h, w = 3, 4
        y = L.Reshape((h, w, 2, 3), name="groups")(x)
        y = L.Permute((1, 2, 4, 3), name="swap")(y)
        y = L.Reshape((h, w, 6), name="shuffle")(y)
        y = L.Conv2D(4, 1, name="after")(y)
        flat = L.Flatten(name="chw_flat")(L.Permute((3, 1, 2), name="to_chw")(y))  # (C, H, W) order
        return L.Dense(5, name="fc")(flat)

    imported = check_against_reference(functional((3, 4, 2), build))
    assert layer_named(imported, "shuffle").kind == "channel_shuffle"
    assert layer_named(imported, "shuffle").groups == 2
    assert layer_named(imported, "chw_flat").kind == "flatten"


def test_channels_first_model():
    keras.config.set_image_data_format("channels_first")
    try:
        def build(x):
            x = L.Conv2D(5, 3, strides=2, padding="same", name="conv")(x)  # 5 channels, width 4
            x = L.BatchNormalization(axis=1, name="bn")(x)
            x = L.MaxPooling2D(2, padding="same", name="pool")(x)
            x = L.Flatten(name="flat")(x)  # channels_first: Keras flattens (H, W, C) again
            return L.Dense(3, name="fc")(x)

        model = functional((3, 9, 8), build)
    finally:
        keras.config.set_image_data_format("channels_last")
    imported = check_against_reference(model)
    assert imported.spec.input_shape == (3, 9, 8)
    assert not any("channels_last" in note for note in imported.notes)


def test_channels_first_bias_that_keras_adds_along_the_width_is_refused():
    conv = L.Conv2D(4, 3, strides=2, padding="same", data_format="channels_first", name="conv")
    inputs = keras.Input((3, 9, 8))
    model = keras.Model(inputs, conv(inputs))
    randomize(model)
    # what Keras computes is not convolution + per-channel bias (keras 3.15, TensorFlow backend) ...
    x = batch((3, 9, 8))
    plain = keras.ops.convert_to_numpy(keras.ops.conv(x, conv.kernel, strides=2, padding="same",
                                                      data_format="channels_first"))
    bias = keras.ops.convert_to_numpy(conv.bias).reshape(1, 4, 1, 1)
    if keras.backend.backend() == "tensorflow":
        assert np.abs(keras.ops.convert_to_numpy(model(x)) - (plain + bias)).max() > 1e-2
        # ... so the import refuses it, saying why
        refused(model, "'conv' (Conv2D)", "adds the bias along the width")


def test_nested_and_sequential_models_are_walked_into():
    block = keras.Sequential([keras.Input((6, 6, 4)), L.Conv2D(4, 3, padding="same", name="conv"),
                              L.BatchNormalization(name="bn"), L.ReLU(name="relu")], name="block")
    inner_in = keras.Input((6, 6, 4))
    inner = keras.Model(inner_in, L.Add(name="add")([block(inner_in), inner_in]), name="unit")

    def build(x):
        x = L.Conv2D(4, 1, name="stem")(x)
        x = inner(x)
        return L.Dense(2, name="head")(L.GlobalAveragePooling2D(name="gap")(x))

    imported = check_against_reference(functional((6, 6, 3), build))
    names = [row.layer.name for row in imported.spec.infer().rows]
    assert "unit/block/conv" in names and "unit/add" in names

    sequential = keras.Sequential([keras.Input((5, 5, 2)), L.Conv2D(3, 3, name="c"), L.ReLU(name="r"),
                                   L.Flatten(name="f"), L.Dense(4, name="d")], name="seq")
    randomize(sequential)
    imported = check_against_reference(sequential)
    assert [row.layer.name for row in imported.spec.infer().leaves()] == ["c", "r", "f", "d"]


def test_flat_input_and_a_weightless_layer_used_twice():
    relu = L.ReLU(name="relu")

    def build(x):
        x = relu(L.Dense(6, name="fc1")(x))
        return relu(L.Dense(3, name="fc2")(x))

    imported = check_against_reference(functional((7,), build))
    assert imported.spec.input_shape == (7, 1, 1)
    names = [row.layer.name for row in imported.spec.infer().leaves()]
    assert names == [f"{imported.source_input}/flatten", "fc1", "relu", "fc2", "relu#2"]


def test_input_size_of_a_model_without_a_fixed_one():
    model = functional((None, None, 3), lambda x: L.GlobalAveragePooling2D()(L.Conv2D(2, 3, name="conv")(x)))
    with pytest.raises(KerasImportError, match="does not fix its input height"):
        import_model(model)
    imported = import_model(model, 12)
    assert imported.spec.input_shape == (3, 12, 12)
    x = batch((3, 12, 12))
    assert relative_error(reference.forward(reference_model(imported), x), imported.runner.forward(x)) <= EXACT
    with pytest.raises(KerasImportError, match="channels 3, not 4"):
        import_model(model, (4, 12, 12))


# ---------------------------------------------------------------------------------------
# Refusals: the layer by name and class, and what is supported
# ---------------------------------------------------------------------------------------

def refused(model, *fragments, error=KerasImportError, input_shape=None):
    with pytest.raises(error) as caught:
        import_model(model, input_shape)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def tiny(layer, shape=(6, 6, 3), before=None):
    def build(x):
        if before is not None:
            x = before(x)
        return layer(x)
    return functional(shape, build)


def test_unsupported_layers_are_named_with_what_is_supported():
    message = refused(tiny(L.UpSampling2D(name="up")), "'up' (UpSampling2D)", "Supported layers:", "Conv2D",
                      "Cropping2D", "SeparableConv2D")
    assert "keras ops" in message
    refused(tiny(L.Lambda(lambda t: t * 2, name="fn")), "'fn' (Lambda)", "arbitrary Python")


@pytest.mark.parametrize("layer, fragments", [
    (L.ReLU(threshold=0.5, name="r"), ("'r' (ReLU)", "threshold=0.5")),
    (L.PReLU(name="p"), ("'p' (PReLU)", "one slope per channel")),
    (L.BatchNormalization(axis=1, name="bn"), ("'bn' (BatchNormalization)", "not its channel axis")),
    (L.Activation("selu", name="a"), ("'a' (Activation)", "'selu'", "supported: relu")),
    (L.Dropout(0.5, noise_shape=(None, 1, 1, 3), name="d"), ("'d' (Dropout)", "noise_shape")),
    (L.Rescaling(-1.0, name="neg"), ("'neg' (Rescaling)", "positive")),
    (L.Normalization(axis=(1, 2, 3), mean=0.0, variance=1.0, name="n"), ("'n' (Normalization)", "per channel")),
    (L.LayerNormalization(center=False, name="ln"), ("'ln' (LayerNormalization)", "center=True")),
    (L.Softmax(axis=1, name="sm"), ("'sm' (Softmax)", "not its channel axis")),
])
def test_unsupported_configurations_are_refused_by_name(layer, fragments):
    refused(tiny(layer), *fragments)


def test_graph_level_refusals():
    # shared weights
    dense = L.Dense(4, name="shared")
    refused(functional((5,), lambda x: dense(dense(L.Dense(4)(x)))), "'shared' (Dense)", "sharing its weights")
    # training-mode call at inference
    refused(functional((5,), lambda x: L.Dropout(0.5, name="mc")(x, training=True)), "'mc' (Dropout)",
            "training=True")
    # two inputs
    a, b = keras.Input((4,)), keras.Input((4,))
    refused(keras.Model([a, b], L.Add()([a, b]), name="two"), "2 inputs")
    # not series-parallel: b and c both feed two merges that do not nest
    def crossed(x):
        x = L.Conv2D(2, 1, name="x")(x)
        b, c = L.Conv2D(2, 1, name="b")(x), L.Conv2D(2, 1, name="c")(x)
        return L.Add(name="out")([L.Add(name="d")([b, c]), L.Multiply(name="e")([b, c])])
    with pytest.raises(GraphError, match="not series-parallel") as caught:
        import_model(functional((4, 4, 2), crossed))
    assert caught.value.node in ("b", "c")
    # a flat tensor reshaped into an image that no spec layer makes
    refused(functional((6, 6, 3), lambda x: L.Conv2D(2, 1)(L.Reshape((1, 1, 108), name="rs")(
        L.Dense(108, name="d")(L.Flatten()(x))))), "'rs' (Reshape)", "no reshape")
    # an image reshaped into something that is no layout of it
    refused(functional((6, 6, 3), lambda x: L.Dense(2, name="fc")(L.Reshape((3, 36), name="rs")(x))),
            "'fc' (Dense)", "made by 'rs'", "no spec layer computes")


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.conv = L.Conv2D(2, 3)

    def call(self, x):
        return self.conv(x)


def test_subclassed_models_get_a_clear_message():
    model = Subclassed()
    model(np.zeros((1, 5, 5, 3), np.float32))
    refused(model, "subclassed keras.Model has no layer graph", "functional API")
    with pytest.raises(KerasImportError, match="expected a keras.Model"):
        import_model(object())


# ---------------------------------------------------------------------------------------
# Sources of netparity import
# ---------------------------------------------------------------------------------------

def test_keras_applications_source_and_self_check():
    imported = import_source("keras.applications:MobileNet", input_size=32, name="mnet")
    assert imported.source == "keras.applications:MobileNet" and imported.spec.name == "mnet"
    check = self_check(imported)
    assert check.ok and check.source_ran, check
    with pytest.raises(ImportSourceError, match="no 'MobileNetV9'"):
        import_source("keras.applications:MobileNetV9")
    with pytest.raises(ImportSourceError, match="keras.applications:VGG16"):
        import_source("keras.applications:VGG16", input_size=16)  # below its minimum size


def test_keras_file_source(tmp_path):
    model = functional((6, 6, 3), lambda x: L.Dense(3)(L.Flatten()(L.Conv2D(4, 3, name="conv")(x))))
    path = tmp_path / "small.keras"
    model.save(path)
    imported = import_source(str(path))
    assert imported.spec.name == "small" and imported.source == str(path)
    assert self_check(imported).ok
    # a model the keras backend built (netparity's own layers) loads and imports too
    spec = zoo.get("googlenet").with_input(size=40)
    built = K.build(spec)
    K.set_weights(built, init_weights(spec, seed=2))
    built.save(tmp_path / "googlenet.keras")
    assert self_check(import_source(str(tmp_path / "googlenet.keras"))).ok
    with pytest.raises(ImportSourceError, match="no such file"):
        import_source(str(tmp_path / "missing.keras"))


def test_cli_refusal_is_one_line_and_writes_nothing(tmp_path):
    from typer.testing import CliRunner

    from netparity.cli import app

    factory = tmp_path / "upsampled.py"
    factory.write_text(textwrap.dedent("""
        import keras

        def build():
            x = keras.Input((8, 8, 3))
            return keras.Model(x, keras.layers.UpSampling2D(name="up")(keras.layers.Conv2D(2, 3)(x)))
    """))
    out = tmp_path / "out.json"
    result = CliRunner().invoke(app, ["import", f"{factory}:build", "-o", str(out)], terminal_width=200)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "'up' (UpSampling2D)" in errors[0] and "Traceback" not in result.output
    assert not out.exists() and not out.with_suffix(".npz").exists()


# ---------------------------------------------------------------------------------------
# Round trip: zoo spec -> keras backend -> import
# ---------------------------------------------------------------------------------------

def spec_graph(spec):
    """The spec's layers as graph nodes (leaves and merges), the way graph_folding reads a source."""
    nodes, counter = [], iter(range(1_000_000))

    def add(node):
        nodes.append(node)
        return node.name

    def walk(layer, x):
        if isinstance(layer, Sequence):
            for child in layer.layers:
                x = walk(child, x)
            return x
        if isinstance(layer, Residual):
            skip = x if layer.shortcut is None else walk(layer.shortcut, x)
            return add(merge(f"m{next(counter)}", "add", [walk(layer.body, x), skip]))
        if isinstance(layer, (ConcatBranches, Branches)):
            kind = getattr(layer, "merge", "concat")
            return add(merge(f"m{next(counter)}", kind, [walk(b, x) for b in layer.branches]))
        if isinstance(layer, DenseConcat):
            for child in layer.layers:
                x = add(merge(f"m{next(counter)}", "concat", [x, walk(child, x)]))
            return x
        assert not isinstance(layer, Block), layer.kind
        return add(leaf(f"n{next(counter)}", dataclasses.replace(layer, name=""), x))

    out = "input"
    for block in spec.blocks:
        out = walk(block, out)
    return nodes, out


def _unnamed(layer):
    if isinstance(layer, Sequence):
        return dataclasses.replace(layer, name="", layers=tuple(_unnamed(c) for c in layer.layers))
    if isinstance(layer, Branches):
        return dataclasses.replace(layer, name="", branches=tuple(_unnamed(c) for c in layer.branches))
    return dataclasses.replace(layer, name="")


def _idle_pool_flags(spec):
    """Pools with ceil_mode / count_include_pad set to the default where, at this input, they change
    no window and no divisor: Keras has no such flags, so the import cannot tell them apart."""
    rows = {row.path: row for row in spec.infer().rows}

    def fix(layer, path):
        if isinstance(layer, Block):
            kids = {rel: fix(child, f"{path}.{rel}") for rel, child in layer.children()}
            if isinstance(layer, Residual):
                return dataclasses.replace(layer, body=kids["body"], shortcut=kids.get("shortcut"))
            field = "layers" if isinstance(layer, (Sequence, DenseConcat)) else "branches"
            return dataclasses.replace(layer, **{field: tuple(kids.values())})
        if isinstance(layer, (MaxPool2d, AvgPool2d)):
            _, h, w = rows[path].input_shape
            plain = dataclasses.replace(layer, ceil_mode=False)
            if all(pool_output_size(s, k, st, p, True) == pool_output_size(s, k, st, p, False) for s, k, st, p in
                   zip((h, w), layer.kernel, layer.stride, layer.padding)):
                layer = plain
            if isinstance(layer, AvgPool2d):
                default = dataclasses.replace(layer, count_include_pad=True)
                args = (h, w, layer.kernel, layer.stride, layer.padding, layer.ceil_mode)
                if np.array_equal(avg_pool_divisor(*args, layer.count_include_pad), avg_pool_divisor(*args, True)):
                    layer = default
        return layer

    return dataclasses.replace(spec, blocks=tuple(fix(b, f"blocks[{i}]") for i, b in enumerate(spec.blocks)))


def normal_form(spec) -> tuple:
    """Block spelling and names out: the spec's graph folded as graph_folding folds an import."""
    nodes, out = spec_graph(_idle_pool_flags(spec))
    return tuple(_unnamed(block) for block in fold_graph(nodes, "input", out).blocks)


def test_normal_form_tells_specs_apart():
    assert normal_form(zoo.get("resnet18")) != normal_form(zoo.get("resnet34"))
    assert normal_form(zoo.get("tv_squeezenet1_1")) != normal_form(zoo.get("tv_squeezenet1_1", num_classes=10))
    spec = zoo.get("lenet")
    assert normal_form(spec) != normal_form(dataclasses.replace(
        spec, blocks=(dataclasses.replace(spec.blocks[0], padding=(1, 1)), *spec.blocks[1:])))


# every block kind, every fusion and layout of the keras backend in the fast set; the rest slow
ROUND_TRIP_FAST = {"lenet", "lenet_bn", "inception_mnist", "residual_mnist", "densenet", "googlenet", "nin",
                   "tv_mobilenet_v3_small", "tv_shufflenet_v2_x1_0", "tv_convnext_tiny", "tv_squeezenet1_1",
                   "mobilefacenet"}


@pytest.mark.parametrize("name", [n if n in ROUND_TRIP_FAST else pytest.param(n, marks=pytest.mark.slow)
                                  for n in zoo.names()])
def test_zoo_round_trip(name):
    spec = smallest_input(zoo.get(name), at_least=16)
    weights = init_weights(spec, seed=3)
    model = K.build(spec)
    K.set_weights(model, weights)
    imported = import_model(model)
    assert imported.spec.input_shape == spec.input_shape
    assert normal_form(imported.spec) == normal_form(spec)
    # bitwise the same weights: the imported layers carry the keras backend's layer names,
    # which name the zoo spec's paths
    paths = {K.layer_name(row.path): row.path for row in spec.infer().leaves()}
    rows = {row.path: row for row in imported.spec.infer().rows}
    moved = {}
    for key, value in imported.weights.items():
        path, parameter = key.rsplit(".", 1)
        moved[f"{paths[rows[path].layer.name]}.{parameter}"] = value
    assert set(moved) == set(weights)
    for key, value in weights.items():
        assert moved[key].dtype == np.float32 and np.array_equal(moved[key], value.astype(np.float32)), key
    if not any(getattr(row.layer, "parameter_order", ()) for row in spec.infer().rows):
        assert list(moved) == list(weights)  # and in the same canonical order


# ---------------------------------------------------------------------------------------
# keras.applications
# ---------------------------------------------------------------------------------------

# the smallest input each accepts (odd where it is free, so strided 'same' convolutions meet odd
# and even edges); the slowest to build (Keras builds DenseNet121's 427 layers in ~7 s) are slow
APPLICATIONS = {"EfficientNetB0": 33, "VGG16": 32, "ResNet50": 33, "ResNet50V2": 32, "MobileNet": 32, "MobileNetV2": 33,
                "MobileNetV3Small": 33, "DenseNet121": 33, "EfficientNetV2B0": 32,
                "ConvNeXtTiny": 32, "Xception": 71, "InceptionV3": 75}
APPLICATIONS_FAST = {"MobileNet", "MobileNetV3Small", "EfficientNetB0", "ConvNeXtTiny"}
# NASNet's cells reuse a tensor in merges that do not nest (its Cropping2D imports as crop2d)
REFUSED = {"NASNetMobile": (32, GraphError, ("'reduction_pad_1_stem_1'", "not series-parallel", "computing it twice"))}


def build_application(name: str, size: int):
    factory = getattr(keras.applications, name)
    options = {"weights": None, "input_shape": (size, size, 3)}
    import inspect
    parameters = inspect.signature(factory).parameters
    if "include_preprocessing" in parameters:
        options["include_preprocessing"] = True
    if "classifier_activation" in parameters and name != "MobileNet":  # logits; MobileNet keeps its softmax
        options["classifier_activation"] = None
    keras.utils.set_random_seed(0)
    model = factory(**options)
    randomize(model)
    return model


@lru_cache(maxsize=1)
def application_case(name: str):
    model = build_application(name, APPLICATIONS[name])
    imported = import_model(model)
    x = batch(imported.spec.input_shape, scale=2.0)
    return imported, x, imported.runner.forward(x)


@pytest.fixture(scope="module", autouse=True)
def release_application_cases():
    yield
    application_case.cache_clear()


def test_application_names_and_notes():
    imported, _, _ = application_case("EfficientNetB0")
    names = [row.layer.name for row in imported.spec.infer().leaves() if row.layer.name]
    assert names[:3] == ["rescaling", "normalization", "stem_conv"]
    assert "block1a_se_squeeze" in names and "top_conv" in names and names[-1] == "predictions"
    assert layer_named(imported, "block1a_se_squeeze").keepdims
    assert any("ZeroPadding2D" in note for note in imported.notes)
    assert any("squeeze-and-excitation" in note for note in imported.notes)


@pytest.mark.parametrize("framework", ["torch", "mxnet"])
@pytest.mark.parametrize("name", [n if n in APPLICATIONS_FAST else pytest.param(n, marks=pytest.mark.slow)
                                  for n in APPLICATIONS])
def test_keras_application_reproduces_its_output(name, framework):
    if framework not in available():
        pytest.skip(f"{framework} is not installed (pip install 'netparity[{framework}]')")
    imported, x, expected = application_case(name)
    inference = imported.spec.infer()
    counts = imported.source_counts
    assert (inference.parameters, inference.running_stats) == (counts["trainable"], counts["running_stats"])
    backend = get_backend(framework)
    model = backend.build(imported.spec)
    backend.set_weights(model, imported.weights)
    assert relative_error(backend.forward(model, x), expected) <= TOLERANCE


@pytest.mark.slow
@pytest.mark.parametrize("name", list(REFUSED))
def test_keras_application_that_cannot_be_imported_exactly_names_the_operation(name):
    size, error, fragments = REFUSED[name]
    model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3))
    refused(model, *fragments, error=error)


