"""Small hand-written ports with the parameterised kinds of modern CNNs: PReLU, LayerNorm, depthwise,
grouped and dilated convolutions, BatchNorm without learned scale/center.

Two networks, each written idiomatically in PyTorch, MXNet Gluon and Keras 3 (functional,
channels_last), independent of netparity's spec and backends; the input is 3x8x8 (``SHAPE``):

- ``mobile``: conv (no bias) -> BN -> PReLU per channel -> depthwise 3x3 dilation 2 -> LayerNorm over
  the channels of each pixel (ConvNeXt's LayerNorm2d) -> grouped 1x1 conv (groups 2) -> ReLU ->
  depthwise 3x3 stride 2 with multiplier 2 -> BN without scale/center -> global average pool ->
  dense -> LayerNorm over features -> PReLU per feature -> dense;
- ``convnext``: conv stem -> a ConvNeXt block (depthwise 7x7, then PyTorch permutes to NHWC for
  LayerNorm, two pointwise Linear layers with GELU and a layer scale (timm's ``LayerScale``: a learned
  multiplier per channel on the last axis), and back; Keras stays NHWC (keras.applications'
  ``LayerScale``); Gluon transposes around Dense(flatten=False), LayerNorm(axis=-1) and its own
  LayerScale) with its residual add -> pool -> dense.

Keyword arguments introduce one porting mistake each (see each factory): a LayerNorm epsilon left at
Keras' default 1e-3, a single shared PReLU slope, Keras' default per-element PReLU, a grouped Keras
Conv2D instead of DepthwiseConv2D (not a mistake: the same function), a plain conv where the reference
is depthwise. ``load_nontrivial`` gives a model seeded weights away from the defaults (slopes, norm
scales and BatchNorm statistics), written through netparity's canonical layout.
"""

from __future__ import annotations

import numpy as np

from netparity.backends.frameworks import import_keras, import_mxnet, import_torch

torch, mx, keras = import_torch(), import_mxnet(), import_keras()
tnn, F = torch.nn, torch.nn.functional
gnn = mx.gluon.nn
L = keras.layers

SHAPE = (3, 8, 8)


def mobile_spec():
    """``mobile`` as a netparity spec (built by a backend when it is verify's reference)."""
    from netparity.spec import Activation, BatchNorm, Conv2d, Dense, GlobalAvgPool, LayerNorm, PReLU, Spec

    return Spec("mobile", SHAPE, (
        Conv2d(8, 3, padding=1, bias=False), BatchNorm(), PReLU(),
        Conv2d(8, 3, padding=2, dilation=2, groups=8), LayerNorm(),
        Conv2d(16, 1, groups=2), Activation("relu"),
        Conv2d(32, 3, stride=2, padding=1, groups=16), BatchNorm(scale=False, center=False),
        GlobalAvgPool(), Dense(16), LayerNorm(), PReLU(), Dense(5)))


# ----------------------------------------------------------------------------------------- PyTorch

class LayerNorm2d(tnn.LayerNorm):
    """torchvision's ConvNeXt LayerNorm2d: LayerNorm over the channels of each pixel of NCHW."""

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def torch_mobile(prelu_shared=False, plain_conv=False, bn_affine=False):
    """``prelu_shared``: nn.PReLU() (one slope, PyTorch's default) for the first PReLU;
    ``plain_conv``: a full 3x3 conv where the reference has the dilated depthwise one;
    ``bn_affine``: the last BatchNorm with a learned scale and shift (the others' have none)."""
    depthwise = tnn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=1 if plain_conv else 8)
    return tnn.Sequential(
        tnn.Conv2d(3, 8, 3, padding=1, bias=False), tnn.BatchNorm2d(8), tnn.PReLU(1 if prelu_shared else 8),
        depthwise, LayerNorm2d(8),
        tnn.Conv2d(8, 16, 1, groups=2), tnn.ReLU(),
        tnn.Conv2d(16, 32, 3, stride=2, padding=1, groups=16), tnn.BatchNorm2d(32, affine=bn_affine),
        tnn.AdaptiveAvgPool2d(1), tnn.Flatten(),
        tnn.Linear(32, 16), tnn.LayerNorm(16), tnn.PReLU(16), tnn.Linear(16, 5)).eval()


