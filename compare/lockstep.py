"""Lockstep dropout: the masks of one minibatch, drawn once with NumPy and handed to
every framework (backends built with ``lockstep_dropout=True`` multiply by them
instead of drawing their own). Imports no framework.
"""

from __future__ import annotations

import numpy as np

from ..backends.training import dropout_rows


def draw_dropout_masks(inference, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One minibatch's scaled dropout and drop_path masks: {spec path: float32 (batch_size, *output shape)}.

    Each entry is 1/(1-p) with probability 1-p and 0 otherwise (inverted
    dropout, as all three frameworks scale), in PyTorch's NCHW / (C, H, W)
    layout. Drawn in execution order from ``rng``, so one generator gives the
    same masks to every framework.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
                        f"got {type(rng).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return {row.path: row.layer.draw_mask(rng, int(batch_size), row.output_shape)
            for row in dropout_rows(inference)}
