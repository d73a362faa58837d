"""Importing the frameworks, with their known traps closed in one place.

- MXNet 1.9.1 uses the ``np.bool`` alias that NumPy 1.24 removed; it also
  starts half the cores' threads and drops PyTorch in the same process to one.
- Loading triton (through ``torch._dynamo``) after TensorFlow segfaults, so
  when PyTorch is installed it is made to load triton before TensorFlow.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

from ..spec.errors import NetparityError

INSTALL_HINTS = {
    "torch": ("PyTorch", "pip install 'netparity[torch]'"),
    "mxnet": ("MXNet", "pip install 'netparity[mxnet]' (needs numpy<2)"),
    "keras": ("Keras 3", "pip install 'netparity[keras]'"),
}


class FrameworkMissing(NetparityError, ImportError):
    """A backend's framework is not installed (or does not import)."""

    def __init__(self, backend: str, detail: str = ""):
        title, hint = INSTALL_HINTS.get(backend, (backend, ""))
        message = f"{title} is not available for the {backend!r} backend"
        if detail:
            message += f" ({detail})"
        if hint:
            message += f"; install it with: {hint}"
        super().__init__(message)
        self.backend = backend


def is_installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _import(backend: str, module: str):
    if not is_installed(module):
        raise FrameworkMissing(backend)
    try:
        return importlib.import_module(module)
    except Exception as error:  # a broken install: say which framework, not a deep traceback
        raise FrameworkMissing(backend, f"import {module} failed: {type(error).__name__}: {error}") from error


def import_torch():
    return _import("torch", "torch")


def import_mxnet():
    if "mxnet" not in sys.modules:
        import numpy as np

        if "bool" not in np.__dict__:  # hasattr would trigger a NumPy FutureWarning
            np.bool = bool  # removed in NumPy 1.24; MXNet 1.9.1 still uses it
        # MXNet assumes hyper-threading and starts cpu_count/2 threads otherwise.
        os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
        torch_threads = sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None
        module = _import("mxnet", "mxnet")
        if torch_threads is not None:
            sys.modules["torch"].set_num_threads(torch_threads)  # importing mxnet lowers it
        return module
    return sys.modules["mxnet"]


def load_triton_first() -> None:
    """Call before anything that may import TensorFlow (Keras, tensorboardX): when PyTorch and
    triton are installed and TensorFlow is not loaded yet, load triton now (through
    ``torch._dynamo``), since loading it after TensorFlow segfaults."""
    if "tensorflow" in sys.modules or not (is_installed("torch") and is_installed("triton")):
        return
    try:
        importlib.import_module("torch._dynamo")
    except Exception:
        pass


def import_keras():
    if "keras" not in sys.modules:
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        if os.environ["KERAS_BACKEND"] == "tensorflow":
            load_triton_first()
    return _import("keras", "keras")


def import_framework(backend: str):
    """The framework module of a backend ("torch", "mxnet", "keras"), imported the way above."""
    importers = {"torch": import_torch, "mxnet": import_mxnet, "keras": import_keras}
    if backend not in importers:
        raise ValueError(f"unknown framework {backend!r}; choose from {', '.join(importers)}")
    return importers[backend]()
