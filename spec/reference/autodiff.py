"""A small reverse-mode autodiff over float64 NumPy arrays: the engine of the reference.

Each operation computes its value and, when an input needs a gradient, records how to send
a gradient back to its inputs; ``gradients`` walks that record backwards. An operation whose
inputs need no gradient records nothing and keeps nothing alive, so a plain forward costs
what NumPy costs. Every operation is vectorised over the batch and the pixels: the only
Python loop (``windows``' backward) runs over kernel taps.
"""

from __future__ import annotations

import numpy as np


class Tensor:
    """A value and, when it needs a gradient, the operation that made it."""

    __slots__ = ("value", "parents", "backward", "needs_grad")
    __array_ufunc__ = None  # ``ndarray * tensor`` defers to Tensor.__rmul__ instead of looping over elements

    def __init__(self, value: np.ndarray, parents: tuple = (), backward=None, needs_grad: bool = False):
        self.value = value
        self.parents = parents
        self.backward = backward  # gradient of the output -> one gradient (or None) per parent
        self.needs_grad = needs_grad

    @property
    def shape(self) -> tuple[int, ...]:
        return self.value.shape

    @property
    def ndim(self) -> int:
        return self.value.ndim

    def __add__(self, other):
        return add(self, other)

    __radd__ = __add__

    def __sub__(self, other):
        return add(self, neg(other))

    def __rsub__(self, other):
        return add(other, neg(self))

    def __mul__(self, other):
        return mul(self, other)

    __rmul__ = __mul__

    def __truediv__(self, other):
        return div(self, other)

    def __rtruediv__(self, other):
        return div(other, self)

    def __neg__(self):
        return neg(self)

    def __pow__(self, exponent: float):
        return power(self, exponent)

    def __matmul__(self, other):
        return matmul(self, other)

    def __rmatmul__(self, other):
        return matmul(other, self)


def constant(value) -> Tensor:
    """A value no gradient is asked for (inputs, fixed weights, running statistics)."""
    return Tensor(np.asarray(value, dtype=np.float64))


def variable(value) -> Tensor:
    """A value whose gradient ``gradients`` can return."""
    return Tensor(np.asarray(value, dtype=np.float64), needs_grad=True)


def as_tensor(value) -> Tensor:
    return value if isinstance(value, Tensor) else constant(value)


def _node(value: np.ndarray, parents: tuple[Tensor, ...], backward) -> Tensor:
    if any(p.needs_grad for p in parents):
        return Tensor(value, parents, backward, True)
    return Tensor(value)


# ---------------------------------------------------------------------------------------
# The backward pass
# ---------------------------------------------------------------------------------------

def _topological(output: Tensor) -> list[Tensor]:
    """Every node that needs a gradient, each after all of its parents."""
    order, visited = [], set()
    stack = [(output, False)]
    while stack:  # depth-first, a node listed once all of its parents are
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        stack.extend((parent, False) for parent in node.parents
                     if parent.needs_grad and id(parent) not in visited)
    return order


def gradients(output: Tensor, seed, wrt: list[Tensor]) -> list[np.ndarray]:
    """d(sum(output * seed)) / d each tensor of ``wrt`` (zeros for one the output does not use)."""
    seed = np.broadcast_to(np.asarray(seed, dtype=np.float64), output.shape)
    if not output.needs_grad:
        return [np.zeros(t.shape) for t in wrt]
    wanted = {id(t) for t in wrt}
    pending: dict[int, np.ndarray] = {id(output): seed}
    found: dict[int, np.ndarray] = {}
    for node in reversed(_topological(output)):
        grad = pending.pop(id(node), None)
        if grad is None:
            continue
        if id(node) in wanted:
            found[id(node)] = grad
        if node.backward is None:
            continue
        for parent, parent_grad in zip(node.parents, node.backward(grad)):
            if parent_grad is None or not parent.needs_grad:
                continue
            key = id(parent)
            # not +=: one backward may hand the same array to two parents
            pending[key] = pending[key] + parent_grad if key in pending else parent_grad
    return [np.array(found[id(t)]) if id(t) in found else np.zeros(t.shape) for t in wrt]


# ---------------------------------------------------------------------------------------
# Arithmetic with NumPy broadcasting
# ---------------------------------------------------------------------------------------

def _unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum a gradient over the axes NumPy broadcast ``shape`` along."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, size in enumerate(shape) if size == 1 and grad.shape[i] != 1)
    return grad.sum(axis=axes, keepdims=True) if axes else grad


