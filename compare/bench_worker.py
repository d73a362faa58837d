"""One benchmark measurement in its own process (started by compare/bench.py).

    python -m netparity.compare.bench_worker '<json job>'
    python -m netparity.compare.bench_worker --ceiling SIZE REPEATS [cpu|gpu]

A job is ``{"model", "input_size", "variant", "mode", "batch_size", "steps", "warmup",
"device", "seed"}``; ``variant`` is a label of VARIANTS (a backend name, optionally with
a mode in brackets: ``mxnet[hybrid]``, ``torch[bf16]``, ``keras[handwritten]``). The
worker builds the spec through the backend with the variant's execution and precision, or the
hand-written reference, each with its framework's own initial weights (``canonical_weights``
in the job loads netparity's instead), runs ``warmup`` then ``steps`` steps on one fixed in-memory batch and prints
one line ``NETPARITY_BENCH <json>`` with the per-step milliseconds, the peak RSS and, on
a GPU, the peak device memory. A step is ``train_step`` (forward, backward, SGD update)
or ``forward`` in eval mode; both return host values (a float loss, a NumPy array), so
the device has finished before the clock is read.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import time
from dataclasses import dataclass

MARKER = "NETPARITY_BENCH "
LR, MOMENTUM = 0.01, 0.9  # the benchmark's SGD; the values do not change the cost of a step

FAULT_VARIABLE = "NETPARITY_BENCH_INJECT_FAULT"
"""For tests of failure handling only: ``variant:crash`` kills that variant's worker at
start (SIGKILL); ``variant:error`` makes it raise."""

@dataclass(frozen=True)
class Variant:
    """One way of running a backend, measured as its own row.

    ``when``: when a backend name expands to this variant: "always", "gpu" (mixed precision:
    on the GPU only, where it pays), "reference" (the model has a hand-written reference
    implementation), "jax" (jax is installed) or "named" (only when asked for by label)."""

    label: str
    backend: str
    about: str
    execution: str = "plain"
    precision: str = "float32"
    keras_backend: str | None = None  # KERAS_BACKEND set in the worker; None: the caller's
    handwritten: bool = False
    when: str = "always"
    emitted: bool = False  # the source `netparity emit` writes, run as hand-written code
    stepped_by_hand: bool = False  # the backend-built model, stepped as the emitted/hand-written code is

    @property
    def mode(self) -> str:
        """What the brackets say (``"hybrid"``), ``"plain"`` without brackets."""
        return split_variant(self.label)[1]

    @property
    def env(self) -> dict[str, str]:
        return {"KERAS_BACKEND": self.keras_backend} if self.keras_backend else {}


def _variants(*variants: Variant) -> dict[str, Variant]:
    return {v.label: v for v in variants}


VARIANTS = _variants(
    Variant("torch", "torch", "eager PyTorch"),
    Variant("torch[channels_last]", "torch", "model and batch in torch.channels_last", execution="channels_last"),
    Variant("torch[compile]", "torch", "torch.compile (compile time in the warmup)", execution="compile"),
    Variant("torch[bf16]", "torch", "autocast bfloat16", precision="bfloat16", when="gpu"),
    Variant("torch[fp16]", "torch", "autocast float16 with a GradScaler", precision="float16", when="gpu"),
    Variant("torch[handwritten]", "torch", "the model written by hand in PyTorch (compare/reference)",
            handwritten=True, when="reference"),
    Variant("torch[emitted]", "torch", "the PyTorch source `netparity emit` writes, stepped as the hand-written "
            "models are", emitted=True, when="named"),
    Variant("torch[built]", "torch", "the model netparity's backend builds, stepped as the emitted and hand-written "
            "models are (like for like with torch[emitted])", stepped_by_hand=True, when="named"),
    Variant("mxnet", "mxnet", "imperative Gluon"),
    Variant("mxnet[hybrid]", "mxnet", "hybridize(static_alloc, static_shape)", execution="hybrid"),
    Variant("mxnet[handwritten]", "mxnet", "the model written by hand in Gluon (compare/reference)",
            handwritten=True, when="reference"),
    Variant("mxnet[emitted]", "mxnet", "the Gluon source `netparity emit` writes, stepped as the hand-written "
            "models are", emitted=True, when="named"),
    Variant("mxnet[built]", "mxnet", "the model netparity's backend builds, stepped as the emitted and hand-written "
            "models are (like for like with mxnet[emitted])", stepped_by_hand=True, when="named"),
    Variant("keras", "keras", "Keras 3 on its configured backend (KERAS_BACKEND, tensorflow by default)"),
    Variant("keras[tensorflow]", "keras", "Keras 3 on TensorFlow", keras_backend="tensorflow", when="named"),
    Variant("keras[xla]", "keras", "TensorFlow with jit_compile=True", execution="xla",
            keras_backend="tensorflow"),
    Variant("keras[torch]", "keras", "Keras 3 on PyTorch", keras_backend="torch"),
    Variant("keras[jax]", "keras", "Keras 3 on JAX", keras_backend="jax", when="jax"),
    Variant("keras[bf16]", "keras", "the mixed_bfloat16 dtype policy", precision="bfloat16", when="gpu"),
    Variant("keras[handwritten]", "keras", "the model written by hand in Keras (compare/reference)",
            handwritten=True, when="reference"),
    Variant("keras[emitted]", "keras", "the Keras source `netparity emit` writes, stepped as the hand-written "
            "models are", emitted=True, when="named"),
    Variant("keras[built]", "keras", "the model netparity's backend builds, stepped as the emitted and hand-written "
            "models are (like for like with keras[emitted])", stepped_by_hand=True, when="named"),
)
"""Every variant, each backend's plain one first. Fast modes, mixed precision and the
hand-written references are rows of their own, never instead of the plain row."""


class VariantFailed(Exception):
    """A variant that could not run here (torch.compile failed, no XLA on this Keras
    backend, no hand-written reference for the model): recorded as that variant's failure
    with the reason, not as a crash."""


def split_variant(variant: str) -> tuple[str, str]:
    """``"mxnet[hybrid]"`` -> ``("mxnet", "hybrid")``; ``"torch"`` -> ``("torch", "plain")``."""
    if variant.endswith("]") and "[" in variant:
        base, _, fast = variant[:-1].partition("[")
        return base, fast
    return variant, "plain"


def _peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux, in bytes on macOS
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _injected_fault(variant: str) -> str | None:
    target, _, fault = os.environ.get(FAULT_VARIABLE, "").partition(":")
    return fault if target == variant else None


def _batch(inference, batch_size: int, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch_size, *inference.input_shape)).astype(np.float32)
    y = rng.integers(0, int(inference.output_shape[0]), size=batch_size).astype(np.int64)
    return x, y


def _backend_step(backend, variant: Variant, spec, weights, mode: str, device: str, x, y):
    """The step of a variant built by netparity's backend: ``train_step`` or eval ``forward``."""
    from ..backends import BackendError

    try:
        model = backend.build(spec, device=device, execution=variant.execution, precision=variant.precision)
    except BackendError as error:
        raise VariantFailed(f"{variant.label}: {error}") from error
    if weights is not None:
        backend.set_weights(model, weights)
    if mode == "train":
        optimizer = backend.make_optimizer(model, lr=LR, momentum=MOMENTUM, weight_decay=0.0)
        return lambda: backend.train_step(model, optimizer, x, y)
    return lambda: backend.forward(model, x, training=False)


