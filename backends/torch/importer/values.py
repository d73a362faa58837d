"""What an fx node's result stands for while a traced model is mapped to spec layers.

Every tensor-valued node becomes a ``Tensor``: the spec value it holds (the graph node that
computes it, its per-example shape in the spec's channels-first terms) and the memory layout the
source keeps it in, which the spec does not have:

- ``standard``: the spec's own (N, C, H, W) or (N, F);
- ``channels_last``: (N, H, W, C) after ``permute(0, 2, 3, 1)``, where ConvNeXt runs LayerNorm
  and Linear over the channels of each pixel;
- ``grouped`` / ``shuffled``: ShuffleNet's channel shuffle half done, (N, g, C/g, H, W) after the
  view, (N, C/g, g, H, W) after the transpose; the view back to 4-D is the shuffle;
- ``expanded``: a (C, 1, 1) gate after ``expand_as(x)``, (N, C, H, W) in the source; only add and mul
  take it, as the spec broadcasts the gate itself.

Sizes read from a tensor (``x.size(0)``, ``x.shape[1]``) are ``int``s, except the batch size,
which is ``BATCH`` (a model that computes with it is refused where it does). Parameters and
buffers read by ``get_attr`` are ``Param``s.
"""

from __future__ import annotations

from dataclasses import dataclass

Shape = tuple[int, ...]

STANDARD = "standard"
CHANNELS_LAST = "channels_last"
GROUPED = "grouped"
SHUFFLED = "shuffled"
EXPANDED = "expanded"


@dataclass(frozen=True)
class Tensor:
    """A spec value: the output of graph node ``node`` (the graph input's name for the input),
    per-example ``shape`` in the spec's terms, held in ``layout`` (``groups`` for the shuffle's
    layouts)."""

    node: str
    shape: Shape
    layout: str = STANDARD
    groups: int = 0
    expanded_to: Shape = ()  # (H, W) of an expanded gate

    def source_shape(self) -> Shape:
        """The per-example shape the source's tensor has in this layout."""
        if self.layout == CHANNELS_LAST:
            c, h, w = self.shape
            return (h, w, c)
        if self.layout == EXPANDED:
            return (self.shape[0], *self.expanded_to)
        if self.layout in (GROUPED, SHUFFLED):
            c, h, w = self.shape
            g = self.groups
            return (g, c // g, h, w) if self.layout == GROUPED else (c // g, g, h, w)
        return self.shape

    @property
    def rank(self) -> int:
        """The source tensor's number of dimensions, batch included."""
        return len(self.source_shape()) + 1


class _Batch:
    """The batch size: not a number the spec knows."""

    def __repr__(self) -> str:
        return "BATCH"


BATCH = _Batch()


@dataclass(frozen=True)
class Opaque:
    """A value computed from the batch size (``x.size(0) * 2``): refused wherever it is used."""

    why: str


@dataclass(frozen=True)
class Param:
    """A parameter or buffer of the model, read by ``get_attr`` (``qualname`` in the model)."""

    qualname: str
    tensor: object  # torch.Tensor
    trainable: bool

    @property
    def shape(self) -> Shape:
        return tuple(self.tensor.shape)


@dataclass(frozen=True)
class Pieces:
    """``torch.chunk`` / ``split`` of a tensor on the channels: the (start, stop) of each piece;
    picking one (``pieces[i]``) is a ``channel_slice``."""

    source: Tensor
    bounds: tuple[tuple[int, int], ...]
    op: str
