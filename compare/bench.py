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

from ..spec.errors import NetparityError
from .bench_worker import MARKER, VARIANTS, split_variant

FORMAT = "netparity.bench/1"
MODES = ("train", "infer")


class BenchError(NetparityError, ValueError):
    """Bad benchmark settings, or a bench.json that is missing or not a netparity benchmark."""


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
    env = {**worker_env(), **(VARIANTS[variant].env if variant in VARIANTS else {})}
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s", "returncode": None}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(MARKER) and done.returncode == 0:
            return json.loads(line[len(MARKER):])
    tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
    return {"error": tail or f"worker exited with status {done.returncode}", "returncode": done.returncode}


def _expands_to(variant, model, device: str) -> bool:
    from .reference import has_reference

    if variant.when == "gpu":
        return device == "gpu"
    if variant.when == "reference":  # the hand-written references are built for the CPU
        return model is not None and has_reference(str(model)) and device == "cpu"
    if variant.when == "jax":
        from ..backends.frameworks import is_installed

        return is_installed("jax")
    if variant.when == "named":
        return False
    if (variant.keras_backend and variant.keras_backend == os.environ.get("KERAS_BACKEND", "tensorflow")
            and (variant.execution, variant.precision) == ("plain", "float32")):
        return False  # the plain ``keras`` row already runs on that Keras backend
    return True


def expand_variants(frameworks, fast: bool = True, model=None, device: str = "cpu") -> list[str]:
    """Backend names expand to their variants: with ``fast`` every fast mode, mixed precision
    on the GPU, and the hand-written reference when ``model`` has one (``mxnet`` -> ``mxnet``,
    ``mxnet[hybrid]``, ``mxnet[handwritten]``); with ``fast=False`` the plain variant only.
    A variant label stays as it is; unknown names are kept (their worker reports the error)."""
    from ..backends import available

    names = list(frameworks) if frameworks else available()
    variants: list[str] = []
    for name in names:
        own = [v for v in VARIANTS.values() if v.backend == name and v.label != name]
        if name in VARIANTS:
            expanded = [name, *(v.label for v in own if fast and _expands_to(v, model, device))]
        else:
            expanded = [name]
        for variant in expanded:
            if variant not in variants:
                variants.append(variant)
    return variants


# ---------------------------------------------------------------------------------------
# the ceiling
# ---------------------------------------------------------------------------------------

def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "netparity"


def gpu_info() -> dict | None:
    """Name, driver and memory of the first NVIDIA GPU from ``nvidia-smi``; None without one."""
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                               "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or not lines:
        return None
    name, driver, memory = (part.strip() for part in (lines[0].split(",") + ["", ""])[:3])
    return {"name": name, "driver": driver, "memory_total": memory, "count": len(lines)}


def _ceiling_key(size: int, device: str) -> str:
    if device == "gpu":
        info = gpu_info() or {}
        return f"gpu|{info.get('name', '-')}|driver={info.get('driver', '-')}|size={size}"
    return (f"{platform.machine()}|{platform.processor() or '-'}|cpus={os.cpu_count()}|"
            f"threads={worker_env()['OMP_NUM_THREADS']}|size={size}|numpy+torch")


BUSY_LOAD = 0.5
"""A ceiling measured while the 1-minute load average exceeded this fraction of the cores
is measured again on the next call (a busy machine lowers it); the cache keeps the best."""


def _busy(entry: dict) -> bool:
    load = (entry.get("load_before") or [0.0])[0]
    return load > BUSY_LOAD * (os.cpu_count() or 1)


def ceiling_entry(size: int | None = None, repeats: int = 3, refresh: bool = False, device: str = "cpu") -> dict:
    """The device's practical matrix-multiply ceiling: on the CPU the best of ``repeats``
    NumPy float32 ``size x size`` matmuls (size 2048) with the benchmark's thread count; on
    the GPU PyTorch's float32 (TF32 off) and bfloat16 rates (size 8192). Measured in a worker
    process and cached in ``$XDG_CACHE_HOME/netparity/ceiling.json`` (``~/.cache``) per
    machine, thread count (or GPU and driver) and size, with the load average around the
    measurement. Measured again when ``refresh`` or when the cached figure was taken on a
    busy machine; the best figure is kept. Returns the cache entry (``gflops``, on the GPU
    also ``bf16_gflops``)."""
    from ..spec.files import write_atomic

    size = size or (8192 if device == "gpu" else 2048)
    path = _cache_dir() / "ceiling.json"
    key = _ceiling_key(size, device)
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    cached = cache.get(key) if isinstance(cache.get(key), dict) else None
    if cached and cached.get("gflops", 0) > 0 and not refresh and not _busy(cached):
        return {**cached, "size": size}  # entries of older versions did not keep their size
    load_before = os.getloadavg()
    result = _run_worker(["--ceiling", str(size), str(repeats), device], timeout=600)
    if "error" in result:
        raise RuntimeError(f"ceiling measurement on the {device} failed: {result['error']}")
    entry = {**result, "size": size, "repeats": repeats, "device": device, "load_before": list(load_before),
             "load_after": list(os.getloadavg()),
             "measured": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if cached and cached.get("gflops", 0) > entry["gflops"]:
        entry = {**cached, "remeasured": entry["measured"], "remeasured_gflops": entry["gflops"]}
    cache[key] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(cache, indent=1) + "\n")
    return entry


