"""The float64 reference of every layer kind: ``REFERENCE[kind](layer, x, run, path)``.

Each function computes its kind's spec definition (spec/layers.py, PyTorch's semantics) from
the primitives of ``autodiff``, on a batch in NCHW (images) or (N, F) (flat features), so
its gradients come from the same code. ``run`` is the ``forward.Pass`` in progress: it hands
out the layer's weights, running statistics and dropout masks, knows the mode, and runs
child layers.
"""

from __future__ import annotations

import math

import numpy as np

from ..pooling import adaptive_pool_matrix, avg_pool_divisor, pool_padding
from . import autodiff as ad
from . import windows
from .erf import erf as erf_values


def per_channel(values, ndim: int):
    """A (C,) vector shaped to broadcast over channel axis 1 of an (N, C) or (N, C, H, W) batch."""
    shape = (-1, 1, 1) if ndim == 4 else (-1,)
    return ad.reshape(values, shape) if isinstance(values, ad.Tensor) else np.reshape(values, shape)


def _image_pads(top: int, bottom: int, left: int, right: int):
    return ((0, 0), (0, 0), (top, bottom), (left, right))


# ---------------------------------------------------------------------------------------
# Convolution, padding, dense
# ---------------------------------------------------------------------------------------

def conv2d(layer, x, run, path):
    """im2col and a matrix product per group; depthwise convolutions tap by tap."""
    kh, kw = layer.kernel
    padded = ad.pad(x, _image_pads(*layer.pads))
    weight = run.param(path, "weight")
    if layer.groups == x.shape[1]:  # depthwise: one input channel per group
        y = windows.depthwise_conv(padded, ad.reshape(weight, (layer.out_channels, kh, kw)), layer.stride, layer.dilation)
    else:
        y = windows.conv2d(padded, weight, layer.stride, layer.dilation, layer.groups)
    return y + per_channel(run.param(path, "bias"), 4) if layer.bias else y


def pad2d(layer, x, run, path):
    return ad.pad(x, _image_pads(*layer.pads))


def crop2d(layer, x, run, path):
    top, bottom, left, right = layer.crops
    h, w = x.shape[2], x.shape[3]
    return ad.getitem(x, (slice(None), slice(None), slice(top, h - bottom), slice(left, w - right)))


def dense(layer, x, run, path):
    y = x @ ad.transpose(run.param(path, "weight"), (1, 0))
    return y + run.param(path, "bias") if layer.bias else y


# ---------------------------------------------------------------------------------------
# Normalisation and per-channel maps
# ---------------------------------------------------------------------------------------

def _normalised(x, axes, eps: float):
    """(x - mean) / sqrt(biased var + eps) over ``axes``, and the batch statistics."""
    mu = ad.mean(x, axes, keepdims=True)
    centered = x - mu
    var = ad.mean(centered * centered, axes, keepdims=True)
    return centered * (var + eps) ** -0.5, mu, var


def batchnorm(layer, x, run, path):
    """Batch statistics in training (biased variance in the output; the running variance
    takes the unbiased one, as PyTorch's does), running statistics in eval mode."""
    axes = (0, 2, 3) if x.ndim == 4 else (0,)
    if run.training:
        count = x.value.size // x.shape[1]
        if count < 2:
            raise ValueError(f"batchnorm at {path}: training needs more than one value per channel "
                             f"(got a batch of shape {x.shape}), as in PyTorch")
        y, mu, var = _normalised(x, axes, layer.eps)
        m = layer.momentum
        running_mean, running_var = run.stat(path, "running_mean"), run.stat(path, "running_var")
        run.set_stat(path, "running_mean", (1 - m) * running_mean + m * mu.value.reshape(-1))
        run.set_stat(path, "running_var", (1 - m) * running_var + m * var.value.reshape(-1) * count / (count - 1))
    else:
        # one multiply and one add over the batch: scale = gamma / sqrt(var + eps) and
        # shift = beta - mean * scale are per-channel vectors
        scale = 1.0 / np.sqrt(run.stat(path, "running_var") + layer.eps)
        if layer.scale:
            scale = run.param(path, "weight") * scale
        shift = -run.stat(path, "running_mean") * scale
        if layer.center:
            shift = shift + run.param(path, "bias")
        return x * per_channel(scale, x.ndim) + per_channel(shift, x.ndim)
    if layer.scale:
        y = y * per_channel(run.param(path, "weight"), x.ndim)
    if layer.center:
        y = y + per_channel(run.param(path, "bias"), x.ndim)
    return y


