"""The per-framework progress bar of a training run (rich)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)


class TrainingProgress:
    """``framework seed k · epoch e/E [bar] step n/N · loss · images/s · ETA``."""

    def __init__(self, label: str, epochs: int, steps: int, enabled: bool = True):
        self.label, self.epochs, self.steps, self.enabled = label, epochs, steps, enabled
        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.fields[label]}[/] epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[speed]} img/s"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=self.console, disable=not enabled, transient=False)
        self.task = None

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def start_epoch(self, epoch: int) -> None:
        fields = dict(label=self.label, epoch=epoch + 1, epochs=self.epochs, loss="-", speed="-")
        if self.task is None:
            self.task = self.progress.add_task("train", total=self.steps, **fields)
        else:
            self.progress.reset(self.task, total=self.steps, **fields)

    def step(self, loss: float, images_per_second: float) -> None:
        self.progress.update(self.task, advance=1, loss=f"{loss:.4f}", speed=f"{images_per_second:,.0f}")

    def end_epoch(self, metrics: dict) -> None:
        if self.enabled:
            self.console.print(f"  {self.label} epoch {metrics['epoch']}: train loss {metrics['train_loss']:.4f}, "
                               f"train acc {metrics['train_acc']:.3f}, test acc {metrics['test_acc']:.3f}, "
                               f"{metrics['images_per_second']:,.0f} img/s", highlight=False)