class LayerScale(tnn.Module):
    """timm's LayerScale: x * gamma over the last axis (channels, in an NHWC block)."""

    def __init__(self, channels, init_values=1e-6):
        super().__init__()
        self.gamma = tnn.Parameter(init_values * torch.ones(channels))

    def forward(self, x):
        return x * self.gamma


class TorchConvNeXtBlock(tnn.Module):
    def __init__(self, channels):
        super().__init__()
        self.dwconv = tnn.Conv2d(channels, channels, 7, padding=3, groups=channels)
        self.norm = tnn.LayerNorm(channels, eps=1e-6)
        self.pwconv1 = tnn.Linear(channels, 2 * channels)
        self.pwconv2 = tnn.Linear(2 * channels, channels)
        self.layer_scale = LayerScale(channels)

    def forward(self, x):
        y = self.dwconv(x).permute(0, 2, 3, 1)  # NHWC: LayerNorm and Linear act on the channels
        y = self.layer_scale(self.pwconv2(F.gelu(self.pwconv1(self.norm(y)))))
        return x + y.permute(0, 3, 1, 2)


def torch_convnext():
    return tnn.Sequential(tnn.Conv2d(3, 8, 2, stride=2), LayerNorm2d(8, eps=1e-6), TorchConvNeXtBlock(8),
                          tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(8, 5)).eval()


# ------------------------------------------------------------------------------------ MXNet Gluon

def gluon_mobile(prelu_shared=False):
    """``prelu_shared``: nn.PReLU() (one slope, Gluon's default) for the first PReLU."""
    net = gnn.HybridSequential()
    net.add(gnn.Conv2D(8, 3, padding=1, use_bias=False, in_channels=3), gnn.BatchNorm(in_channels=8),
            gnn.PReLU(in_channels=1 if prelu_shared else 8),
            gnn.Conv2D(8, 3, padding=2, dilation=2, groups=8, in_channels=8), gnn.LayerNorm(axis=1, in_channels=8),
            gnn.Conv2D(16, 1, groups=2, in_channels=8), gnn.Activation("relu"),
            gnn.Conv2D(32, 3, strides=2, padding=1, groups=16, in_channels=16),
            gnn.BatchNorm(scale=False, center=False, in_channels=32),
            gnn.GlobalAvgPool2D(), gnn.Dense(16, in_units=32), gnn.LayerNorm(in_channels=16),
            gnn.PReLU(in_channels=16), gnn.Dense(5, in_units=16))
    net.initialize()
    net.hybridize()
    return net


class GluonLayerScale(gnn.HybridBlock):
    """x * gamma over the last axis."""

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.gamma = self.params.get("gamma", shape=(channels,), init=mx.init.Constant(1e-6))

    def hybrid_forward(self, F, x, gamma):
        return F.broadcast_mul(x, gamma)


GluonLayerScale.__name__ = "LayerScale"  # the name verify recognises a layer scale by


class GluonConvNeXtBlock(gnn.HybridBlock):
    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.dwconv = gnn.Conv2D(channels, 7, padding=3, groups=channels, in_channels=channels)
        self.norm = gnn.LayerNorm(axis=-1, epsilon=1e-6, in_channels=channels)
        self.pwconv1 = gnn.Dense(2 * channels, flatten=False, in_units=channels)
        self.pwconv2 = gnn.Dense(channels, flatten=False, in_units=2 * channels)
        self.layer_scale = GluonLayerScale(channels)

    def hybrid_forward(self, F, x):
        y = F.transpose(self.dwconv(x), axes=(0, 2, 3, 1))
        y = self.layer_scale(self.pwconv2(F.LeakyReLU(self.pwconv1(self.norm(y)), act_type="gelu")))
        return x + F.transpose(y, axes=(0, 3, 1, 2))


def gluon_convnext():
    net = gnn.HybridSequential()
    net.add(gnn.Conv2D(8, 2, strides=2, in_channels=3), gnn.LayerNorm(axis=1, epsilon=1e-6, in_channels=8),
            GluonConvNeXtBlock(8), gnn.GlobalAvgPool2D(), gnn.Dense(5, in_units=8))
    net.initialize()
    net.hybridize()
    return net


# ------------------------------------------------------------------------------------------ Keras