def layernorm(layer, x, run, path):
    """Over the channels of each pixel (axis 1), or the features of a flat input."""
    y, _, _ = _normalised(x, 1, layer.eps)
    return y * per_channel(run.param(path, "weight"), x.ndim) + per_channel(run.param(path, "bias"), x.ndim)


def prelu(layer, x, run, path):
    return ad.where(x.value > 0, x, x * per_channel(run.param(path, "weight"), x.ndim))


def channel_scale(layer, x, run, path):
    return x * per_channel(run.param(path, "weight"), x.ndim)


def normalize(layer, x, run, path):
    channels = x.shape[1]
    mean_ = np.broadcast_to(np.asarray(layer.mean, dtype=np.float64), (channels,))
    std = np.broadcast_to(np.asarray(layer.std, dtype=np.float64), (channels,))
    return (x - per_channel(mean_, x.ndim)) / per_channel(std, x.ndim)


# ---------------------------------------------------------------------------------------
# Activations (PyTorch's definitions; the gradient at a kink is PyTorch's too)
# ---------------------------------------------------------------------------------------

def _relu6(x):
    return ad.clip(x, 0.0, 6.0)


def _gelu(x, approximate: str):
    if approximate == "tanh":
        inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)
        return 0.5 * x * (1.0 + ad.tanh(inner))
    # x * Phi(x), Phi the normal CDF, with PyTorch's derivative Phi(x) + x * phi(x) in closed
    # form: one node instead of five over the widest tensors of a ConvNeXt
    cdf = 0.5 * (1.0 + erf_values(x.value * (1.0 / math.sqrt(2.0))))
    return ad.unary(x, x.value * cdf,
                    lambda: cdf + x.value * np.exp(-0.5 * x.value * x.value) * (1.0 / math.sqrt(2.0 * math.pi)))


def _softmax(x):
    """Over axis 1: the channels of each pixel, or the features."""
    shifted = x - np.max(x.value, axis=1, keepdims=True)  # a constant shift: softmax is invariant to it
    e = ad.exp(shifted)
    return e / ad.sum_(e, 1, keepdims=True)


ACTIVATIONS = {
    "relu": lambda x, layer: ad.where(x.value > 0, x, 0.0),
    "sigmoid": lambda x, layer: ad.sigmoid(x),
    "tanh": lambda x, layer: ad.tanh(x),
    "leaky_relu": lambda x, layer: ad.where(x.value > 0, x, x * float(layer.negative_slope)),
    "relu6": lambda x, layer: _relu6(x),
    "elu": lambda x, layer: ad.where(x.value > 0, x,
                                     float(layer.alpha) * (ad.exp(ad.where(x.value > 0, 0.0, x)) - 1.0)),
    "silu": lambda x, layer: x * ad.sigmoid(x),
    "hardswish": lambda x, layer: x * _relu6(x + 3.0) * (1.0 / 6.0),
    "hardsigmoid": lambda x, layer: _relu6(x + 3.0) * (1.0 / 6.0),
    "gelu": lambda x, layer: _gelu(x, layer.approximate),
    # log(1 + exp(x)) written as max(x, 0) + log(1 + exp(-|x|)): no overflow for large x. PyTorch's
    # nn.Softplus returns x itself beyond x = 20, 2e-9 away from this (1e-10 of the value).
    "softplus": lambda x, layer: (ad.where(x.value > 0, x, 0.0)
                                  + ad.log(ad.exp(ad.where(x.value > 0, -x, x)) + 1.0)),
    "softmax": lambda x, layer: _softmax(x),
}


def activation(layer, x, run, path):
    return ACTIVATIONS[layer.function](x, layer)


# ---------------------------------------------------------------------------------------
# Pooling
# ---------------------------------------------------------------------------------------

def _pool_padded(layer, x, fill: float):
    """``x`` padded with ``fill`` so that 'valid' windows are PyTorch's (ceil mode included)."""
    h, w = x.shape[2:]
    (top, bottom), (left, right) = (pool_padding(size, k, s, p, layer.ceil_mode)
                                    for size, k, s, p in zip((h, w), layer.kernel, layer.stride, layer.padding))
    return ad.pad(x, _image_pads(top, bottom, left, right), fill)


