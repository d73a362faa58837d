"""One pass of a spec through the reference: weights, mode, masks and captured outputs.

A ``Pass`` walks the spec's layers with ``kinds.REFERENCE``, hands each layer its weights
(as gradient-carrying variables when the caller wants weight gradients), its running
statistics (updated in place in training mode, as PyTorch does on every train-mode
forward) and its dropout masks, and keeps each layer's and block's output by path when asked.
"""

from __future__ import annotations

import numpy as np

from . import autodiff as ad
from .kinds import REFERENCE


class Pass:
    def __init__(self, inference, weights: dict[str, np.ndarray], training: bool,
                 masks: dict[str, np.ndarray] | None = None, draw=None, weight_gradients: bool = False,
                 capture: bool = False):
        """``weights``: canonical key -> float64 array (running statistics are replaced in it
        in training mode). ``masks``: dropout path -> mask; ``draw(layer, batch, shape)``
        draws one for a dropout layer without a given mask. ``weight_gradients``: trainable
        weights become variables (``self.variables``)."""
        self.inference = inference
        self.weights = weights
        self.training = training
        self.masks = masks or {}
        self.draw = draw
        self.weight_gradients = weight_gradients
        self.variables: dict[str, ad.Tensor] = {}
        self.outputs: dict[str, np.ndarray] | None = {} if capture else None

    def __call__(self, x: ad.Tensor) -> ad.Tensor:
        for row in self.inference.top_level():
            x = self.layer(row.layer, row.path, x)
        return x

    def layer(self, layer, path: str, x: ad.Tensor) -> ad.Tensor:
        out = REFERENCE[layer.kind](layer, x, self, path)
        if self.outputs is not None:
            self.outputs[path] = out.value
        return out

    # -- what the kinds ask for ---------------------------------------------------------
    def param(self, path: str, name: str) -> ad.Tensor:
        key = f"{path}.{name}"
        if not self.weight_gradients:
            return ad.Tensor(self.weights[key])
        if key not in self.variables:
            self.variables[key] = ad.variable(self.weights[key])
        return self.variables[key]

    def stat(self, path: str, name: str) -> np.ndarray:
        return self.weights[f"{path}.{name}"]

    def set_stat(self, path: str, name: str, value: np.ndarray) -> None:
        self.weights[f"{path}.{name}"] = value

    def mask(self, path: str, layer, shape) -> np.ndarray:
        if path in self.masks:
            return self.masks[path]
        if self.draw is None:
            raise ValueError(f"no dropout mask for {path} in training mode")
        return np.asarray(self.draw(layer, shape[0], shape[1:]), dtype=np.float64)
