"""How fast each framework trains and runs a spec, against the machine's matmul ceiling.

``run_bench`` runs every measurement in its own process (compare/bench_worker.py),
one at a time, never two at once, with the frameworks interleaved over repeats
(A B C A B C ...) so that drift of a shared machine hits all of them alike. It
aggregates per (variant, mode): median and p90 step milliseconds over all timed
steps of all repeats, the median of each repeat (the spread between repeats),
images/s, achieved GFLOP/s (FLOPs from spec/flops.py) and their fraction of the
practical ceiling, and the peak RSS. A crashed or failing worker is recorded and
the others go on.

Variants (a backend name expands to all of its own, plain first; each fast mode is
reported as its own row, never instead of the plain one): ``torch`` (eager),
``torch[channels_last]``, ``torch[compile]`` (compile time in the warmup; failing to
compile is recorded as that variant's failure), ``mxnet`` (not hybridized),
``mxnet[hybrid]`` (static_alloc and static_shape), ``keras`` (its configured backend; on
TensorFlow the train step is a tf.function without XLA, inference an eager call),
``keras[xla]`` (TensorFlow, jit_compile=True: slow on tiny feature maps, see
docs/framework-differences.md), ``keras[torch]`` and, when jax is installed,
``keras[jax]`` (Keras on that backend, set in the worker's environment).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from .bench_worker import MARKER, VARIANT_ENV, VARIANTS, split_variant

FORMAT = "netparity.bench/1"
MODES = ("train", "infer")


# ---------------------------------------------------------------------------------------
# workers
# ---------------------------------------------------------------------------------------

def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    # MXNet's default is half the cores; pin the same thread count for every framework.
    env.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def _run_worker(args: list[str], timeout: float | None, variant: str | None = None) -> dict:
    """Run one worker; its result dict, or ``{"error": ...}`` when it failed. ``variant``
    adds its environment (``keras[torch]``: KERAS_BACKEND=torch)."""
    command = [sys.executable, "-m", "netparity.compare.bench_worker", *args]
    env = {**worker_env(), **VARIANT_ENV.get(variant, {})}
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s", "returncode": None}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(MARKER) and done.returncode == 0:
            return json.loads(line[len(MARKER):])
    tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
    return {"error": tail or f"worker exited with status {done.returncode}", "returncode": done.returncode}


def expand_variants(frameworks, fast: bool = True) -> list[str]:
    """Backend names expand to all their variants (``mxnet`` -> ``mxnet``, ``mxnet[hybrid]``;
    ``torch`` -> ``torch``, ``torch[channels_last]``, ``torch[compile]``), or with
    ``fast=False`` to their plain variant only; a variant label stays as it is; unknown
    names are kept (their worker reports the error)."""
    from ..backends import available

    names = list(frameworks) if frameworks else available()
    variants: list[str] = []
    for name in names:
        expanded = VARIANTS.get(name, (name,))
        for variant in expanded if fast else expanded[:1]:
            if variant not in variants:
                variants.append(variant)
    return variants


# ---------------------------------------------------------------------------------------
# the ceiling
# ---------------------------------------------------------------------------------------

def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "netparity"


def _ceiling_key(size: int) -> str:
    return (f"{platform.machine()}|{platform.processor() or '-'}|cpus={os.cpu_count()}|"
            f"threads={worker_env()['OMP_NUM_THREADS']}|size={size}")


def ceiling(size: int = 2048, repeats: int = 3, refresh: bool = False) -> float:
    """The practical float32 CPU ceiling in GFLOP/s: the best of ``repeats`` NumPy
    ``size x size`` matmuls, measured in a worker process with the benchmark's thread
    count, cached in ``$XDG_CACHE_HOME/netparity/ceiling.json`` (``~/.cache``) per
    machine, thread count and size."""
    from ..spec.files import write_atomic

    path = _cache_dir() / "ceiling.json"
    key = _ceiling_key(size)
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    if not refresh and isinstance(cache.get(key), dict) and cache[key].get("gflops", 0) > 0:
        return float(cache[key]["gflops"])
    load_before = os.getloadavg()
    result = _run_worker(["--ceiling", str(size), str(repeats)], timeout=600)
    if "error" in result:
        raise RuntimeError(f"ceiling measurement failed: {result['error']}")
    gflops = float(result["gflops"])
    # a busy machine lowers the ceiling: the load is kept so that a reader can judge it
    cache[key] = {"gflops": gflops, "repeats": repeats, "load_before": list(load_before),
                  "load_after": list(os.getloadavg()),
                  "measured": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(cache, indent=1) + "\n")
    return gflops


# ---------------------------------------------------------------------------------------
# the benchmark
# ---------------------------------------------------------------------------------------

def _percentile(values: list[float], q: float) -> float:
    """Linear-interpolation percentile (NumPy's default), q in [0, 100]."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _aggregate(variant: str, mode: str, runs: list[dict], batch_size: int, flops_per_image: int,
               ceiling_gflops: float | None) -> dict:
    ok = [r for r in runs if "error" not in r]
    failures = [{"repeat": r["repeat"], "error": r["error"], "returncode": r.get("returncode")}
                for r in runs if "error" in r]
    base, fast = split_variant(variant)
    entry = {"variant": variant, "framework": base, "fast_mode": fast, "mode": mode,
             "status": "ok" if ok and not failures else ("partial" if ok else "failed"),
             "repeats_ok": len(ok), "failures": failures}
    if not ok:
        return entry
    steps = [t for r in ok for t in r["step_ms"]]
    median_ms = _percentile(steps, 50)
    images_per_s = batch_size / (median_ms / 1000.0)
    gflops = flops_per_image * images_per_s / 1e9
    entry.update(step_ms_median=median_ms, step_ms_p90=_percentile(steps, 90),
                 repeat_medians_ms=[_percentile(r["step_ms"], 50) for r in ok],
                 images_per_s=images_per_s, gflops=gflops,
                 ceiling_fraction=gflops / ceiling_gflops if ceiling_gflops else None,
                 peak_rss_mb=max(r["peak_rss_mb"] for r in ok),
                 finite=all(r.get("finite", True) for r in ok), version=ok[0].get("version"))
    if "keras_backend" in ok[0]:
        entry["keras_backend"] = ok[0]["keras_backend"]
    return entry


