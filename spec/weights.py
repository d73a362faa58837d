"""Canonical weights drawn once with NumPy, so that every framework starts equal.

Conv and dense weights are Xavier-uniform (PyTorch's fan convention, which
MXNet's ``Xavier()`` and Keras' ``GlorotUniform`` share), as in the classic
d2l training scripts. For parity checks the biases and BatchNorm statistics
are made non-trivial on purpose: zero biases and unit variances would hide a
missing bias or a misplaced running statistic.
"""

from __future__ import annotations

import numpy as np

from .errors import SpecError
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


def _squeezed(shape) -> tuple[int, ...]:
    return tuple(int(s) for s in shape if s != 1)


def weights_from_ordered(spec: Spec | Inference, arrays) -> dict[str, np.ndarray]:
    """Canonical float32 weights from arrays listed in canonical order (``weight_layout``:
    every layer's parameters, then its running statistics): a PyTorch state_dict's values
    without ``num_batches_tracked``, for a spec whose weights line up with that model.

    An array whose shape differs from its key's is reshaped only when both hold the same
    numbers along the same non-unit axes: torchvision's (C, 1, 1) layer scale becomes (C,), a
    Linear's (out, in) weight a 1x1 conv's (out, in, 1, 1). Anything else, and a count that
    differs, raises SpecError naming the first key that does not fit.
    """
    inference = spec.infer() if isinstance(spec, Spec) else spec
    layout = inference.weight_layout()
    arrays = list(arrays)
    weights: dict[str, np.ndarray] = {}
    for index, ((key, shape), array) in enumerate(zip(layout.items(), arrays)):
        array = np.asarray(array)
        if array.shape != tuple(shape):
            if array.size != int(np.prod(shape)) or _squeezed(array.shape) != _squeezed(shape):
                raise SpecError(key, f"expects shape {tuple(shape)}, but array {index} in order has shape "
                                     f"{array.shape}")
            array = array.reshape(shape)
        weights[key] = np.ascontiguousarray(array, dtype=np.float32)
    if len(arrays) != len(layout):
        keys = list(layout)
        if len(arrays) < len(layout):
            key = keys[len(arrays)]
            raise SpecError(key, f"expects shape {tuple(layout[key])}, but only {len(arrays)} arrays were given "
                                 f"for {len(layout)} canonical weights")
        extra = np.asarray(arrays[len(layout)])
        raise SpecError("weights", f"{len(arrays)} arrays for {len(layout)} canonical weights: array "
                                   f"{len(layout)} (shape {extra.shape}) has no key")
    return weights
