"""Check every zoo model at its default input size and time ``netparity check``.

    python -m netparity.compare.check_zoo --out docs/parity.md

Writes a Markdown table (one row per model: parity, worst pairwise output
error, seconds per framework) and, with ``--time-cli MODEL``, the wall time of
the whole ``netparity check MODEL`` command (imports included), median of
``--repeats`` runs in fresh processes. A benchmark, never a timed test.

Each model is checked in a fresh process (``--one MODEL``), so that the memory of one 224-pixel
VGG in three frameworks and the float64 reference is returned before the next: in one process the
run grew past 12 GB. A model whose process fails is a FAIL row with the reason; the others go on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from ..backends import BACKEND_NAMES, available
from ..spec import zoo
from ..spec.files import write_atomic
from .parity import check_parity


def gradient_summary(pairs) -> str:
    verdicts = {p.gradient_verdict for p in pairs}
    if "differ" in verdicts:
        return "differ"
    kinked = [p for p in pairs if p.gradient_verdict == "kinks"]
    if kinked:
        sensitivities = [p.gradient_sensitivity for p in kinked if p.gradient_sensitivity is not None]
        if not sensitivities:  # judged on the redraws: the first draw alone disagreed
            return f"kinks (L2 {max(p.gradient_l2_rel for p in kinked):.1e} on the first draw only; fresh draws agree)"
        return (f"kinks (L2 {max(p.gradient_l2_rel for p in kinked):.1e}, own sensitivity "
                f"{max(sensitivities):.1e})")
    return "agree"


def time_cli(model: str, repeats: int) -> list[float]:
    command = [shutil.which("netparity") or "netparity", "check", model]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"netparity check {model} failed:\n{done.stdout}\n{done.stderr}")
    return times


def check_one(name: str, frameworks: list[str]) -> dict:
    """One model's row, as JSON-able data (what ``--one`` prints)."""
    result = check_parity(name, frameworks)
    return {"model": name, "ok": bool(result.ok), "input": "x".join(map(str, result.input_shape)),
            "parameters": int(result.spec_parameters),
            "out_rel": max((p.output_max_rel for p in result.pairs), default=float("nan")),
            "grad_rel": max((p.gradient_max_rel for p in result.pairs), default=float("nan")),
            "gradients": gradient_summary(result.pairs), "seconds": {r.framework: r.seconds for r in result.runs},
            "versions": {r.framework: r.version for r in result.runs}}


def check_in_subprocess(name: str, frameworks: list[str]) -> dict:
    command = [sys.executable, "-m", __spec__.name if __spec__ else "netparity.compare.check_zoo", "--one", name,
               "--frameworks", ",".join(frameworks)]
    done = subprocess.run(command, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        why = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        return {"model": name, "ok": False, "error": f"the check process failed (exit {done.returncode}): {why}"}
    return json.loads(lines[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=zoo.names())
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the per-model worker: prints one JSON row
    parser.add_argument("--frameworks", help="comma-separated (default: every installed one)")
    parser.add_argument("--out", type=Path, default=Path("docs/parity.md"))
    parser.add_argument("--time-cli", default="resnet18", help="model whose CLI check is timed ('' to skip)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    frameworks = [n for n in BACKEND_NAMES if n in available()]
    if args.frameworks:
        frameworks = [n for n in args.frameworks.split(",") if n in frameworks]
    if args.one:
        print(json.dumps(check_one(args.one, frameworks), default=float))
        return 0
    lines = ["# Parity of the zoo at default input sizes",
             "",
             f"Measured {date.today()} on {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} CPU cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
             f"load average {os.getloadavg()[0]:.1f} at the start (seconds are wall time), "
             f"batch 2, seed 0, rtol 1e-4 (max|a-b| / max|b| per layer), eval mode, float32, each model in a "
             f"fresh process; every framework is also compared with the float64 NumPy reference. "
             f"Produced by `python -m netparity.compare.check_zoo`.",
             ""]
    header = "| model | input | parameters | parity | worst output rel | worst input-grad rel | input gradients | " + \
             " | ".join(f"{f} s" for f in frameworks) + " |"
    lines += [header, "|" + "---|" * (7 + len(frameworks))]
    versions = {}
    failures = 0
    for name in args.models:
        row = check_in_subprocess(name, frameworks)
        failures += not row["ok"]
        if "error" in row:
            lines.append(f"| {name} | | | FAIL: {row['error']} | | | | " + " | ".join("" for _ in frameworks) + " |")
            print(lines[-1], flush=True)
            continue
        versions.update(row["versions"])
        seconds = row["seconds"]
        lines.append(f"| {name} | {row['input']} | {row['parameters']:,} | "
                     f"{'ok' if row['ok'] else 'FAIL'} | {row['out_rel']:.1e} | {row['grad_rel']:.1e} | "
                     f"{row['gradients']} | "
                     + " | ".join(f"{seconds.get(f, float('nan')):.1f}" for f in frameworks) + " |")
        print(lines[-1], flush=True)
    lines += ["", "Seconds per framework: build, load weights, capture every layer's output, input gradient.",
              "", "Input gradients: 'agree' within rtol; 'kinks' where they differ while every layer's output "
              "agrees and the difference (L2) is within twice what a 1e-5 relative nudge of the input does to "
              "each framework's own gradient, or where they differ on the first draw only and agree on fresh draws: "
              "max-pool/ReLU near-ties decided by float32 rounding (see framework-differences.md).",
              "", "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + f", Python {platform.python_version()}."]
    if args.time_cli:
        times = time_cli(args.time_cli, args.repeats)
        lines += ["", f"`netparity check {args.time_cli}` (all three frameworks, imports included), wall time over "
                  f"{args.repeats} fresh processes: median {statistics.median(times):.1f} s "
                  f"(min {min(times):.1f}, max {max(times):.1f}); target under 60 s."]
        print(lines[-1])
    write_atomic(args.out, "\n".join(lines) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
