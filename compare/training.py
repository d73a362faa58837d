"""Train one spec in several frameworks, each in its own process, and collect the curves.

A run lives in a folder: ``run.json`` (settings and spec), per framework and
seed a state file and a checkpoint written after every epoch, TensorBoard
events, and ``results.json`` merged from them. Frameworks run one after
another, never two at once, so that thread pools and memory do not interfere.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..backends import BACKEND_NAMES, available
from ..spec import Spec, SpecError
from ..spec.files import write_atomic
from .divergence import compare_runs
from .recipes import recipe_for

FORMAT = "netparity.run/1"


@dataclass
class TrainSettings:
    model: str
    epochs: int
    batch_size: int
    lr: float
    momentum: float
    weight_decay: float
    resize: int
    dataset: str
    train_limit: int | None = None
    test_limit: int | None = None
    seed: int = 0
    seeds: int = 1
    device: str = "cpu"
    lockstep: bool = False
    data_dir: str | None = None
    frameworks: tuple[str, ...] = BACKEND_NAMES
    overrides: dict = field(default_factory=dict)
    resume: bool = False
    progress: bool = True

    @classmethod
    def for_model(cls, model: str, **given) -> "TrainSettings":
        """The model's recipe, with every non-None value in ``given`` taking precedence."""
        recipe = recipe_for(Path(model).stem if model.endswith(".json") else model)
        values = dict(epochs=recipe.epochs, batch_size=recipe.batch_size, lr=recipe.lr, momentum=recipe.momentum,
                      weight_decay=recipe.weight_decay, resize=recipe.resize, dataset=recipe.dataset,
                      overrides=dict(recipe.overrides))
        values.update({k: v for k, v in given.items() if v is not None})
        return cls(model=model, **values)


def build_spec(settings: TrainSettings) -> Spec:
    from ..spec import load, zoo

    if settings.model.endswith(".json"):
        spec = load(settings.model)
    else:
        spec = zoo.get(settings.model, **settings.overrides)
    spec = spec.with_input(size=settings.resize)
    spec.infer()
    return spec


def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}


def prepare_run(settings: TrainSettings, run_dir: Path, parity: dict | None = None, command: str = "") -> Spec:
    """Write run.json (or, resuming, check that it describes the same run)."""
    from .datasets import load_dataset, subset

    spec = build_spec(settings)
    config_path = run_dir / "run.json"
    if settings.resume and config_path.exists():
        previous = json.loads(config_path.read_text())
        if previous["spec"] != spec.to_dict():
            raise SpecError(str(config_path), "--resume with a different model or input size than the run "
                            "in this folder; use another --out")
        previous["settings"].update(resume=True, progress=settings.progress)
        write_atomic(config_path, json.dumps(previous, indent=1) + "\n")
        return spec
    data = subset(load_dataset(settings.dataset, data_dir=settings.data_dir, download=True),
                  settings.train_limit, settings.test_limit, seed=0)
    inference = spec.infer()
    record = {key: value for key, value in asdict(settings).items()}
    record.update(frameworks=list(settings.frameworks), data_dir=settings.data_dir or
                  (data.source if data.source != "synthetic" else None),
                  data_source=data.source, train_examples=int(len(data.train_labels)),
                  test_examples=int(len(data.test_labels)), input_shape=list(inference.input_shape),
                  parameters=inference.parameters)
    config = {"format": FORMAT, "model": settings.model, "command": command, "spec": spec.to_dict(),
              "settings": record, "parity": parity,
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine()}
    run_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(config_path, json.dumps(config, indent=1) + "\n")
    return spec


def run_worker(run_dir: Path, framework: str, seed: int) -> int:
    env = dict(os.environ)
    # Thread counts change float bits; pin them, the same for every framework.
    env.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    command = [sys.executable, "-m", "netparity.compare.train_worker", str(run_dir), framework, str(seed)]
    return subprocess.run(command, env=env).returncode