def add(a, b) -> Tensor:
    a, b = as_tensor(a), as_tensor(b)
    return _node(a.value + b.value, (a, b),
                 lambda g: (_unbroadcast(g, a.shape) if a.needs_grad else None,
                            _unbroadcast(g, b.shape) if b.needs_grad else None))


def neg(a) -> Tensor:
    a = as_tensor(a)
    return _node(-a.value, (a,), lambda g: (-g,))


def mul(a, b) -> Tensor:
    a, b = as_tensor(a), as_tensor(b)
    return _node(a.value * b.value, (a, b),
                 lambda g: (_unbroadcast(g * b.value, a.shape) if a.needs_grad else None,
                            _unbroadcast(g * a.value, b.shape) if b.needs_grad else None))


def div(a, b) -> Tensor:
    a, b = as_tensor(a), as_tensor(b)
    return _node(a.value / b.value, (a, b),
                 lambda g: (_unbroadcast(g / b.value, a.shape) if a.needs_grad else None,
                            _unbroadcast(-g * a.value / (b.value * b.value), b.shape) if b.needs_grad else None))


def power(a, exponent: float) -> Tensor:
    a = as_tensor(a)
    return _node(a.value ** exponent, (a,), lambda g: (g * exponent * a.value ** (exponent - 1),))


def matmul(a, b) -> Tensor:
    """``a @ b`` with NumPy's stacking and broadcasting of leading axes."""
    a, b = as_tensor(a), as_tensor(b)

    def backward(g):
        ga = _unbroadcast(g @ np.swapaxes(b.value, -1, -2), a.shape) if a.needs_grad else None
        gb = _unbroadcast(np.swapaxes(a.value, -1, -2) @ g, b.shape) if b.needs_grad else None
        return ga, gb

    return _node(a.value @ b.value, (a, b), backward)


# ---------------------------------------------------------------------------------------
# Reductions
# ---------------------------------------------------------------------------------------

def _axes(axis, ndim: int) -> tuple[int, ...]:
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(a % ndim for a in axes)


def sum_(a, axis, keepdims: bool = False) -> Tensor:
    a = as_tensor(a)
    axes = _axes(axis, a.ndim)
    kept = tuple(1 if i in axes else s for i, s in enumerate(a.shape))
    return _node(a.value.sum(axis=axes, keepdims=keepdims), (a,),
                 lambda g: (np.broadcast_to(g.reshape(kept), a.shape),))


def mean(a, axis, keepdims: bool = False) -> Tensor:
    a = as_tensor(a)
    count = int(np.prod([a.shape[i] for i in _axes(axis, a.ndim)]))
    return sum_(a, axis, keepdims) / float(count)


def max_last(a) -> Tensor:
    """The maximum over the last axis; its gradient goes to the first maximal entry, as
    PyTorch's max pooling sends it."""
    a = as_tensor(a)
    index = np.argmax(a.value, axis=-1)[..., None]

    def backward(g):
        grad = np.zeros(a.shape)
        np.put_along_axis(grad, index, g[..., None], axis=-1)
        return (grad,)

    return _node(np.take_along_axis(a.value, index, axis=-1)[..., 0], (a,), backward)


# ---------------------------------------------------------------------------------------
# Moving values around
# ---------------------------------------------------------------------------------------

def reshape(a, shape) -> Tensor:
    a = as_tensor(a)
    return _node(a.value.reshape(shape), (a,), lambda g: (g.reshape(a.shape),))


def transpose(a, axes) -> Tensor:
    a = as_tensor(a)
    inverse = tuple(np.argsort(axes))
    return _node(a.value.transpose(axes), (a,), lambda g: (g.transpose(inverse),))


def getitem(a, index) -> Tensor:
    """``a[index]`` for basic indexing (slices and integers)."""
    a = as_tensor(a)

    def backward(g):
        grad = np.zeros(a.shape)
        grad[index] = g
        return (grad,)

    return _node(a.value[index], (a,), backward)


def concat(tensors, axis: int) -> Tensor:
    tensors = [as_tensor(t) for t in tensors]
    bounds = np.cumsum([t.shape[axis] for t in tensors])[:-1]
    return _node(np.concatenate([t.value for t in tensors], axis=axis), tuple(tensors),
                 lambda g: tuple(np.split(g, bounds, axis=axis)))


def pad(a, widths, value: float = 0.0) -> Tensor:
    """Constant padding; ``widths`` holds (before, after) per axis."""
    a = as_tensor(a)
    if not any(before or after for before, after in widths):
        return a
    inside = tuple(slice(before, before + size) for (before, _), size in zip(widths, a.shape))
    padded = np.full(tuple(size + before + after for (before, after), size in zip(widths, a.shape)), value)
    padded[inside] = a.value  # np.pad does the same, several times slower
    return _node(padded, (a,), lambda g: (g[inside],))


