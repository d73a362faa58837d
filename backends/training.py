"""NumPy helpers shared by the backends' training functions.

The argument checks of ``make_optimizer`` and ``train_step`` (so that the three
backends refuse the same inputs with the same words), the SGD momentum-state
conversions, and the checkpoint file: one ``.npz`` holding canonical weights,
the momentum buffers in the canonical layout, the learning rate and (where a
framework can restore it) its RNG state, written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..spec.files import atomic_writer
from .common import BackendError, as_input, record_of

CHECKPOINT_FORMAT = "netparity.checkpoint/1"

# How a framework stores the SGD momentum state. PyTorch keeps buf (the lr is
# applied outside it: p -= lr * buf); MXNet and Keras keep -lr * buf (p += state).
STATE_FORMS = ("buf", "neg_lr_buf")


def _inference(spec_or_inference):
    return spec_or_inference.infer() if hasattr(spec_or_inference, "infer") else spec_or_inference


def dropout_rows(inference) -> list:
    """The rows whose training output is random (dropout, drop_path) of a Spec's Inference (or
    of a Spec), in execution order: the layers that take lockstep masks."""
    return [row for row in _inference(inference).execution_order() if row.layer.random_in_training]


# ---------------------------------------------------------------------------------------
# Argument checks shared by the backends' training functions
# ---------------------------------------------------------------------------------------

def check_dropout_masks(inference, masks, batch_size: int, lockstep: bool, backend: str,
                        error=ValueError) -> dict[str, np.ndarray]:
    """The masks a ``train_step`` was given, checked: {path: float32 array}; {} without lockstep."""
    if not lockstep:
        if masks is not None:
            raise error(f"{backend}: dropout_masks were given but the model was built without "
                        "lockstep_dropout=True; its dropout layers draw their own masks")
        return {}
    rows = dropout_rows(inference)
    if masks is None:
        if rows:
            raise error(f"{backend}: the model was built with lockstep_dropout=True, so train_step needs "
                        f"dropout_masks for {', '.join(r.path for r in rows)} "
                        "(netparity.compare.lockstep.draw_dropout_masks)")
        return {}
    expected = {row.path: (int(batch_size), *row.output_shape) for row in rows}
    missing = [p for p in expected if p not in masks]
    unexpected = [p for p in masks if p not in expected]
    if missing or unexpected:
        parts = [f"missing {', '.join(missing)}"] if missing else []
        if unexpected:
            parts.append(f"not dropout layers of this spec: {', '.join(map(str, unexpected))}")
        raise error(f"{backend}: dropout_masks do not fit the model: " + "; ".join(parts))
    checked = {}
    for path, shape in expected.items():
        value = np.asarray(masks[path])
        if value.shape != shape:
            raise error(f"{backend}: the dropout mask for {path} has shape {value.shape}, "
                        f"the batch needs {shape}")
        checked[path] = np.ascontiguousarray(value, dtype=np.float32)
    return checked


def check_labels(y, batch_size: int, classes: int, backend: str, error=ValueError) -> np.ndarray:
    """Integer class labels, one per example, in [0, classes); returned as int64."""
    y = np.asarray(y)
    if y.shape != (batch_size,):
        raise error(f"{backend}: labels of shape {y.shape} do not fit a batch of {batch_size} "
                    f"(expected ({batch_size},))")
    if y.dtype.kind not in "iu":
        raise error(f"{backend}: labels must be integers (int64), got dtype {y.dtype}")
    if y.size:
        low, high = y.min(), y.max()
        if low < 0 or high >= classes:
            raise error(f"{backend}: labels must lie in [0, {classes}), got [{low}, {high}]")
    return y.astype(np.int64, copy=False)  # every step passes here: no copy when already int64


def check_sgd(lr, momentum, weight_decay, backend: str, error=ValueError) -> tuple[float, float, float]:
    """SGD hyper-parameters as floats. lr must be positive: MXNet and Keras fold lr into
    their momentum state, and a state scaled by lr 0 cannot be rescaled to PyTorch's."""
    values = []
    for name, value in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise error(f"{backend}: {name} must be a number, got {value!r}") from None
        if not np.isfinite(value):
            raise error(f"{backend}: {name} must be finite, got {value!r}")
        values.append(value)
    lr, momentum, weight_decay = values
    if lr <= 0:
        raise error(f"{backend}: lr must be positive, got {lr!r} (MXNet and Keras keep lr inside "
                    "their momentum state, so lr 0 cannot follow PyTorch's SGD)")
    if not 0 <= momentum <= 1:
        raise error(f"{backend}: momentum must be in [0, 1] (Keras' SGD refuses others), got {momentum!r}")
    if weight_decay < 0:
        raise error(f"{backend}: weight_decay must be >= 0, got {weight_decay!r}")
    return lr, momentum, weight_decay


def rescale_state(value: np.ndarray, factor: float) -> np.ndarray:
    """``value * factor`` rounded once to float32 (the product is taken in float64)."""
    return (np.asarray(value, dtype=np.float64) * factor).astype(np.float32)


