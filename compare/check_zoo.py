"""Check every zoo model at its default input size and time ``netparity check``.

    python -m netparity.compare.check_zoo --out docs/parity.md

Writes a Markdown table (one row per model: parity, worst pairwise output
error, seconds per framework) and, with ``--time-cli MODEL``, the wall time of
the whole ``netparity check MODEL`` command (imports included), median of
``--repeats`` runs in fresh processes. A benchmark, never a timed test.
"""

from __future__ import annotations

import argparse
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
        return (f"kinks (L2 {max(p.gradient_l2_rel for p in kinked):.1e}, own sensitivity "
                f"{max(p.gradient_sensitivity or 0.0 for p in kinked):.1e})")
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=zoo.names())
    parser.add_argument("--out", type=Path, default=Path("docs/parity.md"))
    parser.add_argument("--time-cli", default="resnet18", help="model whose CLI check is timed ('' to skip)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    frameworks = [n for n in BACKEND_NAMES if n in available()]
    lines = ["# Parity of the zoo at default input sizes",
             "",
             f"Measured {date.today()} on {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} CPU cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
             f"batch 2, seed 0, rtol 1e-4 (max|a-b| / max|b| per layer), eval mode, float32. "
             f"Produced by `python -m netparity.compare.check_zoo`.",
             ""]
    header = "| model | input | parameters | parity | worst output rel | worst input-grad rel | input gradients | " + \
             " | ".join(f"{f} s" for f in frameworks) + " |"
    lines += [header, "|" + "---|" * (7 + len(frameworks))]
    versions = {}
    failures = 0
    for name in args.models:
        result = check_parity(name, frameworks)
        versions.update({r.framework: r.version for r in result.runs})
        out_rel = max((p.output_max_rel for p in result.pairs), default=float("nan"))
        grad_rel = max((p.gradient_max_rel for p in result.pairs), default=float("nan"))
        seconds = {r.framework: r.seconds for r in result.runs}
        verdict = gradient_summary(result.pairs)
        failures += not result.ok
        lines.append(f"| {name} | {'x'.join(map(str, result.input_shape))} | {result.spec_parameters:,} | "
                     f"{'ok' if result.ok else 'FAIL'} | {out_rel:.1e} | {grad_rel:.1e} | {verdict} | "
                     + " | ".join(f"{seconds.get(f, float('nan')):.1f}" for f in frameworks) + " |")
        print(lines[-1], flush=True)
    lines += ["", "Seconds per framework: build, load weights, capture every layer's output, input gradient.",
              "", "Input gradients: 'agree' within rtol; 'kinks' where they differ while every layer's output "
              "agrees and the difference (L2) is within twice what a 1e-5 relative nudge of the input does to "
              "each framework's own gradient: max-pool/ReLU near-ties decided by float32 rounding (see "
              "framework-differences.md).",
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
