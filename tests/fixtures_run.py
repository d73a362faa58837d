"""A realistic results.json (format netparity.run/1) without training anything.

The step losses follow one curve per seed (same weights, same batches), and each
framework adds a float32-sized offset that grows exponentially with the step, as
rounding differences do in training: the pairs stay within the noise threshold for
about 35 steps, then diverge. The divergence section is computed from those losses
the way the orchestrator computes it, so every number in a report can be checked.
"""

from __future__ import annotations

import itertools
import math
import zlib

import numpy as np

from netparity.compare.parity import FrameworkRun, PairReport, ParityResult

NOISE_THRESHOLD = 1e-5
BATCH_SIZE = 256
VERSIONS = {"torch": "2.14.1+cu130", "mxnet": "1.9.1", "keras": "3.15.1 (tensorflow 2.21.0)"}
DETERMINISM = {"torch": "torch.use_deterministic_algorithms(True), 2 threads",
               "mxnet": "MXNET_ENFORCE_DETERMINISM=1, 2 threads",
               "keras": "tf.config.experimental.enable_op_determinism(), 2 threads"}
# Per framework: the scale of its rounding offset (pairs diverge where the difference
# of two scales, times the growth, passes the noise threshold), its accuracy bias
# after divergence, and its throughput.
OFFSET_SCALE = {"torch": 0.0, "mxnet": 1.0, "keras": -0.8}
ACC_BIAS = {"torch": 0.0, "mxnet": 0.0021, "keras": -0.0017}
IMAGES_PER_SECOND = {"torch": 9_850.0, "mxnet": 12_400.0, "keras": 7_150.0}
FAILURE = ("RuntimeError: mxnet.base.MXNetError: Traceback (most recent call last):\n"
           "  File \"src/storage/./pooled_storage_manager.h\", line 161\n"
           "MXNetError: cudaMalloc retry failed: out of memory <during backward>")