def run_bench(model: str, frameworks=None, mode: str = "both", batch_size: int = 32,
              input_size: int | None = None, steps: int = 20, warmup: int = 5, repeats: int = 3,
              device: str = "cpu", out: Path | str | None = None, measure_ceiling: bool = True,
              ceiling_size: int = 2048, timeout: float | None = 1800, progress=None,
              fast: bool = True) -> dict:
    """Benchmark ``model`` (zoo name or spec JSON path) in each framework variant.

    ``mode``: "train", "infer" or "both". ``frameworks``: backend names (all their
    variants) or variant labels; default every installed backend. ``out``: a folder,
    bench.json is written there atomically. ``progress``: called with a line of text
    before each measurement. ``fast=False``: a backend name means its plain variant only
    (fast modes then run only when named, e.g. ``torch[channels_last]``). Returns the
    bench.json content."""
    from ..spec import load, zoo
    from ..spec.flops import flops
    from ..spec.files import write_atomic

    if mode not in (*MODES, "both"):
        raise ValueError(f"mode must be 'train', 'infer' or 'both', got {mode!r}")
    for name, value in (("batch_size", batch_size), ("steps", steps), ("repeats", repeats)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be a non-negative integer, got {warmup!r}")
    spec = load(model) if str(model).endswith(".json") else zoo.get(model)
    if input_size:
        spec = spec.with_input(size=input_size)
    count = flops(spec)
    modes = list(MODES) if mode == "both" else [mode]
    variants = expand_variants(frameworks, fast)
    ceiling_gflops = ceiling(ceiling_size) if measure_ceiling and device == "cpu" else None

    runs: dict[tuple[str, str], list[dict]] = {(v, m): [] for m in modes for v in variants}
    order = []
    for repeat in range(repeats):
        for m in modes:
            for variant in variants:
                if progress:
                    progress(f"repeat {repeat + 1}/{repeats}: {variant} {m}")
                job = {"model": str(model), "input_size": input_size, "variant": variant, "mode": m,
                       "batch_size": batch_size, "steps": steps, "warmup": warmup, "device": device,
                       "seed": 0}
                load_before = os.getloadavg()
                started = datetime.now(timezone.utc).isoformat(timespec="seconds")
                result = _run_worker([json.dumps(job)], timeout, variant)
                load_after = os.getloadavg()
                result.update(repeat=repeat)
                runs[(variant, m)].append(result)
                order.append({"repeat": repeat, "variant": variant, "mode": m, "started": started,
                              "load_before": list(load_before), "load_after": list(load_after),
                              "ok": "error" not in result})

    results = [_aggregate(v, m, runs[(v, m)], batch_size, count.flops_per_image(m), ceiling_gflops)
               for m in modes for v in variants]
    import numpy

    versions = {"python": platform.python_version(), "numpy": numpy.__version__}
    for entry in results:
        if entry.get("version"):
            versions[entry["framework"]] = entry["version"]
    try:
        from importlib.metadata import version as _dist_version

        versions["netparity"] = _dist_version("netparity")
    except Exception:  # not installed as a distribution
        pass
    report = {
        "format": FORMAT, "model": str(model), "spec_name": spec.name,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": {"frameworks": variants, "mode": mode, "modes": modes, "batch_size": batch_size,
                     "input_shape": list(spec.input_shape), "input_size": input_size, "steps": steps,
                     "warmup": warmup, "repeats": repeats, "device": device},
        "flops": {"macs_per_image": count.macs_per_image,
                  "forward_flops_per_image": count.forward_flops_per_image,
                  "train_flops_per_image": count.train_flops_per_image,
                  "convention": "MACs of conv2d and dense only (no bias, BatchNorm, activation, pooling); "
                                "forward = 2 x MACs; train = 3 x forward"},
        "ceiling": {"gflops": ceiling_gflops, "what": f"NumPy float32 {ceiling_size}x{ceiling_size} matmul, "
                                                      "best of 3, worker thread count"}
        if ceiling_gflops else None,
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "OMP_NUM_THREADS": worker_env()["OMP_NUM_THREADS"]},
        "versions": versions,
        "order": order,
        "results": results,
    }
    if out is not None:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / "bench.json", json.dumps(report, indent=1) + "\n")
    return report


