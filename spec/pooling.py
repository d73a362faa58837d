"""Pooling and resampling geometry, written once with PyTorch's semantics.

Backends that cannot express a PyTorch pooling layer natively (Keras has no
ceil mode, no count_include_pad, no -inf padding; MXNet's ceil mode keeps
windows PyTorch drops) emulate it as: explicit padding, a 'valid' pool, and
for averages a constant per-window correction. The constants come from here
so that every backend reproduces exactly the same function.
"""

from __future__ import annotations

import math

import numpy as np


def pool_output_size(size: int, kernel: int, stride: int, padding: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output length along one axis."""
    span = size + 2 * padding - kernel
    out = (math.ceil(span / stride) if ceil_mode else span // stride) + 1
    # PyTorch drops a last window that would start inside the right padding.
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def pool_padding(size: int, kernel: int, stride: int, padding: int, ceil_mode: bool) -> tuple[int, int]:
    """(before, after) padding that makes a 'valid' pool give PyTorch's windows.

    In ceil mode the last window may run past the symmetric padding; the extra
    length goes after, where PyTorch's kernel clips the window.
    """
    out = pool_output_size(size, kernel, stride, padding, ceil_mode)
    needed = (out - 1) * stride + kernel
    return padding, max(padding, needed - size - padding)


def _divisor_1d(size: int, kernel: int, stride: int, padding: int, ceil_mode: bool,
                count_include_pad: bool) -> np.ndarray:
    out = pool_output_size(size, kernel, stride, padding, ceil_mode)
    start = np.arange(out) * stride - padding
    end_padded = np.minimum(start + kernel, size + padding)
    if count_include_pad:
        return (end_padded - start).astype(np.float64)
    return (np.minimum(end_padded, size) - np.maximum(start, 0)).astype(np.float64)


def avg_pool_divisor(height: int, width: int, kernel: tuple[int, int], stride: tuple[int, int],
                     padding: tuple[int, int], ceil_mode: bool, count_include_pad: bool) -> np.ndarray:
    """The (H_out, W_out) number PyTorch divides each window's sum by."""
    rows = _divisor_1d(height, kernel[0], stride[0], padding[0], ceil_mode, count_include_pad)
    cols = _divisor_1d(width, kernel[1], stride[1], padding[1], ceil_mode, count_include_pad)
    return np.outer(rows, cols)


def adaptive_pool_matrix(size: int, out: int) -> np.ndarray:
    """(out, size) averaging matrix of PyTorch's adaptive average pooling.

    Window i covers [floor(i*size/out), ceil((i+1)*size/out)), so the pool is a
    fixed linear map; backends without an adaptive pool apply it as a matmul.
    """
    matrix = np.zeros((out, size), dtype=np.float64)
    for i in range(out):
        lo = (i * size) // out
        hi = -((-(i + 1) * size) // out)
        matrix[i, lo:hi] = 1.0 / (hi - lo)
    return matrix
