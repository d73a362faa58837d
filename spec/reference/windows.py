"""Autodiff operations over sliding kernel windows: convolutions and pooling.

Each is one node of ``autodiff``'s graph with its own backward, vectorised over the batch,
the channels and the pixels; Python loops run over kernel taps at most. Convolutions are
im2col and a matrix product (one strided copy per tap), depthwise ones an einsum over a
window view.
"""

from __future__ import annotations

import threading

import numpy as np

from .autodiff import Tensor, node, as_tensor


def _taps(size: tuple[int, int], kernel, stride, dilation):
    """(i, j, rows, cols) of every kernel tap: the input slice it reads for each output pixel."""
    extent = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    out = [(n - e) // s + 1 for n, e, s in zip(size, extent, stride)]
    return [(i, j, slice(i * dilation[0], i * dilation[0] + (out[0] - 1) * stride[0] + 1, stride[0]),
             slice(j * dilation[1], j * dilation[1] + (out[1] - 1) * stride[1] + 1, stride[1]))
            for i in range(kernel[0]) for j in range(kernel[1])], out


def _window_view(x: np.ndarray, kernel, stride, dilation) -> np.ndarray:
    """(..., OH, OW, kh, kw): every (dilated, strided) kernel window of the last two axes, a view."""
    extent = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilation))
    view = np.lib.stride_tricks.sliding_window_view(x, extent, axis=(-2, -1))
    return view[..., ::stride[0], ::stride[1], ::dilation[0], ::dilation[1]]


def kernel_windows(a, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int] = (1, 1)) -> Tensor:
    """Every (dilated) kernel window over the last two axes: (..., H, W) becomes
    (..., OH, OW, kh, kw), a view of ``a`` (im2col without copying). The backward adds each
    tap's gradient back where the tap read, one strided slice per tap."""
    a = as_tensor(a)
    taps, _ = _taps(a.shape[-2:], kernel, stride, dilation)
    view = _window_view(a.value, kernel, stride, dilation)

    def backward(g):
        grad = np.zeros(a.shape)
        for i, j, rows, cols in taps:
            grad[..., rows, cols] += g[..., i, j]
        return (grad,)

    return node(view, (a,), backward)


_SCRATCH = threading.local()
SCRATCH_LIMIT = 1 << 23  # elements (64 MiB): larger columns are allocated each time


def _scratch(shape) -> np.ndarray:
    """An uninitialised float64 array in this thread's reused buffer: the columns of one product
    at a time, without the page faults of a fresh allocation per convolution (on a loaded
    2-core machine those cost as much as the copy)."""
    size = int(np.prod(shape))
    if size > SCRATCH_LIMIT:
        return np.empty(shape)
    buffer = getattr(_SCRATCH, "buffer", None)
    if buffer is None or buffer.size < size:
        buffer = _SCRATCH.buffer = np.empty(max(size, 1 << 20))
    return buffer[:size].reshape(shape)