def _taps(size: tuple[int, int], kernel, stride, dilation):
    """(i, j, rows, cols) of every kernel tap: the input slice it reads for each output pixel."""
    extent = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    out = [(n - e) // s + 1 for n, e, s in zip(size, extent, stride)]
    return [(i, j, slice(i * dilation[0], i * dilation[0] + (out[0] - 1) * stride[0] + 1, stride[0]),
             slice(j * dilation[1], j * dilation[1] + (out[1] - 1) * stride[1] + 1, stride[1]))
            for i in range(kernel[0]) for j in range(kernel[1])], out


def windows(a, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int] = (1, 1)) -> Tensor:
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

    return _node(view, (a,), backward)


def _correlate(x: np.ndarray, w: np.ndarray, stride, dilation, groups: int) -> tuple[np.ndarray, np.ndarray]:
    """(output, columns) of the convolution of values ``x`` (N, C, H, W) and ``w`` (O, C/G, kh, kw):
    im2col (one strided copy per tap) and one matrix product per group, weight (G, O/G, K) @
    columns (N, G, K, OH*OW), K = (C/G)*kh*kw in the weight's own order."""
    n, c, height, width = x.shape
    out_channels, per_group, kh, kw = w.shape
    taps, (out_h, out_w) = _taps((height, width), (kh, kw), stride, dilation)
    if (kh, kw) == (1, 1) and stride == (1, 1):  # the input is its own columns
        cols = x.reshape(n, groups, per_group, height * width)
    else:
        grouped = x.reshape(n, groups, per_group, height, width)
        cols = np.empty((n, groups, per_group, kh, kw, out_h, out_w))
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
    out, cols = _correlate(a.value, w.value, stride, dilation, groups)
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

    return _node(out, (a, w), backward)


def _window_view(x: np.ndarray, kernel, stride, dilation) -> np.ndarray:
    """(..., OH, OW, kh, kw): every (dilated, strided) kernel window of the last two axes, a view."""
    extent = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilation))
    view = np.lib.stride_tricks.sliding_window_view(x, extent, axis=(-2, -1))
    return view[..., ::stride[0], ::stride[1], ::dilation[0], ::dilation[1]]


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

    return _node(out, (a, w), backward)


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

    return _node(best, (a,), backward)


def where(condition: np.ndarray, a, b) -> Tensor:
    """``a`` where ``condition`` holds, else ``b`` (broadcasting); the gradient follows the pick."""
    a, b = as_tensor(a), as_tensor(b)
    return _node(np.where(condition, a.value, b.value), (a, b),
                 lambda g: (_unbroadcast(np.where(condition, g, 0.0), a.shape) if a.needs_grad else None,
                            _unbroadcast(np.where(condition, 0.0, g), b.shape) if b.needs_grad else None))


def clip(a, low: float, high: float) -> Tensor:
    """PyTorch's hardtanh: the gradient passes strictly inside (low, high)."""
    a = as_tensor(a)
    return _node(np.clip(a.value, low, high), (a,),
                 lambda g: (np.where((a.value > low) & (a.value < high), g, 0.0),))


# ---------------------------------------------------------------------------------------
# Elementwise functions
# ---------------------------------------------------------------------------------------

def unary(a, value: np.ndarray, slope) -> Tensor:
    """An elementwise function given by its value and its derivative: ``slope()`` returns
    f'(a), computed only when a gradient is asked for."""
    a = as_tensor(a)
    return _node(value, (a,), lambda g: (g * slope(),))


def exp(a) -> Tensor:
    a = as_tensor(a)
    value = np.exp(a.value)
    return _node(value, (a,), lambda g: (g * value,))


def log(a) -> Tensor:
    a = as_tensor(a)
    return _node(np.log(a.value), (a,), lambda g: (g / a.value,))


def tanh(a) -> Tensor:
    a = as_tensor(a)
    value = np.tanh(a.value)
    return _node(value, (a,), lambda g: (g * (1.0 - value * value),))


def sigmoid(a) -> Tensor:
    """1 / (1 + exp(-x)), written so that neither branch overflows."""
    a = as_tensor(a)
    small = np.exp(-np.abs(a.value))
    value = np.where(a.value >= 0, 1.0 / (1.0 + small), small / (1.0 + small))
    return _node(value, (a,), lambda g: (g * value * (1.0 - value),))
