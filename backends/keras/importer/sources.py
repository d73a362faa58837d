"""Where a Keras model comes from for ``netparity import``: keras.applications, a .keras file, a
factory's model. Each returns an ``ImportedModel`` whose runner is the loaded Keras model."""

from __future__ import annotations

from pathlib import Path

from ...frameworks import import_keras
from .model import import_keras_model


def _source_error(message: str):
    from ...importing import ImportSourceError

    return ImportSourceError(message)


def _keras_input_shape(input_size, channels: int = 3):
    """keras.applications' ``input_shape`` (H, W, C) for ``input_size`` N or (C, H, W)."""
    if input_size is None:
        return None
    if isinstance(input_size, int):
        return (input_size, input_size, channels)
    c, h, w = input_size
    return (h, w, c)


def _no_output(output, source: str) -> None:
    if output is not None:
        raise _source_error(f"{source!r}: --output picks an internal output of an MXNet symbol; a Keras model's "
                            "output is its own (build a keras.Model up to the layer you want and import that)")


def application_names(keras) -> list[str]:
    return sorted(n for n in dir(keras.applications) if n[:1].isupper() and callable(getattr(keras.applications, n)))


def import_application(app_name: str, input_size=None, output=None, name: str | None = None):
    """``keras.applications.APP_NAME(weights=None[, input_shape])``: random weights, nothing
    downloaded; include_top and the application's own preprocessing layers as Keras defaults them."""
    keras = import_keras()
    source = f"keras.applications:{app_name}"
    _no_output(output, source)
    names = application_names(keras)
    if app_name not in names:
        raise _source_error(f"{source!r}: keras.applications has no {app_name!r}; it has {', '.join(names)}")
    kwargs = {"weights": None}
    shape = _keras_input_shape(input_size)
    if shape is not None:
        kwargs["input_shape"] = shape
    try:
        model = getattr(keras.applications, app_name)(**kwargs)
    except ValueError as error:  # keras.applications states its size limits this way
        raise _source_error(f"{source}: {error}") from None
    imported = import_keras_model(model, None, name)
    imported.source = source
    return imported


def import_keras_file(path, input_size=None, output=None, name: str | None = None):
    """A ``.keras`` archive loaded with ``keras.saving.load_model(compile=False)`` (safe mode: no
    Python lambdas run). netparity's own Keras layers are registered first, so a spec built and
    saved by the keras backend loads."""
    from .. import core as keras_backend  # registers netparity's serializable layers

    keras = keras_backend.keras
    path = Path(path)
    _no_output(output, str(path))
    if not path.is_file():
        raise _source_error(f"{str(path)!r}: no such file")
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as error:  # Keras raises ValueError, TypeError, OSError, zipfile errors
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise _source_error(f"{path}: keras.saving.load_model failed: {type(error).__name__}: {first}") from None
    imported = import_keras_model(model, input_size, name or path.stem)
    imported.source = str(path)
    return imported


def import_factory_model(model, input_size=None, output=None, source: str = ""):
    _no_output(output, source)
    imported = import_keras_model(model, input_size)
    imported.source = source or imported.source
    return imported


__all__ = ["import_application", "import_keras_file", "import_factory_model", "application_names"]
