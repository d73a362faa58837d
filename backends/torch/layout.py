"""PyTorch's weight layout is netparity's canonical one: conv kernels OIHW (out, in/groups, kh, kw),
dense (out, in), flat features in (C, H, W) order, BatchNorm momentum as the weight of the new
batch statistic. Every conversion here is the identity; the functions exist so that code handling
any framework calls the same names (``backends/keras/layout.py`` is where the work is).

NumPy only: importing this module imports no framework.
"""

from __future__ import annotations

import numpy as np

CHANNELS_LAST = False
# nn.BatchNorm updates running_var with the unbiased batch variance (n / (n - 1)); MXNet and Keras
# use the biased one.
RUNNING_VAR_UNBIASED = True

NATIVE_NAMES = {
    "conv2d": {"weight": "weight", "bias": "bias"},
    "dense": {"weight": "weight", "bias": "bias"},
    "batchnorm": {"weight": "weight", "bias": "bias", "running_mean": "running_mean", "running_var": "running_var"},
    "layernorm": {"weight": "weight", "bias": "bias"},
    "prelu": {"weight": "weight"},
    "channel_scale": {"weight": "weight"},
}


def momentum_to_native(momentum: float) -> float:
    return float(momentum)


def momentum_to_canonical(momentum: float) -> float:
    return float(momentum)


def flatten_permutation(chw) -> np.ndarray | None:
    """nn.Flatten of NCHW is already in canonical (C, H, W) order."""
    return None


def conv_kernel_to_native(weight: np.ndarray, depthwise_channels: int | None = None) -> np.ndarray:
    return weight


def conv_kernel_to_canonical(weight: np.ndarray, depthwise_channels: int | None = None) -> np.ndarray:
    return weight


def dense_kernel_to_native(weight: np.ndarray, flat_chw=None) -> np.ndarray:
    return weight


def dense_kernel_to_canonical(weight: np.ndarray, flat_chw=None) -> np.ndarray:
    return weight


def features_to_native(vector: np.ndarray, flat_chw=None) -> np.ndarray:
    return vector


def features_to_canonical(vector: np.ndarray, flat_chw=None) -> np.ndarray:
    return vector