def _handwritten_step(variant: Variant, model_name: str, input_size, mode: str, device: str, x, y):
    """The step of a hand-written reference (compare/reference) on the same NumPy batch, put in
    the form the hand-written code takes inside every step, as the backends do: a real loop gets a
    new batch each step, and a batch converted once lets MXNet keep the input's oneDNN layout
    between steps (lenet_bn inference: 0.73 ms on a reused NDArray, 0.88 ms on a new one each call)."""
    from .reference import build_reference, has_reference

    if not has_reference(model_name):
        raise VariantFailed(f"{variant.label}: no hand-written reference for {model_name!r} "
                            "(compare/reference has them for lenet_bn and resnet18)")
    if device != "cpu":
        raise VariantFailed(f"{variant.label}: the hand-written references run on the CPU only "
                            "(compare/reference builds them without a device)")
    # The framework's own initial weights, not the canonical ones: loading those traces the model
    # layer by layer, and on MXNet's default engine a forward with a host sync after every layer
    # leaves the process's later steps ~2.5x slower (docs/framework-differences.md). Weight values
    # do not change the cost of a float32 step.
    try:
        reference = build_reference(variant.backend, model_name, input_size=input_size, lr=LR,
                                    momentum=MOMENTUM, weight_decay=0.0)
    except ValueError as error:  # e.g. lenet_bn at another size than 28
        raise VariantFailed(f"{variant.label}: {error}") from error
    if mode == "train":
        return lambda: reference.train_step(reference.native_batch(x), y)
    return lambda: reference.infer(reference.native_batch(x))


