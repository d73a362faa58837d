"""What a Keras tensor holds, in spec terms: the importer's bookkeeping of layouts.

Every Keras tensor of the source graph is the value of one spec graph node, stored in some
layout: ``Value`` says which node, the node's spec shape (channels first: (C, H, W) or (F,)) and
how the Keras tensor lays that value out:

- ``NHWC``: an image in channels_last order (Keras' default);
- ``NCHW``: an image in channels_first order (the spec's own order);
- ``FLAT``: flat features in the spec's order;
- ``HWC_FLAT``: flat features of a flattened (C, H, W) image in (H, W, C) order, as Keras'
  ``Flatten`` of an NHWC tensor gives them (``chw`` says which image): a dense or batchnorm layer
  reading them has its per-feature weights permuted (backends/keras/layout.py);
- ``INDEXED``: anything else a ``Reshape`` or ``Permute`` made: ``index`` is an array of the Keras
  tensor's per-example shape holding, for each element, the spec value's flat (C, H, W) index.

``standard_layout`` turns an INDEXED value back into one of the four when it is one (a
Reshape -> Permute -> Flatten that undoes an (H, W, C) flattening is no spec layer at all), or
says what channel permutation it is (a ShuffleNet channel shuffle).

NumPy only: the importer's Keras-facing parts live beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ....spec.layers import Shape

NHWC, NCHW, FLAT, HWC_FLAT, INDEXED = "NHWC", "NCHW", "FLAT", "HWC_FLAT", "INDEXED"
IMAGE_LAYOUTS = (NHWC, NCHW)
FLAT_LAYOUTS = (FLAT, HWC_FLAT)

Chw = tuple[int, int, int]


@dataclass(frozen=True)
class Value:
    """The spec value a Keras tensor holds (see the module docstring). ``producer``: the Keras
    layer (or op) that made the tensor, for messages and for nodes made on its behalf later;
    ``uses``: how many Keras calls consume the tensor (a node is folded into its only consumer,
    never into one of several)."""

    node: str
    shape: Shape
    layout: str
    producer: str
    uses: int = 1
    chw: Chw | None = None
    index: np.ndarray | None = None

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3

    def keras_shape(self) -> Shape:
        """The Keras tensor's per-example shape."""
        if self.layout == INDEXED:
            return tuple(self.index.shape)
        if self.layout == NHWC:
            c, h, w = self.shape
            return (h, w, c)
        return self.shape

    def channel_axis(self) -> int | None:
        """The per-example Keras axis (0-based, batch excluded) holding the spec's channels or
        features; None when no single axis does."""
        return {NHWC: 2, NCHW: 0, FLAT: 0, HWC_FLAT: 0}.get(self.layout)

    def with_node(self, node: str, shape: Shape, producer: str, **changes) -> "Value":
        return replace(self, node=node, shape=shape, producer=producer, **changes)


def nhwc_index(chw: Chw) -> np.ndarray:
    """(H, W, C) array of the (C, H, W)-flat index of each element."""
    c, h, w = chw
    return np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0)


def index_of(value: Value) -> np.ndarray:
    """The Keras tensor's per-example array of spec flat indices (see the module docstring)."""
    if value.layout == INDEXED:
        return value.index
    if value.layout == NHWC:
        return nhwc_index(value.shape)
    if value.layout == HWC_FLAT:
        return nhwc_index(value.chw).reshape(-1)
    return np.arange(int(np.prod(value.shape))).reshape(value.shape)


def indexed(value: Value, index: np.ndarray, producer: str, uses: int) -> Value:
    """``value`` re-laid out by ``index`` (a reshape or transpose of ``index_of(value)``), as a
    standard layout when it is one."""
    result = replace(value, layout=INDEXED, index=index, producer=producer, uses=uses)
    layout = standard_layout(result)
    if layout is None:
        return result
    return replace(result, layout=layout, index=None)


def standard_layout(value: Value) -> str | None:
    """NHWC, NCHW, FLAT or HWC_FLAT when ``value``'s index is exactly that layout, else None."""
    if value.layout != INDEXED:
        return value.layout
    index = value.index
    if value.is_image:
        c, h, w = value.shape
        if index.shape == (h, w, c) and np.array_equal(index, nhwc_index(value.shape)):
            return NHWC
        if index.shape == (c, h, w) and np.array_equal(index.reshape(-1), np.arange(index.size)):
            return NCHW
        return None
    if index.ndim == 1:
        if np.array_equal(index, np.arange(index.size)):
            return FLAT
        if value.chw is not None and np.array_equal(index, nhwc_index(value.chw).reshape(-1)):
            return HWC_FLAT
    return None


def channel_permutation(value: Value) -> tuple[str, np.ndarray] | None:
    """For an INDEXED image whose Keras tensor is an NHWC or NCHW layout of the spec image with
    its channels reordered: (that layout, ``perm``) with Keras channel j = spec channel perm[j]."""
    if not value.is_image or value.layout != INDEXED:
        return None
    c, h, w = value.shape
    index = value.index
    if index.shape == (h, w, c):
        perm = index[0, 0, :] // (h * w)
        expected = nhwc_index(value.shape)[:, :, perm]
        layout = NHWC
    elif index.shape == (c, h, w):
        perm = index[:, 0, 0] // (h * w)
        expected = np.arange(c * h * w).reshape(c, h, w)[perm]
        layout = NCHW
    else:
        return None
    if not np.array_equal(index, expected) or not np.array_equal(np.sort(perm), np.arange(c)):
        return None
    return layout, perm


def shuffle_groups(perm: np.ndarray) -> int | None:
    """The ``groups`` of the spec's channel_shuffle (torchvision's: output channel j*g + i is
    input channel i*(C/g) + j) that ``perm`` is, if any."""
    c = perm.size
    for groups in range(2, c):
        if c % groups == 0:
            expected = np.arange(c).reshape(groups, c // groups).T.reshape(-1)
            if np.array_equal(perm, expected):
                return groups
    return None


__all__ = ["Value", "NHWC", "NCHW", "FLAT", "HWC_FLAT", "INDEXED", "IMAGE_LAYOUTS", "FLAT_LAYOUTS", "index_of",
           "indexed", "standard_layout", "channel_permutation", "shuffle_groups", "nhwc_index"]