def _correlate(x: np.ndarray, w: np.ndarray, stride, dilation, groups: int,
               keep: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(output, columns) of the convolution of values ``x`` (N, C, H, W) and ``w`` (O, C/G, kh, kw):
    im2col (one strided copy per tap) and one matrix product per group, weight (G, O/G, K) @
    columns (N, G, K, OH*OW), K = (C/G)*kh*kw in the weight's own order. The columns live in
    the scratch buffer (valid until the next product) unless ``keep``."""
    n, c, height, width = x.shape
    out_channels, per_group, kh, kw = w.shape
    taps, (out_h, out_w) = _taps((height, width), (kh, kw), stride, dilation)
    if (kh, kw) == (1, 1) and stride == (1, 1):  # the input is its own columns
        cols = x.reshape(n, groups, per_group, height * width)
    else:
        grouped = x.reshape(n, groups, per_group, height, width)
        shape = (n, groups, per_group, kh, kw, out_h, out_w)
        cols = np.empty(shape) if keep else _scratch(shape)
        for i, j, rows, columns in taps:
            cols[:, :, :, i, j] = grouped[..., rows, columns]
        cols = cols.reshape(n, groups, per_group * kh * kw, out_h * out_w)
    out = w.reshape(groups, out_channels // groups, per_group * kh * kw) @ cols
    return out.reshape(n, out_channels, out_h, out_w), cols


def conv2d(a, w, stride: tuple[int, int], dilation: tuple[int, int], groups: int) -> Tensor:
    """Convolution of ``a`` (N, C, H, W), already padded, with ``w`` (O, C/G, kh, kw). One node
    rather than a chain, so that the columns (kh*kw times the input) are kept only when the
    weight's gradient is wanted."""
    a, w = as_tensor(a), as_tensor(w)
    out, cols = _correlate(a.value, w.value, stride, dilation, groups, keep=w.needs_grad)
    kept = cols if w.needs_grad else None
    del cols
    n, c, height, width = a.shape
    out_channels, per_group, kh, kw = w.shape
    out_h, out_w = out.shape[2:]

    def input_gradient(g):
        if stride == (1, 1):
            # the correlation of g, padded by the dilated kernel's extent less one, with the kernel
            # flipped and its channels swapped within each group: im2col and a product again, cheaper
            # than adding kh*kw column gradients back into place
            eh, ew = ((k - 1) * d for k, d in zip((kh, kw), dilation))
            padded = g
            if eh or ew:
                padded = np.zeros((n, out_channels, out_h + 2 * eh, out_w + 2 * ew))
                padded[:, :, eh:eh + out_h, ew:ew + out_w] = g
            flipped = w.value.reshape(groups, out_channels // groups, per_group, kh, kw)[..., ::-1, ::-1]
            flipped = flipped.transpose(0, 2, 1, 3, 4).reshape(c, out_channels // groups, kh, kw)
            return _correlate(padded, flipped, (1, 1), dilation, groups)[0]
        kernel = w.value.reshape(groups, out_channels // groups, per_group * kh * kw)
        dcols = np.swapaxes(kernel, -1, -2) @ g.reshape(n, groups, out_channels // groups, out_h * out_w)
        dcols = dcols.reshape(n, groups, per_group, kh, kw, out_h, out_w)
        grad = np.zeros((n, groups, per_group, height, width))
        for i, j, rows, columns in _taps((height, width), (kh, kw), stride, dilation)[0]:
            grad[..., rows, columns] += dcols[:, :, :, i, j]
        return grad.reshape(a.shape)

    def backward(g):
        ga = input_gradient(g) if a.needs_grad else None
        gw = None
        if w.needs_grad:
            flat = g.reshape(n, groups, out_channels // groups, out_h * out_w)
            gw = (flat @ np.swapaxes(kept, -1, -2)).sum(axis=0).reshape(w.shape)
        return ga, gw

    return node(out, (a, w), backward)


def depthwise_conv(a, w, stride: tuple[int, int], dilation: tuple[int, int]) -> Tensor:
    """A convolution whose every group has one input channel: ``a`` (N, C, H, W), already
    padded, and ``w`` (C*m, kh, kw), output channel c*m + o reading input channel c. An einsum
    over the window view: im2col would copy kh*kw times the input to feed N*C one-row products."""
    a, w = as_tensor(a), as_tensor(w)
    n, c = a.shape[:2]
    multiplier = w.shape[0] // c
    kernel = w.shape[1:]
    x = a.value if multiplier == 1 else np.repeat(a.value, multiplier, axis=1)
    out = np.einsum("nchwij,cij->nchw", _window_view(x, kernel, stride, dilation), w.value)

    def input_gradient(g):
        if stride == (1, 1):  # the correlation of the padded g with the flipped kernel
            eh, ew = ((k - 1) * d for k, d in zip(kernel, dilation))
            padded = np.zeros((*g.shape[:2], g.shape[2] + 2 * eh, g.shape[3] + 2 * ew))
            padded[:, :, eh:eh + g.shape[2], ew:ew + g.shape[3]] = g
            grad = np.einsum("nchwij,cij->nchw", _window_view(padded, kernel, (1, 1), dilation),
                             w.value[:, ::-1, ::-1])
        else:  # each tap's share added back where it read
            grad = np.zeros(x.shape)
            for i, j, rows, cols in _taps(x.shape[2:], kernel, stride, dilation)[0]:
                grad[:, :, rows, cols] += g * w.value[:, i, j, None, None]
        return grad if multiplier == 1 else grad.reshape(n, c, multiplier, *a.shape[2:]).sum(axis=2)

    def backward(g):
        ga = input_gradient(g) if a.needs_grad else None
        gw = np.einsum("nchw,nchwij->cij", g, _window_view(x, kernel, stride, dilation)) if w.needs_grad else None
        return ga, gw

    return node(out, (a, w), backward)


def window_max(a, kernel: tuple[int, int], stride: tuple[int, int]) -> Tensor:
    """The maximum of every kernel window over the last two axes: (..., H, W) becomes
    (..., OH, OW). One pass per tap, strictly greater wins, so the gradient goes to the first
    maximal tap in row-major order, where PyTorch's max pooling sends it."""
    a = as_tensor(a)
    taps, _ = _taps(a.shape[-2:], kernel, stride, (1, 1))
    best = a.value[..., taps[0][2], taps[0][3]].copy()
    winner = np.zeros(best.shape, dtype=np.intp)
    for t, (_, _, rows, cols) in enumerate(taps[1:], start=1):
        candidate = a.value[..., rows, cols]
        better = candidate > best
        np.copyto(best, candidate, where=better)
        winner[better] = t

    def backward(g):
        grad = np.zeros(a.shape)
        for t, (_, _, rows, cols) in enumerate(taps):
            grad[..., rows, cols] += np.where(winner == t, g, 0.0)
        return (grad,)

    return node(best, (a,), backward)