def maxpool2d(layer, x, run, path):
    return windows.window_max(_pool_padded(layer, x, -np.inf), layer.kernel, layer.stride)


def avgpool2d(layer, x, run, path):
    divisor = avg_pool_divisor(*x.shape[2:], layer.kernel, layer.stride, layer.padding, layer.ceil_mode,
                               layer.count_include_pad)
    return ad.sum_(windows.kernel_windows(_pool_padded(layer, x, 0.0), layer.kernel, layer.stride), (-2, -1)) / divisor


def adaptive_avgpool2d(layer, x, run, path):
    """A fixed linear map per axis: rows (oh, H) @ x @ columns (W, ow)."""
    h, w = x.shape[2:]
    rows = adaptive_pool_matrix(h, layer.output_size[0])
    cols = adaptive_pool_matrix(w, layer.output_size[1]).T
    return ad.matmul(ad.matmul(rows, x), cols)


def _global(layer, pooled):
    return ad.reshape(pooled, (*pooled.shape, 1, 1)) if layer.keepdims else pooled


def global_avgpool(layer, x, run, path):
    return _global(layer, ad.mean(x, (2, 3)))


def global_maxpool(layer, x, run, path):
    return _global(layer, ad.max_last(ad.reshape(x, (*x.shape[:2], -1))))


# ---------------------------------------------------------------------------------------
# Shapes, channels and randomness
# ---------------------------------------------------------------------------------------

def flatten(layer, x, run, path):
    return ad.reshape(x, (x.shape[0], -1))


def masked(layer, x, run, path):
    """dropout and drop_path: the identity in eval mode; in training the input times the mask
    (0 or 1 / (1 - p) per element, or per example for drop_path)."""
    return x * run.mask(path, layer, x.shape) if run.training else x


def identity(layer, x, run, path):
    return x


def channel_shuffle(layer, x, run, path):
    n, c, h, w = x.shape
    grouped = ad.reshape(x, (n, layer.groups, c // layer.groups, h, w))
    return ad.reshape(ad.transpose(grouped, (0, 2, 1, 3, 4)), (n, c, h, w))


def channel_slice(layer, x, run, path):
    return ad.getitem(x, (slice(None), slice(layer.start, layer.stop)))


# ---------------------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------------------

def _children(layer, x, run, path):
    return [run.layer(child, f"{path}.{relative}", x) for relative, child in layer.children()]


def sequence(layer, x, run, path):
    for relative, child in layer.children():
        x = run.layer(child, f"{path}.{relative}", x)
    return x


def _merge(merge: str, outs):
    if merge == "concat":
        return ad.concat(outs, axis=1)
    result = outs[0]
    for out in outs[1:]:  # (N, C, 1, 1) broadcasts over (N, C, H, W)
        result = result + out if merge == "add" else result * out
    return result


def branches(layer, x, run, path):
    return _merge(layer.merge, _children(layer, x, run, path))


def concat_branches(layer, x, run, path):
    return _merge("concat", _children(layer, x, run, path))


def residual(layer, x, run, path):
    body = run.layer(layer.body, f"{path}.body", x)
    skip = x if layer.shortcut is None else run.layer(layer.shortcut, f"{path}.shortcut", x)
    return body + skip


def dense_concat(layer, x, run, path):
    for relative, child in layer.children():
        x = ad.concat([x, run.layer(child, f"{path}.{relative}", x)], axis=1)
    return x


REFERENCE = {
    "conv2d": conv2d, "pad2d": pad2d, "crop2d": crop2d, "batchnorm": batchnorm, "layernorm": layernorm,
    "activation": activation, "prelu": prelu, "channel_scale": channel_scale, "normalize": normalize,
    "maxpool2d": maxpool2d, "avgpool2d": avgpool2d, "adaptive_avgpool2d": adaptive_avgpool2d,
    "global_avgpool": global_avgpool, "global_maxpool": global_maxpool, "flatten": flatten, "dense": dense,
    "dropout": masked, "drop_path": masked, "identity": identity, "channel_shuffle": channel_shuffle,
    "channel_slice": channel_slice, "sequence": sequence, "branches": branches,
    "concat_branches": concat_branches, "residual": residual, "dense_concat": dense_concat,
}
"""Every layer kind's float64 reference; it covers spec.layers.LAYER_KINDS (a test says so)."""
