"""Keras 3's weight layout (channels_last), against the canonical (PyTorch) one. Written once here
and used by the builder (``core``), the port tracer, the importer and the emitter.

- Conv2D kernels are HWIO (kh, kw, in/groups, out); DepthwiseConv2D's are (kh, kw, C, multiplier),
  where PyTorch's output channel c * multiplier + m is Keras' [:, :, c, m].
- Dense kernels are (in, out). Flatten of an NHWC map orders features (H, W, C): the rows of the
  dense layer after it, and every per-feature vector of a layer on that flat input (BatchNorm,
  LayerNorm, PReLU, channel scale), are permuted into (C, H, W) order.
- BatchNormalization's momentum is the weight of the old running value (PyTorch's is 1 - it) and
  its running variance takes the biased batch variance; its variables are gamma, beta,
  moving_mean, moving_variance.

NumPy only: importing this module imports no framework.
"""

from __future__ import annotations

import numpy as np

CHANNELS_LAST = True
RUNNING_VAR_UNBIASED = False

NATIVE_NAMES = {
    "conv2d": {"weight": "kernel", "bias": "bias"},  # Conv2D and DepthwiseConv2D alike
    "dense": {"weight": "kernel", "bias": "bias"},
    "batchnorm": {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
                  "running_var": "moving_variance"},
    "layernorm": {"weight": "gamma", "bias": "beta"},
    "prelu": {"weight": "alpha"},
    "channel_scale": {"weight": "gamma"},
}


def momentum_to_native(momentum: float) -> float:
    """PyTorch's momentum m is Keras' 1 - m, without the binary noise of the subtraction."""
    return float(f"{1.0 - float(momentum):.12g}")


def momentum_to_canonical(momentum: float) -> float:
    return float(f"{1.0 - float(momentum):.12g}")


def flatten_permutation(chw) -> np.ndarray | None:
    """``perm[j]`` = the (C, H, W)-flat index of the j-th feature of Keras' (H, W, C) flattening."""
    c, h, w = (int(v) for v in chw)
    return np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)


def conv_kernel_to_native(weight: np.ndarray, depthwise_channels: int | None = None) -> np.ndarray:
    """OIHW -> HWIO (grouped: (kh, kw, in/groups, out)); for a DepthwiseConv2D over
    ``depthwise_channels`` inputs, (C * multiplier, 1, kh, kw) -> (kh, kw, C, multiplier)."""
    if depthwise_channels:
        return weight.reshape(depthwise_channels, -1, *weight.shape[2:]).transpose(2, 3, 0, 1)
    return weight.transpose(2, 3, 1, 0)


def conv_kernel_to_canonical(weight: np.ndarray, depthwise_channels: int | None = None) -> np.ndarray:
    """HWIO -> OIHW; a DepthwiseConv2D's (kh, kw, C, multiplier) -> (C * multiplier, 1, kh, kw)."""
    if depthwise_channels:
        kh, kw, channels, multiplier = weight.shape
        return weight.transpose(2, 3, 0, 1).reshape(channels * multiplier, 1, kh, kw)
    return weight.transpose(3, 2, 0, 1)


def dense_kernel_to_native(weight: np.ndarray, flat_chw=None) -> np.ndarray:
    """(out, in) -> (in, out), the input rows into (H, W, C) order when the input is a flattened map."""
    if flat_chw is None:
        return weight.T
    c, h, w = flat_chw
    return weight.reshape(-1, c, h, w).transpose(2, 3, 1, 0).reshape(h * w * c, -1)


def dense_kernel_to_canonical(weight: np.ndarray, flat_chw=None) -> np.ndarray:
    if flat_chw is None:
        return weight.T
    c, h, w = flat_chw
    return weight.reshape(h, w, c, -1).transpose(3, 2, 0, 1).reshape(-1, c * h * w)


def features_to_native(vector: np.ndarray, flat_chw=None) -> np.ndarray:
    """A per-feature vector of a flattened (C, H, W) map in Keras' (H, W, C) order."""
    if flat_chw is None:
        return vector
    c, h, w = flat_chw
    return vector.reshape(c, h, w).transpose(1, 2, 0).reshape(-1)


def features_to_canonical(vector: np.ndarray, flat_chw=None) -> np.ndarray:
    if flat_chw is None:
        return vector
    c, h, w = flat_chw
    return vector.reshape(h, w, c).transpose(2, 0, 1).reshape(-1)
