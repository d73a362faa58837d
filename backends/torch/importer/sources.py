"""Where a PyTorch model comes from for ``netparity import``: ``torchvision:NAME`` and the
``nn.Module`` a ``FILE.py:FACTORY`` returns (backends/importing.py's dispatcher calls these)."""

from __future__ import annotations

import difflib

# torchvision's classification models whose auxiliary classifiers are training-only outputs: built
# without them, since the eval-mode output never uses them (and init_weights as torchvision defaults
# it for weights=None, without its warning)
AUXILIARY = {"googlenet": dict(aux_logits=False, init_weights=True),
             "inception_v3": dict(aux_logits=False, init_weights=True)}


def _source_error(message: str):
    from ...importing import ImportSourceError

    return ImportSourceError(message)


def _no_output(output, source: str) -> None:
    if output is not None:
        raise _source_error(f"{source!r}: --output picks an internal output of an MXNet symbol; a PyTorch model's "
                            "output is what its forward returns (import a module that returns the output you want)")


def _first_conv_channels(model) -> int | None:
    import torch

    return next((m.in_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)), None)


def _input_shape(model, input_size, source: str, default: int | None = None) -> tuple[int, int, int]:
    """(C, H, W) from ``input_size`` (N or (C, H, W)); C of a square size N comes from the first
    convolution; no size at all is ``default`` (torchvision's crop size), else an error."""
    if input_size is None:
        if default is None:
            raise _source_error(f"{source!r}: a PyTorch model does not state its input size; give --input-size N "
                                "(or C,H,W)")
        input_size = default
    if isinstance(input_size, int):
        channels = _first_conv_channels(model)
        if not channels:
            raise _source_error(f"{source!r}: the model's input channels cannot be read from its first Conv2d; give "
                                "the input size as C,H,W")
        return (channels, input_size, input_size)
    return tuple(int(v) for v in input_size)


def import_factory_model(model, input_size=None, output=None, source: str = ""):
    """The ``nn.Module`` a ``FILE.py:FACTORY`` returned."""
    from . import import_model

    _no_output(output, source)
    shape = _input_shape(model, input_size, source)
    return import_model(model, shape, source=source)


def _torchvision_default_size(models, name: str) -> tuple[int | None, tuple[int, int] | None]:
    """torchvision's crop size and stated minimum input for ``name`` (from its weights' metadata,
    read without downloading anything), or None where it states none."""
    try:
        weights = models.get_model_weights(name).DEFAULT
    except (ValueError, AttributeError, KeyError):
        return None, None
    crop = getattr(weights.transforms, "keywords", {}).get("crop_size")
    minimum = weights.meta.get("min_size")
    return (int(crop) if crop else None), (tuple(minimum) if minimum else None)


def import_torchvision(name: str, input_size=None, output=None, spec_name: str | None = None):
    """``torchvision.models.get_model(NAME, weights=None)``: random weights, nothing downloaded;
    at torchvision's own crop size unless ``input_size`` says otherwise."""
    from ...frameworks import FrameworkMissing, is_installed
    from . import import_model

    source = f"torchvision:{name}"
    _no_output(output, source)
    if not is_installed("torchvision"):
        raise FrameworkMissing("torch", "torchvision is not installed: pip install torchvision")
    import torchvision

    models = torchvision.models
    names = models.list_models()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        raise _source_error(f"{source!r}: torchvision {torchvision.__version__} has no model {name!r}"
                            + (f" (did you mean {', '.join(close)}?)" if close else "")
                            + f"; its classification models: {', '.join(models.list_models(module=models))}")
    crop, minimum = _torchvision_default_size(models, name)
    model = models.get_model(name, weights=None, **AUXILIARY.get(name, {}))
    shape = _input_shape(model, input_size, source, default=crop or 224)
    if minimum and (shape[1] < minimum[0] or shape[2] < minimum[1]):
        raise _source_error(f"{source}: input {shape[1]}x{shape[2]} is smaller than the {minimum[0]}x{minimum[1]} "
                            "torchvision states for this model")
    imported = import_model(model, shape, name=spec_name or name, source=source)
    if name in AUXILIARY:
        imported.notes.append(f"built with {', '.join(f'{k}={v}' for k, v in AUXILIARY[name].items())}: the auxiliary "
                              "classifiers are training-only outputs, never part of the eval-mode output")
    return imported


__all__ = ["import_torchvision", "import_factory_model"]
