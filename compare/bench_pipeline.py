"""Is the data pipeline ever the bottleneck? A benchmark, not a test.

    python -m netparity.compare.bench_pipeline [--train-limit 512]

Measures the NumPy batch pipeline's images/s at 96 and 224 px (best of a few
runs) and the training images/s of every installed framework on a model of
that size (resnet18 at 96, vgg11 at 1/4 width at 224: the d2l recipes),
from a short real training run, and prints a Markdown table: the pipeline
must be several times faster than the fastest framework.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from ..backends import BACKEND_NAMES, available
from .datasets import DataError, load_dataset, synthetic
from .pipeline import pipeline_throughput
from .training import TrainSettings, train

CASES = (("resnet18", 96), ("vgg11", 224))


def training_speed(model: str, train_limit: int, frameworks: tuple[str, ...]) -> dict[str, float]:
    """images/s of one short epoch per framework (warm-up batches included, as in a real run)."""
    settings = TrainSettings.for_model(model, frameworks=frameworks, epochs=1, train_limit=train_limit,
                                       test_limit=256, progress=False)
    with tempfile.TemporaryDirectory() as folder:
        results = train(settings, Path(folder) / "run")
    speeds = {}
    for name, framework in results["frameworks"].items():
        run = framework["runs"][0]
        if run["epochs"]:
            speeds[name] = run["epochs"][-1]["images_per_second"]
    return speeds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-limit", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    frameworks = tuple(n for n in BACKEND_NAMES if n in available())
    try:
        dataset = load_dataset("fashion-mnist", download=False)
    except DataError:
        dataset = synthetic(train=4096, test=1)
    print("| size | model (batch) | pipeline images/s | " + " | ".join(f"{f} train images/s" for f in frameworks)
          + " | pipeline / fastest |")
    print("|---|---|---|" + "---|" * len(frameworks) + "---|")
    for model, size in CASES:
        settings = TrainSettings.for_model(model)
        pipeline = max(pipeline_throughput(size, settings.batch_size, 20, dataset=dataset)
                       for _ in range(args.repeats))
        speeds = training_speed(model, args.train_limit, frameworks)
        fastest = max(speeds.values()) if speeds else float("nan")
        print(f"| {size} | {model} ({settings.batch_size}) | {pipeline:,.0f} | "
              + " | ".join(f"{speeds.get(f, float('nan')):,.1f}" for f in frameworks)
              + f" | {pipeline / fastest:,.0f}x |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