def _emitted_step(variant: Variant, spec, mode: str, device: str, x, y):
    """The step of the code ``netparity emit`` writes for ``spec``, built by its ``build_model()``
    and stepped by compare/reference's framework functions, exactly as the hand-written models
    are (the NumPy batch converted inside every step)."""
    from ..backends.emit import emit_source
    from ..backends.emit.source import load_module

    if device != "cpu":
        raise VariantFailed(f"{variant.label}: the emitted code's bench step runs on the CPU only")
    return _stepped_by_hand(variant, load_module(emit_source(spec, variant.backend)).build_model(), mode, x, y)


def _built_step(variant: Variant, backend, spec, mode: str, device: str, x, y):
    """The backend-built model under the emitted rows' step functions: the comparison with
    ``[emitted]`` is then of the two models' code alone, not of two training loops (the backend's
    train_step also reconciles SGD semantics and records what the parity checks need)."""
    if device != "cpu":
        raise VariantFailed(f"{variant.label}: the hand-stepped rows run on the CPU only")
    return _stepped_by_hand(variant, backend.build(spec), mode, x, y)


def _stepped_by_hand(variant: Variant, model, mode: str, x, y):
    import importlib

    steps = importlib.import_module(f"{__package__}.reference.{variant.backend}")
    if mode == "train":
        train = steps.make_train_step(model, LR, MOMENTUM, 0.0)
        return lambda: train(steps.native_batch(x), y)
    infer = steps.make_infer(model)
    return lambda: infer(steps.native_batch(x))


def measure(job: dict) -> dict:
    import numpy as np

    from ..backends import get_backend
    from ..spec import init_weights, load, zoo

    label, mode = job["variant"], job["mode"]
    fault = _injected_fault(label)
    if fault == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    if fault == "error":
        raise RuntimeError(f"injected fault in {label}")
    if label not in VARIANTS:
        raise ValueError(f"unknown variant {label!r}; known: {', '.join(VARIANTS)}")
    if mode not in ("train", "infer"):
        raise ValueError(f"mode must be 'train' or 'infer', got {mode!r}")
    variant = VARIANTS[label]
    for key, value in variant.env.items():
        if "keras" in sys.modules and os.environ.get(key) != value:
            raise RuntimeError(f"{label}: {key}={value} must be set before keras is imported")
        os.environ[key] = value

    backend = get_backend(variant.backend)
    model_name, device, seed = job["model"], job.get("device", "cpu"), int(job.get("seed", 0))
    spec = load(model_name) if str(model_name).endswith(".json") else zoo.get(model_name)
    if job.get("input_size"):
        spec = spec.with_input(size=int(job["input_size"]))
    inference = spec.infer()
    x, y = _batch(inference, int(job["batch_size"]), seed)
    if variant.handwritten:
        step = _handwritten_step(variant, model_name, job.get("input_size"), mode, device, x, y)
    elif variant.emitted:
        step = _emitted_step(variant, spec, mode, device, x, y)
    elif variant.stepped_by_hand:
        step = _built_step(variant, backend, spec, mode, device, x, y)
    else:
        # Each framework's own initial weights, like the hand-written rows: the values do not change
        # the cost of a float32 step, but on MXNet copying weights in from the host (set_weights,
        # load_parameters) or reading them out leaves the process's later steps ~20% slower
        # (docs/framework-differences.md). "canonical_weights": true in the job loads them anyway.
        weights = init_weights(inference, seed=seed) if job.get("canonical_weights") else None
        step = _backend_step(backend, variant, spec, weights, mode, device, x, y)
    rss_built = _peak_rss_mb()

    compiles = variant.execution in ("compile", "xla")
    try:
        for _ in range(max(int(job["warmup"]), 1 if compiles else 0)):  # compile outside the clock
            step()
    except Exception as error:
        if compiles:
            first = (str(error).strip().splitlines() or [""])[0][:300]
            raise VariantFailed(f"{label} failed to compile/run: {type(error).__name__}: {first}") from error
        raise
    times_ms = []
    for _ in range(int(job["steps"])):
        start = time.perf_counter()
        result = step()  # a float loss or a NumPy array: the device has finished
        times_ms.append((time.perf_counter() - start) * 1000.0)
    extra = backend.runtime_details()
    return {"variant": label, "mode": mode, "step_ms": times_ms, "peak_rss_mb": _peak_rss_mb(),
            "peak_rss_after_build_mb": rss_built, "device_memory_peak_mb": backend.peak_device_memory_mb(device),
            "finite": bool(np.all(np.isfinite(result))), "version": backend.version(),
            "execution": variant.execution, "precision": variant.precision, "handwritten": variant.handwritten,
            "threads": {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}, **extra}


