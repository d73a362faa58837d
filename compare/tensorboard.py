"""TensorBoard event files of a training run: one directory per framework and seed.

``RUN_DIR/tensorboard/<framework>/seed<k>/`` holds one run each, so
``tensorboard --logdir RUN_DIR/tensorboard`` overlays every framework and seed
under the same tags: ``train_loss``, ``train_acc``, ``test_acc`` (and any other
number of the epoch record) per epoch, ``step_loss`` per step.

Written with tensorboardX, not tf.summary: it needs only NumPy and protobuf, so a
worker process that has only MXNet (or only PyTorch) installed can log, and a
PyTorch or MXNet worker does not pay TensorFlow's import. It is imported when the
first EventLog opens, never by importing this module. (tensorboardX imports
PyTorch when PyTorch is installed; next to TensorFlow that is harmless, measured:
torch._dynamo, whose triton crashes a process that loaded TensorFlow first, stays
unloaded.)

EventLog writes through tensorboardX's synchronous EventsWriter, not its
SummaryWriter: SummaryWriter hands events to a thread through a queue, and its
flush() does not wait for that queue, so an epoch "flushed" could still be in
memory when a worker is killed.
"""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

STEP_TAG = "step_loss"
EPOCH_TAGS = ("train_loss", "train_acc", "test_acc")  # always there; other numbers of an epoch record follow


def log_directory(run_dir: Path, framework: str, seed: int) -> Path:
    return Path(run_dir) / "tensorboard" / framework / f"seed{seed}"


def _tensorboardx():
    from ..backends.frameworks import load_triton_first

    load_triton_first()  # tensorboardX imports TensorFlow when it is installed
    try:
        from tensorboardX.event_file_writer import EventsWriter
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.summary import scalar
    except ImportError as error:
        raise ImportError("TensorBoard event files need tensorboardX: pip install tensorboardX") from error
    return EventsWriter, Event, scalar


class EventLog:
    """The scalars of one framework and seed, written as training goes.

    ``fresh=True`` first removes the directory's earlier event files (TensorBoard
    reads every file in a directory, so a rerun would draw each curve twice).
    Steps are written buffered, epochs flushed to disk at once (a live TensorBoard,
    or a worker killed later, keeps every finished epoch). Use as a context manager,
    or call close().
    """

    def __init__(self, run_dir: Path, framework: str, seed: int, fresh: bool = False):
        self.directory = log_directory(run_dir, framework, seed)
        if fresh:
            for old in self.directory.glob("events.out.tfevents.*"):
                old.unlink()
        self.directory.mkdir(parents=True, exist_ok=True)
        events_writer, self._event, self._scalar = _tensorboardx()
        self._writer = events_writer(os.path.join(self.directory, "events"))
        self._closed = False

    def _add(self, tag: str, value: float, step: int) -> None:
        self._writer.write_event(self._event(wall_time=time.time(), step=step, summary=self._scalar(tag, value)))

    def add_epoch(self, epoch: int, metrics: dict) -> None:
        """Every number in ``metrics`` (an epoch record of results.json) at step ``epoch``; flushes."""
        for name, value in metrics.items():
            if name != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self._add(name, float(value), epoch)
        self._writer.flush()

    def add_steps(self, start_step: int, losses) -> None:
        """``losses[i]`` at step ``start_step + i``. A NaN is written (TensorBoard shows it); a None is skipped."""
        for offset, loss in enumerate(losses):
            if loss is not None:
                self._add(STEP_TAG, float(loss), start_step + offset)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        if not self._closed:
            self._writer.close()
            self._closed = True

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_events(results: dict, run_dir: Path) -> list[Path]:
    """Event files for every framework and seed of a finished results.json, replacing older ones.

    Returns the directories written, one per run.
    """
    directories = []
    for framework, data in (results.get("frameworks") or {}).items():
        for run in data.get("runs") or []:
            with EventLog(run_dir, framework, run.get("seed", 0), fresh=True) as log:
                log.add_steps(0, run.get("step_loss") or [])
                for epoch in run.get("epochs") or []:
                    log.add_epoch(epoch["epoch"], epoch)
            directories.append(log.directory)
    return directories


def read_scalars(directory: Path) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] from every event file in ``directory``, in file then write order.

    For checks and tests; TensorBoard reads the same files itself.
    """
    _, Event, _ = _tensorboardx()

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(Path(directory).glob("events.out.tfevents.*")):
        for record in _records(path.read_bytes()):
            event = Event.FromString(record)
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def _records(data: bytes):
    # TFRecord framing: length (uint64), its CRC, the payload, the payload's CRC.
    position = 0
    while position + 12 <= len(data):
        (length,) = struct.unpack_from("<Q", data, position)
        start = position + 12
        if start + length + 4 > len(data):  # a record still being written
            return
        yield data[start: start + length]
        position = start + length + 4

