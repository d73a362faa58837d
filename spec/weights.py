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


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def init_weights(spec: Spec | Inference, seed: int = 0, nontrivial: bool = True) -> dict[str, np.ndarray]:
    """float32 weights in the canonical layout (``Inference.weight_layout``).

    ``nontrivial=False`` gives the training start of the d2l scripts: zero
    biases, BatchNorm gamma 1, beta 0, running mean 0 and variance 1.
    """
    inference = spec.infer() if isinstance(spec, Spec) else spec
    rng = np.random.default_rng(seed)
    weights: dict[str, np.ndarray] = {}
    for row in inference.leaves():
        own = dict(row.layer.parameter_shapes(row.input_shape))
        own.update(row.layer.running_stat_shapes(row.input_shape))
        is_norm = row.kind == "batchnorm"
        for name, shape in own.items():
            if name == "weight" and not is_norm:
                fan_in, fan_out = _fans(shape)
                bound = np.sqrt(6.0 / (fan_in + fan_out))
                value = rng.uniform(-bound, bound, shape)
            elif not nontrivial:
                value = np.ones(shape) if name in ("weight", "running_var") else np.zeros(shape)
            elif name in ("weight", "running_var"):  # BatchNorm gamma and variance
                value = rng.uniform(0.5, 1.5, shape)
            else:  # biases, BatchNorm beta and running mean
                value = rng.uniform(-0.2, 0.2, shape)
            weights[f"{row.path}.{name}"] = value.astype(np.float32)
    return weights