def ceiling(size: int | None = None, repeats: int = 3, refresh: bool = False, device: str = "cpu") -> float:
    """The practical float32 ceiling in GFLOP/s (see ``ceiling_entry``)."""
    return float(ceiling_entry(size, repeats, refresh, device)["gflops"])


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


def _ceiling_for(variant: str, ceiling: dict | None) -> float | None:
    """The ceiling a variant is measured against: bfloat16 rows against the bfloat16 rate
    where one was measured (GPU), everything else against float32."""
    if not ceiling:
        return None
    spec = VARIANTS.get(variant)
    if spec is not None and spec.precision != "float32" and ceiling.get("bf16_gflops"):
        return ceiling["bf16_gflops"]
    return ceiling.get("gflops")


def _aggregate(variant: str, mode: str, runs: list[dict], batch_size: int, flops_per_image: int,
               ceiling: dict | None) -> dict:
    ok = [r for r in runs if "error" not in r]
    failures = [{"repeat": r["repeat"], "error": r["error"], "returncode": r.get("returncode")}
                for r in runs if "error" in r]
    base, fast = split_variant(variant)
    known = VARIANTS.get(variant)
    entry = {"variant": variant, "framework": known.backend if known else base, "fast_mode": fast, "mode": mode,
             "execution": known.execution if known else None, "precision": known.precision if known else None,
             "handwritten": bool(known and known.handwritten),
             "status": "ok" if ok and not failures else ("partial" if ok else "failed"),
             "repeats_ok": len(ok), "failures": failures}
    if not ok:
        return entry
    steps = [t for r in ok for t in r["step_ms"]]
    median_ms = _percentile(steps, 50)
    images_per_s = batch_size / (median_ms / 1000.0)
    gflops = flops_per_image * images_per_s / 1e9
    limit = _ceiling_for(variant, ceiling)
    device_memory = [r["device_memory_peak_mb"] for r in ok if r.get("device_memory_peak_mb") is not None]
    entry.update(step_ms_median=median_ms, step_ms_p90=_percentile(steps, 90),
                 repeat_medians_ms=[_percentile(r["step_ms"], 50) for r in ok],
                 images_per_s=images_per_s, gflops=gflops, ceiling_fraction=gflops / limit if limit else None,
                 peak_rss_mb=max(r["peak_rss_mb"] for r in ok),
                 device_memory_peak_mb=max(device_memory) if device_memory else None,
                 finite=all(r.get("finite", True) for r in ok), version=ok[0].get("version"))
    if "keras_backend" in ok[0]:
        entry["keras_backend"] = ok[0]["keras_backend"]
    return entry


def _check_settings(mode, batch_size, steps, warmup, repeats, device) -> None:
    if mode not in (*MODES, "both"):
        raise BenchError(f"mode must be 'train', 'infer' or 'both', got {mode!r}")
    for name, value in (("batch_size", batch_size), ("steps", steps), ("repeats", repeats)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise BenchError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(warmup, int) or warmup < 0:
        raise BenchError(f"warmup must be a non-negative integer, got {warmup!r}")
    if device not in ("cpu", "gpu"):
        raise BenchError(f"device must be 'cpu' or 'gpu', got {device!r}")


def _versions(results: list[dict]) -> dict:
    import numpy

    versions = {"python": platform.python_version(), "numpy": numpy.__version__}
    for entry in results:
        # the framework's first (plain) row; each row keeps its own version too (keras on torch
        # has torch's in it)
        if entry.get("version"):
            versions.setdefault(entry["framework"], entry["version"])
    try:
        from importlib.metadata import version as _dist_version

        versions["netparity"] = _dist_version("netparity")
    except Exception:  # not installed as a distribution
        pass
    return versions


def _machine(device: str) -> dict:
    machine = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
               "cpu_count": os.cpu_count(), "OMP_NUM_THREADS": worker_env()["OMP_NUM_THREADS"]}
    if device == "gpu":
        machine["gpu"] = gpu_info()
    return machine