def make_results(frameworks=("torch", "mxnet", "keras"), seeds=1, epochs=3, steps=40, failed=None, nan=None,
                 nan_step=None, parity=True) -> dict:
    """A finished run; ``steps`` per epoch. ``failed`` / ``nan``: a framework name or names.

    A failed framework crashes halfway through its second epoch (its first, with one
    epoch); a NaN framework gets a null loss at ``nan_step`` (default: 60% of the run)
    and stops there.
    """
    failed, nan = _names(failed), _names(nan)
    total = epochs * steps
    nan_step = int(0.6 * total) if nan_step is None else nan_step
    framework_data = {}
    for name in frameworks:
        runs = []
        for seed in range(seeds):
            losses = _step_losses(name, seed, total)
            status, error = "done", None
            if name in failed:
                status, error = "failed", FAILURE
                losses = losses[: (steps + steps // 2) if epochs > 1 else steps // 2]
            elif name in nan:
                status, error = "nan", f"loss is NaN at step {nan_step} (epoch {nan_step // steps + 1})"
                losses = [*losses[:nan_step], None]
            complete = min(epochs, _finite(losses).size // steps)
            runs.append({"seed": seed, "status": status, "error": error, "step_loss": losses,
                         "epochs": [_epoch(name, seed, e, losses, steps) for e in range(1, complete + 1)],
                         "seconds": round(len(losses) * BATCH_SIZE / IMAGES_PER_SECOND[name] + 1.7, 2)})
        framework_data[name] = {"version": VERSIONS.get(name, "0.0"), "determinism": DETERMINISM.get(name, ""),
                                "runs": runs}
    return {
        "format": "netparity.run/1",
        "model": "lenet_bn",
        "command": f"netparity train lenet_bn --epochs {epochs} --seeds {seeds} --frameworks {','.join(frameworks)}",
        "created": "2026-11-28T16:40:00+00:00",
        "machine": {"platform": "Linux-6.8.0-x86_64-with-glibc2.39", "processor": "x86_64", "cpu_count": 2,
                    "python": "3.11.7", "device": "cpu", "omp_num_threads": "2"},
        "settings": {"epochs": epochs, "batch_size": BATCH_SIZE, "lr": 0.9, "momentum": 0.0, "weight_decay": 0.0,
                     "resize": 28, "train_limit": steps * BATCH_SIZE, "test_limit": 2000, "seed": 0, "seeds": seeds,
                     "device": "cpu", "lockstep": True, "dataset": "fashion-mnist",
                     "data_source": "/usr/share/datasets/fashion-mnist", "train_examples": steps * BATCH_SIZE,
                     "test_examples": 2000, "input_shape": [1, 28, 28], "parameters": 44878},
        "parity": _parity(frameworks) if parity else None,
        "frameworks": framework_data,
        "divergence": _divergence(framework_data, seeds),
        "known_differences": [
            {"name": "BatchNorm running variance",
             "detail": "PyTorch updates the running variance with the unbiased batch variance (n-1), MXNet and "
                       "Keras with the biased one; no flag changes it.",
             "measured": "test accuracy moves by at most 0.05 points after 3 epochs"},
            {"name": "Weight decay",
             "detail": "Keras decouples weight decay (p -= lr*wd*p before the step); PyTorch and MXNet add wd*p "
                       "to the gradient. Off in this run.",
             "measured": "none at weight_decay 0"},
        ],
    }


def _names(value) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _step_losses(name: str, seed: int, total: int) -> list[float]:
    rng = np.random.default_rng(1000 + seed)  # the batches: shared by every framework of one seed
    t = np.arange(total)
    curve = 0.42 + 1.88 * np.exp(-t / (0.22 * total)) + 0.05 * rng.standard_normal(total) * np.exp(-t / total)
    wiggle = np.random.default_rng(zlib.crc32(name.encode()) + seed).standard_normal(total)
    offset = OFFSET_SCALE.get(name, 0.5) * np.minimum(2e-7 * 1.12 ** t, 0.03) * (1 + 0.3 * wiggle)
    return [round(float(v), 9) for v in curve + offset]


def _epoch(name, seed, epoch, losses, steps) -> dict:
    train_loss = float(np.mean(losses[(epoch - 1) * steps: epoch * steps]))
    jitter = 0.004 * math.sin(7.0 * seed + epoch)  # seed-to-seed spread
    train_acc = 1.0 - 0.31 * train_loss + ACC_BIAS.get(name, 0) * epoch / 2 + jitter
    test_acc = train_acc - 0.012 + 0.5 * ACC_BIAS.get(name, 0)
    ips = IMAGES_PER_SECOND.get(name, 5000.0) * (0.8 if epoch == 1 else 1.0 + 0.01 * seed)
    return {"epoch": epoch, "train_loss": round(train_loss, 6), "train_acc": round(train_acc, 6),
            "test_loss": round(train_loss * 1.06, 6), "test_acc": round(test_acc, 6),
            "seconds": round(steps * BATCH_SIZE / ips, 3), "images_per_second": round(ips, 1)}


def _finite(losses) -> np.ndarray:
    values = np.array([np.nan if v is None else v for v in losses], dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    return values[: bad[0]] if bad.size else values


def _final_acc(run):
    return run["epochs"][-1]["test_acc"] if run["status"] == "done" and run["epochs"] else None


def _divergence(framework_data: dict, seeds: int) -> dict:
    pairs = []
    for a, b in itertools.combinations(framework_data, 2):
        for seed in range(seeds):
            run_a, run_b = framework_data[a]["runs"][seed], framework_data[b]["runs"][seed]
            la, lb = _finite(run_a["step_loss"]), _finite(run_b["step_loss"])
            n = min(la.size, lb.size)
            if not n:
                continue
            diff = np.abs(la[:n] - lb[:n])
            beyond = np.flatnonzero(diff > NOISE_THRESHOLD)
            acc_a, acc_b = _final_acc(run_a), _final_acc(run_b)
            pairs.append({"a": a, "b": b, "seed": seed, "max_step_loss_diff": float(diff.max()),
                          "mean_step_loss_diff": float(diff.mean()),
                          "first_divergent_step": int(beyond[0]) if beyond.size else None,
                          "final_test_acc_diff": None if acc_a is None or acc_b is None else acc_a - acc_b})
    spread, differ = {}, None
    if seeds > 1:
        for name, data in framework_data.items():
            finals = [acc for acc in map(_final_acc, data["runs"]) if acc is not None]
            stacked = [_finite(r["step_loss"]) for r in data["runs"]]
            n = min(s.size for s in stacked)
            if not finals or not n:
                continue
            by_step = np.stack([s[:n] for s in stacked])
            spread[name] = {"final_test_acc_mean": float(np.mean(finals)), "final_test_acc_min": float(min(finals)),
                            "final_test_acc_max": float(max(finals)),
                            "step_loss_spread": float(np.mean(by_step.max(0) - by_step.min(0)))}
        across = [abs(p["final_test_acc_diff"]) for p in pairs if p["final_test_acc_diff"] is not None]
        within = [s["final_test_acc_max"] - s["final_test_acc_min"] for s in spread.values()]
        if across and within:
            differ = max(across) > max(within)
    return {"noise_threshold": NOISE_THRESHOLD, "pairs": pairs, "seed_spread": spread,
            "frameworks_differ_more_than_seeds": differ}


def _parity(frameworks) -> dict:
    result = ParityResult("lenet_bn", [1, 28, 28], 2, 0, "cpu", 1e-4, 44878, 452)
    for name in frameworks:
        result.runs.append(FrameworkRun(name, VERSIONS.get(name, "0.0"), 0.2, 44878, 452))
    for a, b in itertools.combinations(frameworks, 2):
        result.pairs.append(PairReport(a, b, 1.49e-07, 1.31e-07, 1.6e-10, 6.49e-07, None, None, "blocks[10]",
                                       2.47e-07, True, gradient_l2_rel=5.44e-07))
    return result.to_dict()
