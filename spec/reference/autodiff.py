"""A small reverse-mode autodiff over float64 NumPy arrays: the engine of the reference.

Each operation computes its value and, when an input needs a gradient, records how to send
a gradient back to its inputs; ``gradients`` walks that record backwards. An operation whose
inputs need no gradient records nothing and keeps nothing alive, so a plain forward costs
what NumPy costs. Every operation is vectorised; the operations over kernel windows
(convolutions, pooling) are in ``windows``.
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


def node(value: np.ndarray, parents: tuple[Tensor, ...], backward) -> Tensor:
    """The result of an operation: recorded for the backward pass when a parent needs a gradient."""
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
    return node(a.value + b.value, (a, b),
                 lambda g: (_unbroadcast(g, a.shape) if a.needs_grad else None,
                            _unbroadcast(g, b.shape) if b.needs_grad else None))


def neg(a) -> Tensor:
    a = as_tensor(a)
    return node(-a.value, (a,), lambda g: (-g,))


def mul(a, b) -> Tensor:
    a, b = as_tensor(a), as_tensor(b)
    return node(a.value * b.value, (a, b),
                 lambda g: (_unbroadcast(g * b.value, a.shape) if a.needs_grad else None,
                            _unbroadcast(g * a.value, b.shape) if b.needs_grad else None))


def div(a, b) -> Tensor:
    a, b = as_tensor(a), as_tensor(b)
    return node(a.value / b.value, (a, b),
                 lambda g: (_unbroadcast(g / b.value, a.shape) if a.needs_grad else None,
                            _unbroadcast(-g * a.value / (b.value * b.value), b.shape) if b.needs_grad else None))


def power(a, exponent: float) -> Tensor:
    a = as_tensor(a)
    return node(a.value ** exponent, (a,), lambda g: (g * exponent * a.value ** (exponent - 1),))


def matmul(a, b) -> Tensor:
    """``a @ b`` with NumPy's stacking and broadcasting of leading axes."""
    a, b = as_tensor(a), as_tensor(b)

    def backward(g):
        ga = _unbroadcast(g @ np.swapaxes(b.value, -1, -2), a.shape) if a.needs_grad else None
        gb = _unbroadcast(np.swapaxes(a.value, -1, -2) @ g, b.shape) if b.needs_grad else None
        return ga, gb

    return node(a.value @ b.value, (a, b), backward)


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
    return node(a.value.sum(axis=axes, keepdims=keepdims), (a,),
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

    return node(np.take_along_axis(a.value, index, axis=-1)[..., 0], (a,), backward)


# ---------------------------------------------------------------------------------------
# Moving values around
# ---------------------------------------------------------------------------------------

def reshape(a, shape) -> Tensor:
    a = as_tensor(a)
    return node(a.value.reshape(shape), (a,), lambda g: (g.reshape(a.shape),))


def transpose(a, axes) -> Tensor:
    a = as_tensor(a)
    inverse = tuple(np.argsort(axes))
    return node(a.value.transpose(axes), (a,), lambda g: (g.transpose(inverse),))


def getitem(a, index) -> Tensor:
    """``a[index]`` for basic indexing (slices and integers)."""
    a = as_tensor(a)

    def backward(g):
        grad = np.zeros(a.shape)
        grad[index] = g
        return (grad,)

    return node(a.value[index], (a,), backward)


def concat(tensors, axis: int) -> Tensor:
    tensors = [as_tensor(t) for t in tensors]
    bounds = np.cumsum([t.shape[axis] for t in tensors])[:-1]
    return node(np.concatenate([t.value for t in tensors], axis=axis), tuple(tensors),
                 lambda g: tuple(np.split(g, bounds, axis=axis)))


def pad(a, widths, value: float = 0.0) -> Tensor:
    """Constant padding; ``widths`` holds (before, after) per axis."""
    a = as_tensor(a)
    if not any(before or after for before, after in widths):
        return a
    inside = tuple(slice(before, before + size) for (before, _), size in zip(widths, a.shape))
    padded = np.full(tuple(size + before + after for (before, after), size in zip(widths, a.shape)), value)
    padded[inside] = a.value  # np.pad does the same, several times slower
    return node(padded, (a,), lambda g: (g[inside],))


def where(condition: np.ndarray, a, b) -> Tensor:
    """``a`` where ``condition`` holds, else ``b`` (broadcasting); the gradient follows the pick."""
    a, b = as_tensor(a), as_tensor(b)
    return node(np.where(condition, a.value, b.value), (a, b),
                 lambda g: (_unbroadcast(np.where(condition, g, 0.0), a.shape) if a.needs_grad else None,
                            _unbroadcast(np.where(condition, 0.0, g), b.shape) if b.needs_grad else None))


def clip(a, low: float, high: float) -> Tensor:
    """PyTorch's hardtanh: the gradient passes strictly inside (low, high)."""
    a = as_tensor(a)
    return node(np.clip(a.value, low, high), (a,),
                 lambda g: (np.where((a.value > low) & (a.value < high), g, 0.0),))


# ---------------------------------------------------------------------------------------
# Elementwise functions
# ---------------------------------------------------------------------------------------

def unary(a, value: np.ndarray, slope) -> Tensor:
    """An elementwise function given by its value and its derivative: ``slope()`` returns
    f'(a), computed only when a gradient is asked for."""
    a = as_tensor(a)
    return node(value, (a,), lambda g: (g * slope(),))


def exp(a) -> Tensor:
    a = as_tensor(a)
    value = np.exp(a.value)
    return node(value, (a,), lambda g: (g * value,))


def log(a) -> Tensor:
    a = as_tensor(a)
    return node(np.log(a.value), (a,), lambda g: (g / a.value,))


def tanh(a) -> Tensor:
    a = as_tensor(a)
    value = np.tanh(a.value)
    return node(value, (a,), lambda g: (g * (1.0 - value * value),))


def sigmoid(a) -> Tensor:
    """1 / (1 + exp(-x)), written so that neither branch overflows."""
    a = as_tensor(a)
    small = np.exp(-np.abs(a.value))
    value = np.where(a.value >= 0, 1.0 / (1.0 + small), small / (1.0 + small))
    return node(value, (a,), lambda g: (g * value * (1.0 - value),))
