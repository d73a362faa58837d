"""One framework, one seed: the training run inside its own process.

    python -m netparity.compare.train_worker RUN_DIR FRAMEWORK SEED

Reads RUN_DIR/run.json (settings and spec), writes RUN_DIR/FRAMEWORK/seedK.json
after every epoch (atomically) with a checkpoint beside it, so that a crash
keeps every finished epoch and ``--resume`` continues from the last one.
Metrics are computed here with NumPy from each framework's logits, the same
formula for all three.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from ..backends import get_layout
from ..spec import Spec, init_weights
from ..spec.files import write_atomic
from .progress import TrainingProgress

FAULT_VARIABLE = "NETPARITY_INJECT_FAULT"
"""For tests of failure handling only: ``framework:crash`` makes that framework's worker
die at start (SIGKILL), ``framework:nan`` makes its second step's loss NaN."""

TRAIN_ACCURACY_SAMPLE = 10_000
"""Train accuracy is measured in eval mode on this many training images (the same
ones in every framework), so that dropout noise does not enter the comparison."""


def cross_entropy_and_correct(logits: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
    """Summed softmax cross-entropy (float64) and the number of correct predictions."""
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -float(log_probs[np.arange(len(labels)), labels].sum())
    return loss, int((logits.argmax(axis=1) == labels).sum())


def evaluate(backend, model, images, labels, batch_size: int, size: int) -> tuple[float, float]:
    """(mean loss, accuracy) in eval mode, in a fixed order."""
    from .pipeline import iterate_batches

    total_loss, correct = 0.0, 0
    for x, y in iterate_batches(images, labels, batch_size, size, seed=0, epoch=0, shuffle=False):
        loss, right = cross_entropy_and_correct(backend.forward(model, x), y)
        total_loss += loss
        correct += right
    return total_loss / len(labels), correct / len(labels)


def batchnorm_sample_counts(inference, batch_size: int) -> dict[str, int]:
    """Per BatchNorm layer, how many values each channel's batch statistics average over."""
    counts = {}
    for row in inference.leaves():
        if row.kind == "batchnorm":
            spatial = row.input_shape[1] * row.input_shape[2] if len(row.input_shape) == 3 else 1
            counts[row.path] = batch_size * spatial
    return counts


def other_variance_estimator(weights: dict, counts: dict[str, int], unbiased_now: bool) -> dict:
    """Running variances as the other estimator would have accumulated them.

    Every batch term of PyTorch's running variance is the unbiased estimate, MXNet's
    and Keras' the biased one; they differ by n / (n - 1), and so do the sums.
    """
    changed = dict(weights)
    for path, n in counts.items():
        key = f"{path}.running_var"
        factor = (n - 1) / n if unbiased_now else n / (n - 1)
        changed[key] = (weights[key] * np.float32(factor)).astype(np.float32)
    return changed


class Worker:
    def __init__(self, run_dir: Path, framework: str, seed: int):
        self.run_dir = run_dir
        self.framework = framework
        self.seed = seed
        config = json.loads((run_dir / "run.json").read_text())
        self.settings = config["settings"]
        self.spec = Spec.from_dict(config["spec"], str(run_dir / "run.json"))
        self.state_path = run_dir / framework / f"seed{seed}.json"
        self.checkpoint_path = run_dir / framework / f"seed{seed}.ckpt.npz"
        self.state = self._initial_state()

    def _initial_state(self) -> dict:
        if self.settings.get("resume") and self.state_path.exists():
            return json.loads(self.state_path.read_text())
        return {"framework": self.framework, "seed": self.seed, "status": "running", "error": None,
                "step_loss": [], "epochs": [], "seconds": 0.0}

    def save(self) -> None:
        write_atomic(self.state_path, json.dumps(self.state, indent=1) + "\n")

    def fail(self, status: str, error: str) -> int:
        self.state.update(status=status, error=error)
        self.save()
        return 2 if status == "nan" else 1

    def run(self) -> int:
        if self.state.get("status") == "done" and len(self.state["epochs"]) >= self.settings["epochs"]:
            return 0
        try:
            return self._train()
        except KeyboardInterrupt:
            self.fail("interrupted", "interrupted by the user")
            raise
        except Exception as error:  # keep every finished epoch; say what broke and where
            where = traceback.extract_tb(error.__traceback__)[-1]
            return self.fail("failed", f"{type(error).__name__}: {error} (at {where.filename}:{where.lineno})")

    def _data(self):
        from .datasets import load_dataset, subset

        s = self.settings
        data = load_dataset(s["dataset"], data_dir=s.get("data_dir"), download=False)
        return subset(data, s.get("train_limit"), s.get("test_limit"), seed=0)

    def _injected_fault(self) -> str | None:
        framework, _, fault = os.environ.get(FAULT_VARIABLE, "").partition(":")
        return fault if framework == self.framework else None

    def _train(self) -> int:
        from ..backends import get_backend
        from .lockstep import draw_dropout_masks
        from .pipeline import iterate_batches, steps_per_epoch
        from .tensorboard import EventLog

        s = self.settings
        if self._injected_fault() == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        backend = get_backend(self.framework)
        self.state["version"] = backend.version()
        self.state["determinism"] = backend.seed_everything(self.seed)
        data = self._data()
        inference = self.spec.infer()
        size = inference.input_shape[1]
        model = backend.build(self.spec, device=s["device"], lockstep_dropout=s["lockstep"])
        backend.set_weights(model, init_weights(inference, self.seed, nontrivial=False))
        optimizer = backend.make_optimizer(model, s["lr"], s["momentum"], s["weight_decay"])

        steps = steps_per_epoch(len(data.train_labels), s["batch_size"])
        start_epoch = 0
        if self.state["epochs"] and self.checkpoint_path.exists():
            backend.load_checkpoint(model, optimizer, self.checkpoint_path)
            start_epoch = len(self.state["epochs"])
            del self.state["step_loss"][start_epoch * steps:]
        self.state.update(status="running", error=None)
        self.save()

        sample = np.arange(min(TRAIN_ACCURACY_SAMPLE, len(data.train_labels)))
        events = EventLog(self.run_dir, self.framework, self.seed, fresh=start_epoch == 0)
        progress = TrainingProgress(f"{self.framework} seed {self.seed}", s["epochs"], steps,
                                    enabled=s.get("progress", True))
        try:
            with progress:
                for epoch in range(start_epoch, s["epochs"]):
                    status = self._epoch(backend, model, optimizer, data, inference, epoch, steps, progress, events,
                                         sample, size, iterate_batches, draw_dropout_masks)
                    if status:
                        return status
        finally:
            events.close()
        self._variance_effect(backend, model, data, inference, size)
        self.state["status"] = "done"
        self.save()
        return 0

    def _epoch(self, backend, model, optimizer, data, inference, epoch, steps, progress, events, sample, size,
               iterate_batches, draw_dropout_masks) -> int:
        s = self.settings
        first_step = len(self.state["step_loss"])
        start = time.perf_counter()
        seen = 0
        progress.start_epoch(epoch)
        for step, (x, y) in enumerate(iterate_batches(data.train_images, data.train_labels, s["batch_size"], size,
                                                      seed=self.seed, epoch=epoch, shuffle=True)):
            masks = None
            if s["lockstep"]:
                masks = draw_dropout_masks(inference, len(y), np.random.default_rng([self.seed, epoch, step]))
            loss = float(backend.train_step(model, optimizer, x, y, masks))
            if step == 1 and self._injected_fault() == "nan":
                loss = math.nan
            self.state["step_loss"].append(loss if math.isfinite(loss) else None)
            seen += len(y)
            progress.step(loss, seen / (time.perf_counter() - start))
            if not math.isfinite(loss):
                self.state["seconds"] += time.perf_counter() - start
                return self.fail("nan", f"the loss became {loss} at step {first_step + step} (epoch {epoch + 1}); "
                                        "training stopped")
        train_seconds = time.perf_counter() - start
        train_loss, train_acc = evaluate(backend, model, data.train_images[sample], data.train_labels[sample],
                                         s["batch_size"], size)
        test_loss, test_acc = evaluate(backend, model, data.test_images, data.test_labels, s["batch_size"], size)
        losses = self.state["step_loss"][first_step:]
        metrics = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "train_acc": train_acc,
                   "train_eval_loss": train_loss, "test_loss": test_loss, "test_acc": test_acc,
                   "seconds": train_seconds, "images_per_second": seen / train_seconds}
        self.state["epochs"].append(metrics)
        self.state["seconds"] += time.perf_counter() - start
        events.add_steps(first_step, losses)
        events.add_epoch(epoch + 1, metrics)
        backend.save_checkpoint(model, optimizer, self.checkpoint_path)
        self.save()
        progress.end_epoch(metrics)
        return 0

    def _variance_effect(self, backend, model, data, inference, size) -> None:
        counts = batchnorm_sample_counts(inference, self.settings["batch_size"])
        if not counts:
            return
        weights = backend.get_weights(model)
        unbiased = get_layout(self.framework).RUNNING_VAR_UNBIASED
        backend.set_weights(model, other_variance_estimator(weights, counts, unbiased))
        _, other = evaluate(backend, model, data.test_images, data.test_labels, self.settings["batch_size"], size)
        backend.set_weights(model, weights)
        self.state["batchnorm_variance"] = {
            "estimator": "unbiased" if unbiased else "biased",
            "test_acc": self.state["epochs"][-1]["test_acc"],
            "test_acc_with_other_estimator": other,
        }


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3:
        print("usage: python -m netparity.compare.train_worker RUN_DIR FRAMEWORK SEED", file=sys.stderr)
        return 64
    return Worker(Path(argv[0]), argv[1], int(argv[2])).run()


if __name__ == "__main__":
    sys.exit(main())
