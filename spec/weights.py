"""Canonical weights drawn once with NumPy, so that every framework starts equal.

Conv and dense weights are Xavier-uniform (PyTorch's fan convention, which
MXNet's ``Xavier()`` and Keras' ``GlorotUniform`` share), as in the classic
d2l training scripts. For parity checks the biases and BatchNorm statistics
are made non-trivial on purpose: zero biases and unit variances would hide a
missing bias or a misplaced running statistic.
"""

from __future__ import annotations

import numpy as np

from .model import Inference, Spec


def init_weights(spec: Spec | Inference, seed: int = 0, nontrivial: bool = True) -> dict[str, np.ndarray]:
    """float32 weights in the canonical layout (``Inference.weight_layout``), each drawn by its
    layer kind's ``initial_value``.

    ``nontrivial=False`` gives the training start of the d2l scripts: zero
    biases, BatchNorm gamma 1, beta 0, running mean 0 and variance 1.
    """
    inference = spec.infer() if isinstance(spec, Spec) else spec
    rng = np.random.default_rng(seed)
    weights: dict[str, np.ndarray] = {}
    for row in inference.weight_leaves():
        own = dict(row.layer.parameter_shapes(row.input_shape))
        own.update(row.layer.running_stat_shapes(row.input_shape))
        for name, shape in own.items():
            value = row.layer.initial_value(name, shape, rng, nontrivial)
            weights[f"{row.path}.{name}"] = np.asarray(value, dtype=np.float32)
    return weights
