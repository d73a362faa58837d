"""Arithmetic cost of a spec, from the spec alone (no framework).

Counted: multiply-accumulates (MACs) of every ``conv2d`` and ``dense`` layer,
per image::

    conv2d: out_C * out_H * out_W * (in_C / groups) * kh * kw
    dense:  in_features * out_features

Depthwise and grouped convolutions count through ``groups``; dilation spreads the
kernel's taps apart without adding any, so it changes only the output size.

Not counted: bias adds, BatchNorm, LayerNorm, activations (PReLU, GELU, ...),
pooling, per-channel scales, the merges of residual and ``branches`` blocks
(squeeze-and-excitation's gating multiply included) and concatenations. They are memory-bound and cost little arithmetic; leaving them
out is the usual convention (torchvision's published "GFLOPS" for ResNet-18,
1.81, are these MACs of convs and the fc layer).

Totals: ``forward_flops_per_image = 2 * macs_per_image`` (one multiply and one
add per MAC); ``train_flops_per_image = 3 * forward_flops_per_image``, the
usual convention for forward + backward (the backward computes the gradient of
the input and of the weights, each about one forward). The update itself
(SGD, a few FLOPs per parameter) is not counted.
"""

from __future__ import annotations

from dataclasses import dataclass

from .layers import Conv2d, Dense
from .model import Inference, Spec

FORWARD_FLOPS_PER_MAC = 2
TRAIN_FLOPS_PER_FORWARD = 3


@dataclass(frozen=True)
class LayerFlops:
    path: str
    kind: str
    macs: int


@dataclass(frozen=True)
class FlopCount:
    """Per-image cost of one spec at one input shape."""

    input_shape: tuple[int, ...]
    layers: tuple[LayerFlops, ...]

    @property
    def macs_per_image(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def forward_flops_per_image(self) -> int:
        return FORWARD_FLOPS_PER_MAC * self.macs_per_image

    @property
    def train_flops_per_image(self) -> int:
        return TRAIN_FLOPS_PER_FORWARD * self.forward_flops_per_image

    def flops_per_image(self, mode: str) -> int:
        """``mode`` is "train" or "infer"."""
        if mode == "train":
            return self.train_flops_per_image
        if mode == "infer":
            return self.forward_flops_per_image
        raise ValueError(f"mode must be 'train' or 'infer', got {mode!r}")

    def to_dict(self) -> dict:
        return {"input_shape": list(self.input_shape), "macs_per_image": self.macs_per_image,
                "forward_flops_per_image": self.forward_flops_per_image,
                "train_flops_per_image": self.train_flops_per_image,
                "layers": [{"path": l.path, "kind": l.kind, "macs": l.macs} for l in self.layers]}


def layer_macs(layer, input_shape, output_shape) -> int:
    """MACs of one leaf layer per image (0 for kinds that are not counted)."""
    if isinstance(layer, Conv2d):
        out_c, out_h, out_w = output_shape
        kh, kw = layer.kernel
        return out_c * out_h * out_w * (input_shape[0] // layer.groups) * kh * kw
    if isinstance(layer, Dense):
        return input_shape[0] * output_shape[0]
    return 0


def flops(spec_or_inference: "Spec | Inference") -> FlopCount:
    """Per-layer MACs and per-image totals of a spec (at its own input shape) or of an inference."""
    inference = spec_or_inference.infer() if isinstance(spec_or_inference, Spec) else spec_or_inference
    layers = tuple(LayerFlops(r.path, r.kind, layer_macs(r.layer, r.input_shape, r.output_shape))
                   for r in inference.leaves() if isinstance(r.layer, (Conv2d, Dense)))
    return FlopCount(tuple(inference.input_shape), layers)


__all__ = ["flops", "FlopCount", "LayerFlops", "layer_macs"]
