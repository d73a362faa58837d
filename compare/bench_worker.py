"""One benchmark measurement in its own process (started by compare/bench.py).

    python -m netparity.compare.bench_worker '<json job>'
    python -m netparity.compare.bench_worker --ceiling SIZE REPEATS

A job is ``{"model", "input_size", "variant", "mode", "batch_size", "steps", "warmup",
"device", "seed"}``; ``variant`` is a backend name, optionally with a fast mode in
brackets (``mxnet[hybrid]``). The worker builds the spec, loads the same canonical
weights as every other framework, runs ``warmup`` then ``steps`` steps on one fixed
in-memory batch and prints one line ``NETPARITY_BENCH <json>`` with the per-step
milliseconds and the peak RSS. A step is ``train_step`` (forward, backward, SGD
update) or ``forward`` in eval mode; both return NumPy arrays, so the device is
synchronised before the clock is read.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import time

MARKER = "NETPARITY_BENCH "

FAULT_VARIABLE = "NETPARITY_BENCH_INJECT_FAULT"
"""For tests of failure handling only: ``variant:crash`` kills that variant's worker at
start (SIGKILL); ``variant:error`` makes it raise."""

def _jax_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("jax") is not None


VARIANTS = {"torch": ("torch", "torch[channels_last]", "torch[compile]"),
            "mxnet": ("mxnet", "mxnet[hybrid]"),
            "keras": ("keras", "keras[xla]", "keras[torch]", *(("keras[jax]",) if _jax_installed() else ()))}
"""Every measured variant of each backend, plain mode first. ``torch[channels_last]``: model
and batch in ``torch.channels_last``; ``torch[compile]``: ``torch.compile`` of the module
(compile time falls in the warmup; a failure to compile is the variant's failure);
``keras[xla]``: the TensorFlow train step and a predict function with ``jit_compile=True``;
``keras[torch]`` / ``keras[jax]``: Keras on that backend (``keras[jax]`` only when jax is
installed; the netparity Keras backend has no jax train step, so its train mode fails)."""

VARIANT_ENV = {"keras[xla]": {"KERAS_BACKEND": "tensorflow"}, "keras[torch]": {"KERAS_BACKEND": "torch"},
               "keras[jax]": {"KERAS_BACKEND": "jax"}}
"""Environment a variant's worker runs with (set before keras is imported)."""


class VariantFailed(Exception):
    """A fast mode that could not run here (e.g. torch.compile failed): recorded as the
    variant's failure with the reason, not as a crash."""


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


def measure(job: dict) -> dict:
    import numpy as np

    from ..backends import get_backend
    from ..spec import init_weights, load, zoo

    variant, mode = job["variant"], job["mode"]
    fault = _injected_fault(variant)
    if fault == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    if fault == "error":
        raise RuntimeError(f"injected fault in {variant}")
    base, fast = split_variant(variant)
    if variant not in VARIANTS.get(base, ()):
        raise ValueError(f"unknown variant {variant!r}; known: "
                         f"{', '.join(v for vs in VARIANTS.values() for v in vs)}")
    if mode not in ("train", "infer"):
        raise ValueError(f"mode must be 'train' or 'infer', got {mode!r}")

    for key, value in VARIANT_ENV.get(variant, {}).items():
        if "keras" in sys.modules and os.environ.get(key) != value:
            raise RuntimeError(f"{variant}: {key}={value} must be set before keras is imported")
        os.environ[key] = value
    backend = get_backend(base)
    model_name = job["model"]
    spec = load(model_name) if str(model_name).endswith(".json") else zoo.get(model_name)
    if job.get("input_size"):
        spec = spec.with_input(size=int(job["input_size"]))
    inference = spec.infer()
    model = backend.build(spec, device=job.get("device", "cpu"))
    backend.set_weights(model, init_weights(inference, seed=int(job.get("seed", 0))))
    if fast == "hybrid":
        model.hybridize(static_alloc=True, static_shape=True)

    rng = np.random.default_rng(int(job.get("seed", 0)))
    batch_size = int(job["batch_size"])
    x = rng.standard_normal((batch_size, *inference.input_shape)).astype(np.float32)
    classes = int(inference.output_shape[0])
    y = rng.integers(0, classes, size=batch_size).astype(np.int64)
    rss_built = _peak_rss_mb()

    if base == "torch" and fast != "plain":
        step = _torch_fast_step(backend, model, fast, mode, x, y)
    elif fast == "xla":
        step = _keras_xla_step(backend, model, mode, x, y)
    elif mode == "train":
        optimizer = backend.make_optimizer(model, lr=0.01, momentum=0.9, weight_decay=0.0)

        def step():
            return backend.train_step(model, optimizer, x, y)
    else:
        def step():
            return backend.forward(model, x, training=False)

    try:
        for _ in range(int(job["warmup"])):
            step()
        if fast == "compile" and not int(job["warmup"]):
            step()  # compile outside the clock even without warmup
    except Exception as error:
        if fast in ("compile", "xla"):
            first = (str(error).strip().splitlines() or [""])[0][:300]
            raise VariantFailed(f"{variant} failed to compile/run: {type(error).__name__}: {first}") from error
        raise
    times_ms = []
    for _ in range(int(job["steps"])):
        start = time.perf_counter()
        result = step()
        times_ms.append((time.perf_counter() - start) * 1000.0)
    finite = bool(np.all(np.isfinite(result)))
    extra = {}
    if base == "keras":
        import keras

        extra["keras_backend"] = keras.backend.backend()
    return {"variant": variant, "mode": mode, "step_ms": times_ms, "peak_rss_mb": _peak_rss_mb(),
            "peak_rss_after_build_mb": rss_built, "finite": finite, "version": backend.version(),
            "threads": {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}, **extra}


def _torch_fast_step(backend, model, fast: str, mode: str, x, y):
    """The step of ``torch[channels_last]`` / ``torch[compile]``: what backend.train_step and
    backend.forward do (the same SGD optimizer, cross-entropy, no_grad eval), with the batch
    made a tensor once (as the plain step's zero-copy from_numpy) and the mode set once."""
    import torch

    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    if fast == "channels_last":
        model.to(memory_format=torch.channels_last)
        if xt.dim() == 4:
            xt = xt.contiguous(memory_format=torch.channels_last)
        run = model
    elif fast == "compile":
        try:
            run = torch.compile(model)
        except Exception as error:
            raise VariantFailed(f"torch.compile failed: {type(error).__name__}: {error}") from error
    else:
        raise ValueError(f"unknown torch fast mode {fast!r}")
    if mode == "train":
        native = backend.make_optimizer(model, lr=0.01, momentum=0.9, weight_decay=0.0).native
        model.train()

        def step():
            loss = torch.nn.functional.cross_entropy(run(xt), yt)
            native.zero_grad(set_to_none=True)
            loss.backward()
            native.step()
            return loss.detach().numpy()
        return step
    model.eval()

    def step():
        with torch.no_grad():
            return run(xt).numpy()
    return step


def _keras_xla_step(backend, model, mode: str, x, y):
    """``keras[xla]``: the backend's own TensorFlow train step re-wrapped with
    ``jit_compile=True`` around the same model and optimizer (backend.train_step then runs it),
    and for inference a ``jit_compile=True`` predict function with forward's layout changes."""
    import keras

    if keras.backend.backend() != "tensorflow":
        raise VariantFailed(f"keras[xla] needs the tensorflow Keras backend, not {keras.backend.backend()!r}")
    import tensorflow as tf

    from ..backends import keras as kb

    record = kb.record_of(model, kb.NAME)
    if mode == "train":
        optimizer = backend.make_optimizer(model, lr=0.01, momentum=0.9, weight_decay=0.0)
        plain = kb._tensorflow_step(model, optimizer, record)
        optimizer.compiled = tf.function(plain.python_function, jit_compile=True, reduce_retracing=True)

        def step():
            return backend.train_step(model, optimizer, x, y)
        return step
    predict = tf.function(lambda batch: model(batch, training=False), jit_compile=True)

    def step():
        batch = kb._to_nhwc(kb.as_input(x, record, kb.NAME))
        with kb._scope(record):
            out = predict(tf.convert_to_tensor(batch))
        return kb._to_canonical(kb._numpy(out), record.extra["output_hwc_flat"])
    return step


def matmul_ceiling(size: int, repeats: int) -> float:
    """Best-of-``repeats`` float32 ``size x size`` matmul rate with NumPy, in GFLOP/s."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size)).astype(np.float32)
    b = rng.standard_normal((size, size)).astype(np.float32)
    a @ b  # warm-up: thread pool start, page faults
    best = float("inf")
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2.0 * size ** 3 / best / 1e9


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--ceiling":
        gflops = matmul_ceiling(int(argv[1]), int(argv[2]))
        print(MARKER + json.dumps({"gflops": gflops}), flush=True)
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
