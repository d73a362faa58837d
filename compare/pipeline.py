"""Training batches in NumPy: the same bits in the same order for every framework.

An epoch's order is a permutation drawn from ``np.random.default_rng([seed, epoch])``: it depends on nothing
else, so epoch k is the same in PyTorch, MXNet and Keras, and again after a resume. Images are resized per
batch (resizing 60,000 images to 224x224 upfront would take 12 GB of float32) by bilinear interpolation
written as two matrix products: torch.nn.functional.interpolate(mode='bilinear', align_corners=False,
antialias=False) to float32 rounding. The d2l scripts resize uint8 PIL images instead, which rounds every
resized pixel to a multiple of 1/255; here they stay float32, the same in every framework.

An image's resized pixels do not depend on its batch. They are the same bits within one machine and
NumPy/BLAS build, which is where frameworks are compared; on another CPU the BLAS kernel (FMA or not) may
change a resized pixel in its last bit. Sizes equal to the source size skip BLAS: exactly images / 255.

    python -m netparity.compare.pipeline            # images/s at 28, 96 and 224 px

Imports NumPy only; no deep-learning framework.
"""

from __future__ import annotations

import argparse
import functools
import time
from typing import Iterator

import numpy as np

from .datasets import DataError, Dataset, load_dataset, synthetic

# uint8 -> float32 in [0, 1] by table lookup: exactly np.float32(images / 255), faster than dividing.
_UNIT = (np.arange(256) / 255).astype(np.float32)
_UNIT.flags.writeable = False


@functools.lru_cache(maxsize=None)
def interpolation_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) float32 weights of 1-D bilinear resampling with half-pixel centres.

    Output pixel i samples the input at (i + 0.5) * in_size / out_size - 0.5 (align_corners=False), clamped
    at 0 as PyTorch does; its row holds 1 - t and t on the two neighbouring input pixels, the upper one
    clamped to the last. No antialiasing: downsampling skips pixels, like torch.nn.functional.interpolate(
    mode='bilinear', antialias=False). Read-only, because it is shared through the cache.
    """
    if in_size < 1 or out_size < 1:
        raise ValueError(f"interpolation_matrix: sizes must be >= 1, got {in_size} -> {out_size}")
    position = np.maximum((np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5, 0.0)
    lower = np.minimum(np.floor(position).astype(np.int64), in_size - 1)
    upper = np.minimum(lower + 1, in_size - 1)
    weight = position - lower
    matrix = np.zeros((out_size, in_size), np.float64)
    rows = np.arange(out_size)
    np.add.at(matrix, (rows, lower), 1.0 - weight)   # add.at: lower == upper at the last pixel
    np.add.at(matrix, (rows, upper), weight)
    matrix = matrix.astype(np.float32)
    matrix.flags.writeable = False
    return matrix


def resize_bilinear(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 images (N, H, W) -> float32 (N, 1, size, size) in [0, 1], bilinear, align_corners=False."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(f"resize_bilinear: expected uint8 images (N, H, W), got {images.dtype} {images.shape}")
    if size < 1:
        raise ValueError(f"resize_bilinear: size must be >= 1, got {size}")
    count, height, width = images.shape
    unit = _UNIT[images]
    if (height, width) == (size, size):
        return unit[:, None]
    rows = interpolation_matrix(height, size)
    columns = interpolation_matrix(width, size)
    # One GEMM of the same shape per image, never one GEMM over the batch: BLAS rounds a row differently
    # depending on where it falls in a big matrix, and an image must not change with its batch (the last,
    # partial one included) or the batch size. Measured no slower than batched GEMMs at 96 and 224 px.
    across = np.matmul(unit, columns.T)                              # (N, H, size): along each row
    out = np.empty((count, 1, size, size), np.float32)
    np.matmul(rows, across, out=out[:, 0])                           # (N, size, size): along each column
    return out


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Batches in one epoch of n examples; the last, partial batch counts."""
    return -(-n // batch_size)


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The order of the n examples in this epoch: a function of (seed, epoch) alone."""
    if seed < 0 or epoch < 0:
        raise ValueError(f"seed and epoch must be >= 0, got seed {seed}, epoch {epoch}")
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([seed, epoch]).permutation(n)


class Batches:
    """One epoch of (x, y): x float32 (B, 1, size, size) in [0, 1], y int64 (B,); the last batch may be short.

    Iterable more than once (each pass yields the same batches) and sized, for progress bars. The last
    partial batch is kept, as the Dive into Deep Learning scripts keep it, so every example is seen once.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, size: int, seed: int,
                 epoch: int, shuffle: bool = True):
        images = np.asarray(images)
        labels = np.asarray(labels)
        if images.dtype != np.uint8 or images.ndim != 3:
            raise ValueError(f"Batches: expected uint8 images (N, H, W), got {images.dtype} {images.shape}")
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or len(labels) != len(images):
            raise ValueError(f"Batches: expected {len(images)} integer labels (N,), got {labels.dtype} "
                             f"{labels.shape}")
        if batch_size < 1 or size < 1:
            raise ValueError(f"Batches: batch_size and size must be >= 1, got {batch_size} and {size}")
        self.images = images
        self.labels = labels.astype(np.int64, copy=False)
        self.batch_size = batch_size
        self.size = size
        self.seed = seed
        self.epoch = epoch
        self.order = epoch_order(len(labels), seed, epoch, shuffle)

    def __len__(self) -> int:
        return steps_per_epoch(len(self.labels), self.batch_size)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, len(self.order), self.batch_size):
            index = self.order[start:start + self.batch_size]
            yield resize_bilinear(self.images[index], self.size), self.labels[index]


def iterate_batches(images: np.ndarray, labels: np.ndarray, batch_size: int, size: int, seed: int, epoch: int,
                    shuffle: bool = True) -> Batches:
    """The batches of one epoch (see Batches); iterate over the result."""
    return Batches(images, labels, batch_size, size, seed, epoch, shuffle)


def pipeline_throughput(size: int, batch_size: int = 128, batches: int = 20, *,
                        dataset: Dataset | None = None) -> float:
    """Images per second through iterate_batches at this size: Fashion-MNIST if present, else synthetic.

    A benchmark, not a test: it depends on the machine and its load.
    """
    if dataset is None:
        try:
            dataset = load_dataset("fashion-mnist", download=False)
        except DataError:
            dataset = synthetic(train=batch_size * batches, test=1)
    images, labels = dataset.train_images, dataset.train_labels
    resize_bilinear(images[:batch_size], size)          # builds the cached matrices, warms the allocator
    start = time.perf_counter()
    seen = 0
    for _, (x, y) in zip(range(batches), iterate_batches(images, labels, batch_size, size, seed=0, epoch=0)):
        seen += len(y)
    return seen / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Measure the batch pipeline's throughput in images/s.")
    parser.add_argument("--sizes", type=int, nargs="+", default=[28, 96, 224])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3, help="report the best of this many runs")
    args = parser.parse_args(argv)
    try:
        dataset = load_dataset("fashion-mnist", download=False)
    except DataError as error:
        print(f"no Fashion-MNIST ({error}); using the synthetic set")
        dataset = synthetic(train=max(args.batch_sizes) * args.batches, test=1)
    print(f"{dataset!r}")
    for size in args.sizes:
        for batch_size in args.batch_sizes:
            best = max(pipeline_throughput(size, batch_size, args.batches, dataset=dataset)
                       for _ in range(args.repeats))
            print(f"{size:>4} px  batch {batch_size:>4}: {best:>10,.0f} images/s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