def _best_seconds(multiply, repeats: int) -> float:
    multiply()  # warm-up: thread pool start, page faults
    best = float("inf")
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        multiply()
        best = min(best, time.perf_counter() - start)
    return best


def matmul_ceiling(size: int, repeats: int) -> dict:
    """Best-of-``repeats`` float32 ``size x size`` matmul rate on the CPU, in GFLOP/s: NumPy's
    BLAS and, when installed, PyTorch's (oneDNN/MKL, often faster: a framework that beats a
    NumPy-only ceiling would show more than 100%), at the worker's thread count; the faster."""
    import numpy as np

    from ..backends.frameworks import is_installed

    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size)).astype(np.float32)
    b = rng.standard_normal((size, size)).astype(np.float32)
    rates = {"numpy": 2.0 * size ** 3 / _best_seconds(lambda: a @ b, repeats) / 1e9}
    if is_installed("torch"):
        import torch

        threads = os.environ.get("OMP_NUM_THREADS")
        if threads:
            torch.set_num_threads(int(threads))
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        rates["torch"] = 2.0 * size ** 3 / _best_seconds(lambda: torch.mm(ta, tb), repeats) / 1e9
    library = max(rates, key=rates.get)
    return {"gflops": rates[library], "library": library, "rates": rates}


def gpu_matmul_ceiling(size: int, repeats: int) -> dict:
    """Best-of-``repeats`` ``size x size`` matmul rates on the first CUDA GPU with PyTorch, in
    GFLOP/s: true float32 (TF32 off) and bfloat16, each timed over 10 matmuls."""
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("no CUDA GPU visible to PyTorch (torch.cuda.is_available() is False)")
    torch.backends.cuda.matmul.allow_tf32 = False
    rates = {}
    for key, dtype in (("gflops", torch.float32), ("bf16_gflops", torch.bfloat16)):
        a = torch.randn(size, size, device="cuda", dtype=dtype)
        b = torch.randn(size, size, device="cuda", dtype=dtype)
        a @ b
        torch.cuda.synchronize()
        best = float("inf")
        for _ in range(max(1, repeats)):
            start = time.perf_counter()
            for _ in range(10):
                a @ b
            torch.cuda.synchronize()
            best = min(best, (time.perf_counter() - start) / 10)
        rates[key] = 2.0 * size ** 3 / best / 1e9
    return {**rates, "device_name": torch.cuda.get_device_name(), "torch": torch.__version__}


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--ceiling":
        size, repeats = int(argv[1]), int(argv[2])
        if len(argv) > 3 and argv[3] == "gpu":
            result = gpu_matmul_ceiling(size, repeats)
        else:
            result = matmul_ceiling(size, repeats)
        print(MARKER + json.dumps(result), flush=True)
        return 0
    job = json.loads(argv[0])
    try:
        result = measure(job)
    except VariantFailed as failure:
        result = {"variant": job.get("variant"), "mode": job.get("mode"), "error": str(failure)}
    print(MARKER + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
