"""Keras 3 models into netparity specs with canonical weights (issue 11).

``import_model(model, input_shape=None)`` reads a functional or Sequential ``keras.Model``'s
layer graph (it runs nothing), maps each layer exactly onto spec layers, folds the graph into the
spec's blocks (``graph_folding``) keeping Keras' layer names, and moves every variable into the
canonical (PyTorch) layout with backends/keras/layout.py's functions: conv kernels HWIO -> OIHW,
depthwise (kh, kw, C, m) -> (C*m, 1, kh, kw), dense (in, out) -> (out, in) with the rows of an
NHWC Flatten put in (C, H, W) order, BatchNorm momentum as 1 - Keras' momentum. A layer that has
no exact mapping is a ``KerasImportError`` naming it (name and class) and what is supported.

The spec takes NCHW input whatever the Keras model's data format; ``ImportedModel.runner`` runs
the Keras model on the same NCHW batches (transposed for it) and returns its output in the spec's
layout, which is what ``netparity import`` checks the spec against.

Sources for ``netparity import`` (backends/importing.py): ``keras.applications:NAME`` (built with
weights=None: nothing is downloaded), a ``.keras`` file, ``FILE.py:FACTORY`` returning a Keras model.

Importing this package imports no framework; the functions import Keras when called.
"""

from __future__ import annotations

from .graph import KerasImportError

KERAS_APPLICATIONS_PREFIX = "keras.applications:"


def import_model(model, input_shape=None, name: str | None = None, source: str | None = None):
    """``ImportedModel`` (backends/importing.py) of a functional or Sequential Keras 3 model.

    ``input_shape``: None (the model's own, which must be fixed), a square size N, or (C, H, W);
    ``name``: the spec's name (default: the model's); ``source``: what reports call the model."""
    from .model import import_keras_model

    imported = import_keras_model(model, input_shape, name)
    if source is not None:
        imported.source = source
    return imported


def import_application(app_name: str, input_size=None, output=None, name: str | None = None):
    """``keras.applications.APP_NAME(weights=None, input_shape=...)`` imported (``netparity import
    keras.applications:NAME``); ``input_size`` N or (C, H, W), None for the application's default."""
    from .sources import import_application as run

    return run(app_name, input_size, output, name)


def import_keras_file(path, input_size=None, output=None, name: str | None = None):
    """A ``.keras`` file (``keras.saving.load_model``, compile=False, safe mode) imported."""
    from .sources import import_keras_file as run

    return run(path, input_size, output, name)


def import_factory_model(model, input_size=None, output=None, source: str = ""):
    """A Keras model a ``FILE.py:FACTORY`` returned (backends/importing.py ``FACTORY_IMPORTERS``)."""
    from .sources import import_factory_model as run

    return run(model, input_size, output, source)


__all__ = ["KerasImportError", "import_model", "import_application", "import_keras_file", "import_factory_model",
           "KERAS_APPLICATIONS_PREFIX"]
