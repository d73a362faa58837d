"""MXNet Gluon's weight layout: the canonical (PyTorch) axes, different names and conventions.

Conv kernels OIHW and dense (out, in) as in PyTorch; Flatten of NCHW keeps (C, H, W) order.
What differs: BatchNorm and LayerNorm call their parameters gamma/beta, PReLU alpha; BatchNorm's
momentum is the weight of the *old* running value (PyTorch's is 1 - it), and its running variance
takes the biased batch variance.

NumPy only: the checkpoint importer uses these facts without MXNet.
"""

from __future__ import annotations

import numpy as np

CHANNELS_LAST = False
RUNNING_VAR_UNBIASED = False

NATIVE_NAMES = {
    "conv2d": {"weight": "weight", "bias": "bias"},
    "dense": {"weight": "weight", "bias": "bias"},
    "batchnorm": {"weight": "gamma", "bias": "beta", "running_mean": "running_mean", "running_var": "running_var"},
    "layernorm": {"weight": "gamma", "bias": "beta"},
    "prelu": {"weight": "alpha"},
    "channel_scale": {"weight": "weight"},
}


def momentum_to_native(momentum: float) -> float:
    """PyTorch's momentum m is MXNet's 1 - m, printed without the binary noise of the subtraction
    (1 - 0.9 is 0.09999999999999998 in binary; the value meant is 0.1)."""
    return float(f"{1.0 - float(momentum):.12g}")


def momentum_to_canonical(momentum: float) -> float:
    return float(f"{1.0 - float(momentum):.12g}")


def flatten_permutation(chw) -> np.ndarray | None:
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