# ---------------------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------------------

def bench_table(report: dict):
    """A rich Table: model x framework x mode with images/s, step ms (median, p90),
    GFLOP/s, % of ceiling and peak memory."""
    from rich.markup import escape
    from rich.table import Table

    s = report["settings"]
    title = (f"{report['model']} {'x'.join(map(str, s['input_shape']))}, batch {s['batch_size']}, "
             f"{s['device']}, {s['steps']} steps x {s['repeats']} repeats")
    table = Table(title=title)
    for column in ("model", "framework", "mode", "images/s", "step ms median", "step ms p90", "GFLOP/s",
                   "% of ceiling", "peak MB"):
        table.add_column(column, justify="left" if column in ("model", "framework", "mode") else "right")
    for entry in report["results"]:
        if entry["status"] == "failed":
            error = entry["failures"][0]["error"].splitlines()[-1] if entry["failures"] else "failed"
            table.add_row(report["model"], escape(entry["variant"]), entry["mode"],
                          "[red]failed: " + escape(error[:60]),
                          "", "", "", "", "")
            continue
        fraction = entry.get("ceiling_fraction")
        variant = entry["variant"] + (" (partial)" if entry["status"] == "partial" else "")
        table.add_row(report["model"], escape(variant), entry["mode"], f"{entry['images_per_s']:.1f}",
                      f"{entry['step_ms_median']:.2f}", f"{entry['step_ms_p90']:.2f}", f"{entry['gflops']:.2f}",
                      f"{100 * fraction:.1f}" if fraction is not None else "-", f"{entry['peak_rss_mb']:.0f}")
    return table


def bench_command(model: str, frameworks=None, mode: str = "both", batch_size: int = 32,
                  input_size: int | None = None, steps: int = 20, warmup: int = 5, repeats: int = 3,
                  device: str = "cpu", out: Path | str | None = "runs/bench", console=None,
                  fast: bool = False) -> dict:
    """What ``netparity bench`` does: run, write ``out/bench.json``, print the table.

    ``fast`` defaults to False here (a backend name means its plain variant; fast modes run
    when named, e.g. ``torch[channels_last]``) until the CLI has a switch for it: its test
    expects ``--frameworks torch`` to measure plain torch only."""
    from rich.console import Console

    console = console or Console()
    report = run_bench(model, frameworks, mode, batch_size, input_size, steps, warmup, repeats, device, out,
                       progress=lambda line: console.print(f"[dim]{line}"), fast=fast)
    console.print(bench_table(report))
    if report.get("ceiling"):
        console.print(f"ceiling: {report['ceiling']['gflops']:.1f} GFLOP/s ({report['ceiling']['what']})")
    if out is not None:
        console.print(f"wrote {Path(out) / 'bench.json'}")
    return report


__all__ = ["run_bench", "ceiling", "bench_table", "bench_command", "expand_variants"]