def train(settings: TrainSettings, run_dir: Path, parity: dict | None = None, command: str = "") -> dict:
    """Run every framework and seed (skipping finished ones when resuming); returns results."""
    prepare_run(settings, run_dir, parity, command)
    installed = set(available())
    for seed in range(settings.seed, settings.seed + settings.seeds):
        for framework in settings.frameworks:
            if framework not in installed:
                continue
            code = run_worker(run_dir, framework, seed)
            _note_crash(run_dir, framework, seed, code)
    return collect_results(run_dir)


def _note_crash(run_dir: Path, framework: str, seed: int, code: int) -> None:
    """A worker killed by a signal cannot write its own failure; write it for it."""
    state_path = run_dir / framework / f"seed{seed}.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {
        "framework": framework, "seed": seed, "step_loss": [], "epochs": [], "seconds": 0.0}
    if code == 0 or state.get("status") in ("failed", "nan", "interrupted"):
        return
    if code < 0:
        why = f"the worker process died from signal {signal.Signals(-code).name}"
    else:
        why = f"the worker process exited with code {code} without reporting an error"
    state.update(status="failed", error=why + f" after {len(state.get('epochs', []))} finished epoch(s)")
    write_atomic(state_path, json.dumps(state, indent=1) + "\n")


def known_differences(spec: Spec, settings: dict, frameworks: dict) -> list[dict]:
    kinds = {row.kind for row in spec.infer().leaves()}
    notes = []
    if "batchnorm" in kinds:
        effects = []
        for name, fw in frameworks.items():
            for run in fw["runs"]:
                v = run.get("batchnorm_variance")
                if v:
                    effects.append(f"{name} seed {run['seed']}: test acc {v['test_acc']:.4f} with its "
                                   f"{v['estimator']} running variance, {v['test_acc_with_other_estimator']:.4f} "
                                   "with the other")
        notes.append({"name": "BatchNorm running variance",
                      "detail": "PyTorch updates the running variance with the unbiased batch variance (n-1), "
                                "MXNet and Keras with the biased one (n); no setting changes this. Training-mode "
                                "outputs are identical; eval-mode outputs differ by the factor n/(n-1) per "
                                "BatchNorm layer (n = batch x H x W values per channel).",
                      "measured": "; ".join(effects) or "not measured (no finished run)"})
    if "dropout" in kinds and not settings.get("lockstep"):
        notes.append({"name": "Dropout masks",
                      "detail": "each framework draws its own dropout masks from its own RNG, so curves differ "
                                "from the first step; --lockstep feeds the same NumPy-drawn masks to all",
                      "measured": "see the first divergent step in the divergence table"})
    for name, fw in frameworks.items():
        if fw.get("determinism"):
            notes.append({"name": f"{name} determinism", "detail": fw["determinism"], "measured": ""})
    return notes


def collect_results(run_dir: Path) -> dict:
    """Merge run.json and every worker's state into results.json (atomically)."""
    config = json.loads((run_dir / "run.json").read_text())
    settings = config["settings"]
    seeds = range(settings["seed"], settings["seed"] + settings["seeds"])
    installed = set(available())
    frameworks, skipped = {}, {}
    for name in settings["frameworks"]:
        if name not in installed:
            skipped[name] = f"{name} is not installed (pip install 'netparity[{name}]')"
            continue
        runs = []
        version = determinism = None
        for seed in seeds:
            path = run_dir / name / f"seed{seed}.json"
            state = json.loads(path.read_text()) if path.exists() else {
                "seed": seed, "status": "not started", "error": None, "step_loss": [], "epochs": [], "seconds": 0.0}
            version = state.pop("version", version)
            determinism = state.pop("determinism", determinism)
            state.pop("framework", None)
            runs.append(state)
        frameworks[name] = {"version": version, "determinism": determinism or "", "runs": runs}
    spec = Spec.from_dict(config["spec"])
    results = {"format": FORMAT, "model": config["model"], "command": config["command"],
               "created": config["created"], "machine": {**config["machine"], "device": settings["device"]},
               "settings": settings, "parity": config.get("parity"), "frameworks": frameworks,
               "skipped": skipped, "divergence": compare_runs(frameworks),
               "known_differences": known_differences(spec, settings, frameworks)}
    write_atomic(run_dir / "results.json", json.dumps(results, indent=1) + "\n")
    return results


def command_line() -> str:
    return shlex.join(["netparity", *sys.argv[1:]])