def _measure_ceiling(device: str, size: int | None, progress) -> dict | None:
    """The ceiling entry, or ``{"error": ...}`` when it cannot be measured (the benchmark
    goes on without percentages)."""
    if progress:
        progress(f"ceiling of the {device} (cached after the first measurement)")
    try:
        entry = ceiling_entry(size, device=device)
    except RuntimeError as error:
        return {"error": str(error)}
    library = {"numpy": "NumPy", "torch": "PyTorch"}.get(entry.get("library", "numpy"), entry.get("library"))
    what = (f"PyTorch {entry['size']}x{entry['size']} matmul on the GPU, float32 with TF32 off "
            "(bfloat16 rows: bfloat16 rate), best of 3" if device == "gpu" else
            f"float32 {entry['size']}x{entry['size']} matmul, best of 3 at the worker thread count, "
            f"the faster of NumPy and PyTorch ({library})")
    return {key: entry.get(key) for key in ("gflops", "bf16_gflops", "library", "rates", "device_name", "measured",
                                             "load_before") if entry.get(key) is not None} | {"what": what}


def run_bench(model: str, frameworks=None, mode: str = "both", batch_size: int = 32,
              input_size: int | None = None, steps: int = 20, warmup: int = 5, repeats: int = 3,
              device: str = "cpu", out: Path | str | None = None, measure_ceiling: bool = True,
              ceiling_size: int | None = None, timeout: float | None = 1800, progress=None,
              fast: bool = True, canonical_weights: bool = False) -> dict:
    """Benchmark ``model`` (zoo name or spec JSON path) in each framework variant.

    ``mode``: "train", "infer" or "both". ``frameworks``: backend names (all their
    variants, see ``expand_variants``) or variant labels; default every installed backend.
    ``out``: a folder; bench.json is written there atomically after every measurement, so
    an interrupted run keeps what it measured. ``progress``: called with a line of text
    before each measurement. ``fast=False``: a backend name means its plain variant only.
    ``canonical_weights``: load netparity's canonical weights into the spec-built networks
    (default: each framework's own initialisation, like the hand-written references; see
    bench_worker). Returns the bench.json content."""
    from ..spec import load, zoo
    from ..spec.flops import flops

    _check_settings(mode, batch_size, steps, warmup, repeats, device)
    spec = load(model) if str(model).endswith(".json") else zoo.get(model)
    if input_size:
        spec = spec.with_input(size=input_size)
    count = flops(spec)
    modes = list(MODES) if mode == "both" else [mode]
    variants = expand_variants(frameworks, fast, model, device)
    ceiling_found = _measure_ceiling(device, ceiling_size, progress) if measure_ceiling else None
    ceiling_used = ceiling_found if ceiling_found and "error" not in ceiling_found else None
    header = {
        "format": FORMAT, "model": str(model), "spec_name": spec.name,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": {"frameworks": variants, "mode": mode, "modes": modes, "batch_size": batch_size,
                     "input_shape": list(spec.input_shape), "input_size": input_size, "steps": steps,
                     "warmup": warmup, "repeats": repeats, "device": device,
                     "weights": "canonical" if canonical_weights else "each framework's own initialisation"},
        "flops": {"macs_per_image": count.macs_per_image,
                  "forward_flops_per_image": count.forward_flops_per_image,
                  "train_flops_per_image": count.train_flops_per_image,
                  "convention": "MACs of conv2d and dense only (no bias, BatchNorm, activation, pooling); "
                                "forward = 2 x MACs; train = 3 x forward"},
        "ceiling": ceiling_found,
        "machine": _machine(device),
    }

    runs: dict[tuple[str, str], list[dict]] = {(v, m): [] for m in modes for v in variants}
    order: list[dict] = []

    def report(complete: bool) -> dict:
        measured = [(v, m) for m in modes for v in variants if runs[(v, m)]]
        results = [_aggregate(v, m, runs[(v, m)], batch_size, count.flops_per_image(m), ceiling_used)
                   for v, m in measured]
        return {**header, "complete": complete, "versions": _versions(results), "order": order,
                "results": results}

    for repeat in range(repeats):
        for m in modes:
            for variant in variants:
                if progress:
                    progress(f"repeat {repeat + 1}/{repeats}: {variant} {m}")
                job = {"model": str(model), "input_size": input_size, "variant": variant, "mode": m,
                       "batch_size": batch_size, "steps": steps, "warmup": warmup, "device": device,
                       "seed": 0, "canonical_weights": canonical_weights}
                load_before = os.getloadavg()
                started = datetime.now(timezone.utc).isoformat(timespec="seconds")
                result = _run_worker([json.dumps(job)], timeout, variant)
                load_after = os.getloadavg()
                result.update(repeat=repeat)
                runs[(variant, m)].append(result)
                order.append({"repeat": repeat, "variant": variant, "mode": m, "started": started,
                              "load_before": list(load_before), "load_after": list(load_after),
                              "ok": "error" not in result})
                if out is not None:
                    _write(out, report(complete=False))
    final = report(complete=True)
    if out is not None:
        _write(out, final)
    return final


