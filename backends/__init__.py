"""netparity.backends: one package per framework (``torch/``, ``mxnet/``, ``keras/``), each with the
same modules (``core``, ``layout``, ``tracing``, ``importer``, ``emitter``; see ``torch/__init__.py``).

Each backend's ``core`` module, which ``get_backend`` returns, offers::

    NAME, FRAMEWORK, version()
    LAYER_BUILDERS                      # one entry per spec layer kind
    build(spec, device="cpu")           # -> native model
    get_weights(model) / set_weights(model, weights)   # canonical layout
    forward(model, x, training=False)   # NCHW numpy in, numpy out
    forward_layers(model, x, training=False)           # {spec path: output}
    input_gradient(model, x, upstream, training=False)
    parameter_counts(model)             # {path: (trainable, running stats)}

    # training, with PyTorch's SGD semantics in all three
    build(spec, device, lockstep_dropout=False)       # True: dropout multiplies by given masks
    make_optimizer(model, lr, momentum=0.0, weight_decay=0.0)
    set_learning_rate(optimizer, lr)
    train_step(model, optimizer, x, y, dropout_masks=None)   # -> mean cross-entropy (float)
    seed_everything(seed)               # -> what cannot be made deterministic ("" if nothing)
    save_checkpoint(model, optimizer, path) / load_checkpoint(model, optimizer, path)

Importing this package imports no framework; ``get_backend`` imports one.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .common import BackendError
from .frameworks import FrameworkMissing, is_installed

BACKEND_NAMES = ("torch", "mxnet", "keras")

# The modules of every backend package and the functions each must define, with the same
# parameters in every backend (tests/test_backend_consistency.py). ``layout`` and ``tracing``
# define nothing else in public; the others may keep public helpers of their own framework.
INTERFACE = {
    "core": ("version", "runtime_details", "build", "get_weights", "set_weights", "forward", "forward_layers",
             "input_gradient", "parameter_counts", "make_optimizer", "set_learning_rate", "train_step",
             "seed_everything", "save_checkpoint", "load_checkpoint", "peak_device_memory_mb"),
    "layout": ("momentum_to_native", "momentum_to_canonical", "flatten_permutation", "conv_kernel_to_native",
               "conv_kernel_to_canonical", "dense_kernel_to_native", "dense_kernel_to_canonical",
               "features_to_native", "features_to_canonical"),
    "tracing": ("is_native", "trace", "read_weights", "write_weights", "declared_input_shape",
                "first_conv_channels"),
    "importer": ("import_model",),
    "emitter": ("emit_source", "plan", "class_name", "native_keys", "write_weights", "read_weights",
                "load_weights", "load_snippet"),
}
# Modules that must import without their framework (the checkpoint reader runs without MXNet).
FRAMEWORK_FREE = ("layout", "tracing", "importer", "emitter")
_MODULES = {"torch": "torch", "mxnet": "mxnet", "keras": "keras"}


def get_backend(name: str) -> ModuleType:
    """The backend module for ``name``; raises FrameworkMissing when its framework is absent."""
    if name not in BACKEND_NAMES:
        raise ValueError(f"unknown framework {name!r}; choose from {', '.join(BACKEND_NAMES)}")
    if not is_installed(_MODULES[name]):
        raise FrameworkMissing(name)
    return importlib.import_module(f"{__name__}.{name}.core")


def get_layout(name: str) -> ModuleType:
    """The framework's weight-layout facts (``backends/<name>/layout.py``); NumPy only, so this
    works without the framework."""
    if name not in BACKEND_NAMES:
        raise ValueError(f"unknown framework {name!r}; choose from {', '.join(BACKEND_NAMES)}")
    return importlib.import_module(f"{__name__}.{name}.layout")


def available() -> list[str]:
    """Backends whose framework is installed (not imported: that costs seconds)."""
    return [name for name in BACKEND_NAMES if is_installed(_MODULES[name])]


__all__ = ["BACKEND_NAMES", "get_backend", "get_layout", "available", "BackendError", "FrameworkMissing"]
