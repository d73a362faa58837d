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

VARIANTS = {"torch": ("torch",), "mxnet": ("mxnet", "mxnet[hybrid]"), "keras": ("keras",)}
"""Every measured variant of each backend, plain mode first."""


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

    if mode == "train":
        optimizer = backend.make_optimizer(model, lr=0.01, momentum=0.9, weight_decay=0.0)

        def step():
            return backend.train_step(model, optimizer, x, y)
    else:
        def step():
            return backend.forward(model, x, training=False)

    for _ in range(int(job["warmup"])):
        step()
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
    print(MARKER + json.dumps(measure(job)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