def _write(out, report: dict) -> None:
    from ..spec.files import write_atomic

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / "bench.json", json.dumps(report, indent=1) + "\n")


# ---------------------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------------------

def bench_table(report: dict):
    """A rich Table: framework variant x mode with images/s, step ms (median, p90), GFLOP/s,
    % of ceiling and peak memory (host RSS; device memory on a GPU)."""
    from rich.markup import escape
    from rich.table import Table

    s = report["settings"]
    title = (f"{escape(report['model'])} {'x'.join(map(str, s['input_shape']))}, batch {s['batch_size']}, "
             f"{s['device']}, {s['steps']} steps x {s['repeats']} repeats")
    device_memory = any(e.get("device_memory_peak_mb") is not None for e in report["results"])
    columns = ["variant", "mode", "img/s", "ms med", "ms p90", "GFLOP/s", "% ceil", "RSS MB"]
    columns += ["GPU MB"] if device_memory else []
    table = Table(title=title)
    for column in columns:
        # the variant's label is never cut ("torch[b…" named nothing); the numbers' headers wrap instead
        table.add_column(column, justify="left" if column in ("variant", "mode") else "right",
                         no_wrap=column == "variant", overflow="fold")
    for entry in report["results"]:
        if entry["status"] == "failed":
            error = entry["failures"][0]["error"].splitlines()[-1] if entry["failures"] else "failed"
            table.add_row(escape(entry["variant"]), entry["mode"], "[red]failed: " + escape(error[:70]),
                          *[""] * (len(columns) - 3))
            continue
        fraction = entry.get("ceiling_fraction")
        variant = entry["variant"] + (" (partial)" if entry["status"] == "partial" else "")
        row = [escape(variant), entry["mode"], f"{entry['images_per_s']:.1f}", f"{entry['step_ms_median']:.2f}",
               f"{entry['step_ms_p90']:.2f}", f"{entry['gflops']:.2f}",
               f"{100 * fraction:.1f}" if fraction is not None else "-", f"{entry['peak_rss_mb']:.0f}"]
        if device_memory:
            memory = entry.get("device_memory_peak_mb")
            row.append(f"{memory:.0f}" if memory is not None else "-")
        table.add_row(*row)
    return table


def bench_command(model: str, frameworks=None, mode: str = "both", batch_size: int = 32,
                  input_size: int | None = None, steps: int = 20, warmup: int = 5, repeats: int = 3,
                  device: str = "cpu", out: Path | str | None = "runs/bench", console=None,
                  fast: bool = True) -> dict:
    """What ``netparity bench MODEL`` does: run, print the table, write ``out/bench.json``
    and the report (bench.html, bench.md, bench.png)."""
    from rich.console import Console
    from rich.markup import escape  # variant labels look like markup: torch[compile]

    from .bench_report import write_bench_report

    console = console or Console()
    report = run_bench(model, frameworks, mode, batch_size, input_size, steps, warmup, repeats, device, out,
                       progress=lambda line: console.print(f"[dim]{escape(line)}"), fast=fast)
    console.print(bench_table(report))
    found = report.get("ceiling") or {}
    if found.get("gflops"):
        console.print(f"ceiling: {found['gflops']:.1f} GFLOP/s ({escape(found['what'])})")
    elif found.get("error"):
        console.print(f"[yellow]no ceiling: {escape(found['error'])}")
    if out is not None:
        html, markdown = write_bench_report(out)
        console.print(escape(f"wrote {Path(out) / 'bench.json'}, {html}, {markdown}"))
    return report


def bench_models(jobs, frameworks=None, mode: str = "both", batch_size: int = 32, steps: int = 20,
                 warmup: int = 5, repeats: int = 3, device: str = "cpu", out: Path | str = "runs/bench",
                 console=None, fast: bool = True) -> list[dict]:
    """``netparity bench`` with several models: ``jobs`` is [(model, input size or None)];
    each model gets ``out/<model>[-<size>]/`` with its bench.json and report, and
    ``out/summary.md`` puts them side by side (rewritten after each model)."""
    from ..spec.files import write_atomic
    from .bench_report import zoo_summary

    reports = []
    for model, size in jobs:
        folder = Path(out) / (Path(str(model)).stem + (f"-{size}" if size else ""))
        reports.append(bench_command(model, frameworks, mode, batch_size, size, steps, warmup, repeats, device,
                                     folder, console, fast))
        Path(out).mkdir(parents=True, exist_ok=True)
        write_atomic(Path(out) / "summary.md", zoo_summary(reports))
    return reports


__all__ = ["BenchError", "run_bench", "ceiling", "ceiling_entry", "bench_table", "bench_command", "bench_models",
           "expand_variants", "gpu_info"]