def keras_mobile(ln_eps=1e-5, prelu="per_channel", grouped=False):
    """``ln_eps``: the first LayerNormalization's epsilon (Keras' default is 1e-3); ``prelu``:
    "per_channel" (shared_axes=[1, 2]), "shared" (shared_axes=[1, 2, 3]) or "per_element" (Keras'
    default); ``grouped``: Conv2D(groups=C) instead of DepthwiseConv2D for the dilated depthwise conv."""
    shared = {"per_channel": [1, 2], "shared": [1, 2, 3], "per_element": None}[prelu]
    x = inputs = keras.Input((*SHAPE[1:], SHAPE[0]))
    x = L.Conv2D(8, 3, padding="same", use_bias=False)(x)
    x = L.BatchNormalization(epsilon=1e-5, momentum=0.9)(x)
    x = L.PReLU(shared_axes=shared)(x)
    x = (L.Conv2D(8, 3, padding="same", dilation_rate=2, groups=8)(x) if grouped
         else L.DepthwiseConv2D(3, padding="same", dilation_rate=2)(x))
    x = L.LayerNormalization(epsilon=ln_eps)(x)
    x = L.Conv2D(16, 1, groups=2)(x)
    x = L.ReLU()(x)
    x = L.ZeroPadding2D(1)(x)
    x = L.DepthwiseConv2D(3, strides=2, depth_multiplier=2)(x)
    x = L.BatchNormalization(epsilon=1e-5, momentum=0.9, scale=False, center=False)(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(16)(x)
    x = L.LayerNormalization(epsilon=1e-5)(x)
    x = L.PReLU()(x)  # on flat features Keras' default is one slope per feature
    return keras.Model(inputs, L.Dense(5)(x))


class KerasLayerScale(keras.layers.Layer):
    """keras.applications.convnext's LayerScale: x * gamma over the last axis."""

    def __init__(self, init_values, projection_dim, **kwargs):
        super().__init__(**kwargs)
        self.init_values, self.projection_dim = init_values, projection_dim

    def build(self, _):
        self.gamma = self.add_weight(shape=(self.projection_dim,),
                                     initializer=keras.initializers.Constant(self.init_values), trainable=True)

    def call(self, x):
        return x * self.gamma


KerasLayerScale.__name__ = "LayerScale"


def keras_convnext():
    x = inputs = keras.Input((*SHAPE[1:], SHAPE[0]))
    x = L.Conv2D(8, 2, strides=2)(x)
    x = L.LayerNormalization(epsilon=1e-6)(x)
    y = L.DepthwiseConv2D(7, padding="same")(x)
    y = L.LayerNormalization(epsilon=1e-6)(y)
    y = L.Dense(16, activation="gelu")(y)
    y = KerasLayerScale(1e-6, 8)(L.Dense(8)(y))
    x = L.Add()([x, y])
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(5)(x))


FACTORIES = {("mobile", "torch"): torch_mobile, ("mobile", "mxnet"): gluon_mobile, ("mobile", "keras"): keras_mobile,
             ("convnext", "torch"): torch_convnext, ("convnext", "mxnet"): gluon_convnext,
             ("convnext", "keras"): keras_convnext}


def load_nontrivial(model, framework: str, seed: int) -> None:
    """Seeded weights away from the defaults, written through the canonical layout: PReLU slopes in
    (0.05, 0.5), norm scales in (0.5, 1.5) and shifts in (-0.3, 0.3), BatchNorm statistics away from 0/1."""
    from netparity.backends.tracing import set_canonical_weights, trace

    rng = np.random.default_rng(seed)
    for layer in trace(model, np.zeros((1, *SHAPE), np.float32), framework):
        weights = {}
        for key, shape in layer.weight_shapes().items():
            if layer.kind in ("prelu", "channel_scale"):
                value = rng.uniform(0.05, 0.5, shape)
            elif layer.kind in ("batchnorm", "layernorm") and key in ("weight", "running_var"):
                value = rng.uniform(0.5, 1.5, shape)
            elif key == "weight":
                fan_in = int(np.prod(shape[1:]))
                value = rng.uniform(-1, 1, shape) * np.sqrt(3.0 / fan_in)
            else:
                value = rng.uniform(-0.3, 0.3, shape)
            weights[key] = value.astype(np.float32)
        set_canonical_weights(model, layer, weights)