def convert_state(value: np.ndarray, from_form: str, to_form: str, lr: float) -> np.ndarray:
    """A momentum state from one framework's form into another's (buf = -state / lr)."""
    if from_form not in STATE_FORMS or to_form not in STATE_FORMS:
        raise ValueError(f"unknown momentum state form {from_form!r} or {to_form!r}")
    if from_form == to_form:
        return np.asarray(value, dtype=np.float32)
    return rescale_state(value, -lr if to_form == "neg_lr_buf" else -1.0 / lr)


# ---------------------------------------------------------------------------------------
# Checkpoint files
# ---------------------------------------------------------------------------------------

def write_checkpoint(path, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    """One .npz at ``path`` (exactly that name): ``meta`` as JSON plus the arrays.

    Written to a temporary file in the same folder, fsynced and renamed over
    ``path``, so a reader never sees half a checkpoint and a crash keeps the old one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if "meta" in arrays:
        raise ValueError("'meta' is reserved in a checkpoint")
    payload = {"meta": np.array(json.dumps({"format": CHECKPOINT_FORMAT, **meta}, sort_keys=True))}
    payload.update({key: np.asarray(value) for key, value in arrays.items()})
    with atomic_writer(path, "wb") as stream:
        np.savez(stream, **payload)


def read_checkpoint(path, backend: str, error=ValueError) -> tuple[dict, dict[str, np.ndarray]]:
    """(meta, arrays) of a checkpoint written by ``write_checkpoint``."""
    try:
        with np.load(Path(path), allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError) as failure:
        raise error(f"{backend}: cannot read checkpoint {path}: {failure}") from None
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except (KeyError, json.JSONDecodeError):
        raise error(f"{backend}: {path} is not a netparity checkpoint (no readable 'meta')") from None
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise error(f"{backend}: {path} has format {meta.get('format')!r}, not {CHECKPOINT_FORMAT!r}")
    return meta, arrays


def section(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The arrays under ``prefix/`` with the prefix removed (``weights``, ``state``, ``rng``)."""
    start = prefix + "/"
    return {key[len(start):]: value for key, value in arrays.items() if key.startswith(start)}


def check_resume(meta: dict, momentum: float, weight_decay: float, backend: str, error=ValueError) -> None:
    """A checkpoint resumes only into an optimizer with its momentum and weight decay."""
    for name, have in (("momentum", momentum), ("weight_decay", weight_decay)):
        if float(meta[name]) != have:
            raise error(f"{backend}: the checkpoint was written with {name} {meta[name]!r}, this optimizer "
                        f"has {have!r}; make_optimizer with the checkpoint's values")


# ---------------------------------------------------------------------------------------
# What every backend's optimizer and train_step share
# ---------------------------------------------------------------------------------------

class SGDOptimizer:
    """A framework's SGD (``native``) over a model's trainable weights in canonical order.

    Backends subclass it to say where the learning rate and momentum state live."""

    backend = ""

    def __init__(self, model, native, keys: list[str], momentum: float, weight_decay: float):
        self.model = model
        self.native = native
        self.keys = keys  # canonical key of the native optimizer's parameter i
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.steps = 0


def check_optimizer(model, optimizer, backend: str) -> None:
    if not isinstance(optimizer, SGDOptimizer) or optimizer.backend != backend:
        raise BackendError(f"{backend}: expected an optimizer from this backend's make_optimizer, "
                           f"got {type(optimizer).__name__}")
    if optimizer.model is not model:
        raise BackendError(f"{backend}: this optimizer was made for another model")


def prepare_step(model, optimizer, x, y, dropout_masks, backend: str):
    """The checked inputs of one ``train_step``: (record, NCHW batch, labels, masks)."""
    record = record_of(model, backend)
    check_optimizer(model, optimizer, backend)
    batch = as_input(x, record, backend)
    if len(record.inference.output_shape) != 1:
        raise BackendError(f"{backend}: training needs flat logits; spec {record.spec.name!r} outputs "
                           f"{record.inference.output_shape}")
    size = batch.shape[0]
    labels = check_labels(y, size, record.inference.output_shape[0], backend, BackendError)
    masks = check_dropout_masks(record.inference, dropout_masks, size, record.extra.get("lockstep_dropout", False),
                                backend, BackendError)
    return record, batch, labels, masks


def restore_weights(model, optimizer, path, backend: str, error, set_weights) -> tuple[dict, dict]:
    """The start every backend's ``load_checkpoint`` shares: check the optimizer, read the file,
    check that it can resume with this optimizer, restore the weights. Returns (meta, arrays);
    the momentum state and RNGs are the backend's to restore."""
    check_optimizer(model, optimizer, backend)
    meta, arrays = read_checkpoint(path, backend, error)
    check_resume(meta, optimizer.momentum, optimizer.weight_decay, backend, error)
    set_weights(model, section(arrays, "weights"))
    return meta, arrays
