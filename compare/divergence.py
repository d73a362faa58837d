"""Where training curves of two frameworks come apart, and whether that is more
than one framework differs from itself across seeds."""

from __future__ import annotations

import itertools
import math

import numpy as np

# A step loss difference beyond this fraction of the first step's loss is more than
# float32 rounding: at initialisation the frameworks agree per layer to about 1e-6
# (docs/parity.md), so 1e-4 leaves two orders of magnitude for rounding to grow.
NOISE_FRACTION = 1e-4


def _losses(run: dict) -> np.ndarray:
    return np.array([math.nan if v is None else v for v in run.get("step_loss", [])], dtype=np.float64)


def _final_test_acc(run: dict) -> float | None:
    epochs = run.get("epochs") or []
    return epochs[-1]["test_acc"] if epochs else None


def noise_threshold(frameworks: dict) -> float:
    firsts = [l[0] for fw in frameworks.values() for run in fw["runs"]
              if len(l := _losses(run)) and math.isfinite(l[0])]
    return NOISE_FRACTION * (max(firsts) if firsts else math.log(10))


def compare_runs(frameworks: dict) -> dict:
    """The ``divergence`` section of results.json from its ``frameworks`` section."""
    threshold = noise_threshold(frameworks)
    pairs = []
    names = list(frameworks)
    for a, b in itertools.combinations(names, 2):
        runs_b = {run["seed"]: run for run in frameworks[b]["runs"]}
        for run_a in frameworks[a]["runs"]:
            run_b = runs_b.get(run_a["seed"])
            if run_b is None:
                continue
            la, lb = _losses(run_a), _losses(run_b)
            n = min(len(la), len(lb))
            diff = np.abs(la[:n] - lb[:n])
            beyond = np.nonzero(~(diff <= threshold))[0]  # NaN counts as beyond
            acc_a, acc_b = _final_test_acc(run_a), _final_test_acc(run_b)
            pairs.append({
                "a": a, "b": b, "seed": run_a["seed"], "steps_compared": int(n),
                "max_step_loss_diff": float(np.nanmax(diff)) if n and not np.all(np.isnan(diff)) else None,
                "mean_step_loss_diff": float(np.nanmean(diff)) if n and not np.all(np.isnan(diff)) else None,
                "first_divergent_step": int(beyond[0]) if len(beyond) else None,
                "final_test_acc_diff": None if acc_a is None or acc_b is None else float(acc_a - acc_b),
            })
    return {"noise_threshold": threshold, "pairs": pairs, **_seed_spread(frameworks, pairs)}


def _seed_spread(frameworks: dict, pairs: list[dict]) -> dict:
    spread = {}
    for name, fw in frameworks.items():
        accs = [a for run in fw["runs"] if (a := _final_test_acc(run)) is not None]
        losses = [_losses(run) for run in fw["runs"]]
        n = min((len(l) for l in losses), default=0)
        entry = {"seeds": len(fw["runs"])}
        if accs:
            entry.update(final_test_acc_mean=float(np.mean(accs)), final_test_acc_min=float(min(accs)),
                         final_test_acc_max=float(max(accs)))
        if len(losses) > 1 and n:
            stacked = np.stack([l[:n] for l in losses])
            entry["step_loss_spread"] = float(np.nanmean(np.nanmax(stacked, 0) - np.nanmin(stacked, 0)))
        spread[name] = entry
    seeds = max((len(fw["runs"]) for fw in frameworks.values()), default=0)
    differ = None
    if seeds > 1:
        within = [e["final_test_acc_max"] - e["final_test_acc_min"] for e in spread.values()
                  if "final_test_acc_max" in e]
        across = [abs(p["final_test_acc_diff"]) for p in pairs if p["final_test_acc_diff"] is not None]
        if within and across:
            differ = bool(np.mean(across) > np.mean(within))
    return {"seed_spread": spread, "frameworks_differ_more_than_seeds": differ}
