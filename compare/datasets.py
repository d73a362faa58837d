"""Fashion-MNIST and MNIST as NumPy arrays, found on disk or downloaded and verified; and a synthetic set.

Every framework trains on the arrays this module returns, so they must be the same bits everywhere: the
files are checked against the SHA-256 of their decompressed content on every load, not only after a
download. Hashes of the .gz files would not do: Debian's dataset-fashion-mnist recompresses them, while
the decompressed bytes are the official ones.

Where the files are looked for, first match wins:

1. ``data_dir`` (the CLI's ``--data-dir``), then ``$NETPARITY_DATA``: the folder holding the four files,
   or a root holding ``<dataset>/`` folders. An explicit folder without the files is an error, never
   skipped: the user asked for those files.
2. The Debian package folder (``apt-get install dataset-fashion-mnist``): /usr/share/datasets/<dataset>.
3. The user cache, ``$XDG_CACHE_HOME/netparity/<dataset>`` (default ~/.cache/netparity/<dataset>).
4. The official download into that cache, when ``download=True``.

Imports NumPy only; no deep-learning framework.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

import numpy as np

from ..spec.errors import NetparityError
from ..spec.files import atomic_path

DATASET_NAMES = ("fashion-mnist", "mnist", "synthetic")
DATA_ENV = "NETPARITY_DATA"

# IDX magic numbers: two zero bytes, a type code (0x08: unsigned byte), the number of dimensions.
IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
IDX_TYPES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "int16", 0x0C: "int32", 0x0D: "float32",
             0x0E: "float64"}
GZIP_MAGIC = b"\x1f\x8b"

# The four files, by the Dataset field they fill.
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
SIZES = {  # decompressed bytes, the same for both datasets: 16- or 8-byte header, then the payload
    "train-images-idx3-ubyte": 16 + 60000 * 28 * 28,
    "train-labels-idx1-ubyte": 8 + 60000,
    "t10k-images-idx3-ubyte": 16 + 10000 * 28 * 28,
    "t10k-labels-idx1-ubyte": 8 + 10000,
}

FASHION_MNIST_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
                         "bag", "ankle boot")
MNIST_CLASSES = tuple(str(digit) for digit in range(10))
SYNTHETIC_CLASSES = tuple(f"{direction} bar {band}" for direction in ("horizontal", "vertical")
                          for band in range(5))


@dataclass(frozen=True)
class Source:
    """Where a dataset comes from and what its files must contain."""

    title: str
    classes: tuple[str, ...]
    url: str                              # the folder of the official .gz files
    debian: tuple[Path, ...]              # folders a Debian package installs the files into
    package: str | None                   # that package, for the "how to get it" hint
    sha256: Mapping[str, str] | None      # of the decompressed content, by file stem; None: none pinned
    sizes: Mapping[str, int] | None = field(default_factory=lambda: dict(SIZES))


SOURCES: dict[str, Source] = {
    "fashion-mnist": Source(
        title="Fashion-MNIST",
        classes=FASHION_MNIST_CLASSES,
        url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        debian=(Path("/usr/share/datasets/fashion-mnist"),),
        package="dataset-fashion-mnist",
        # Measured on the decompressed files of Debian's dataset-fashion-mnist (the official content).
        sha256={
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        }),
    "mnist": Source(
        title="MNIST",
        classes=MNIST_CLASSES,
        # PyTorch's mirror: yann.lecun.com refuses unauthenticated downloads.
        url="https://ossci-datasets.s3.amazonaws.com/mnist/",
        debian=(Path("/usr/share/datasets/mnist"),),
        package=None,
        # No hash is pinned for MNIST: none could be measured here. Only the decompressed sizes are checked
        # (and that the files are not Fashion-MNIST's, which have the same sizes).
        sha256=None),
}


class DataError(NetparityError, RuntimeError):
    """A data file that is missing, unreadable or not what it should be; the message names the file."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled image dataset in memory: images (N, H, W) uint8, labels (N,) int64 in range(len(classes))."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: tuple[str, ...]
    source: str                           # the folder the files came from, or "synthetic"

    def __post_init__(self):
        for split in ("train", "test"):
            check_split(getattr(self, f"{split}_images"), getattr(self, f"{split}_labels"), len(self.classes),
                        f"{self.source}: {self.name} {split} images", f"{self.source}: {self.name} {split} labels")

    @property
    def image_shape(self) -> tuple[int, int]:
        return tuple(self.train_images.shape[1:])

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train {len(self.train_labels)}, test {len(self.test_labels)}, "
                f"{'x'.join(map(str, self.image_shape))}, {len(self.classes)} classes, source {self.source!r})")


def check_split(images: np.ndarray, labels: np.ndarray, num_classes: int, images_name: str, labels_name: str):
    """One split's images and labels belong together: the same count, uint8 images, labels in range."""
    if not (isinstance(images, np.ndarray) and images.ndim == 3 and images.dtype == np.uint8):
        raise DataError(f"{images_name}: expected uint8 images (N, H, W), got "
                        f"{getattr(images, 'dtype', type(images).__name__)} {getattr(images, 'shape', '')}")
    if not (isinstance(labels, np.ndarray) and labels.ndim == 1 and labels.dtype == np.int64):
        raise DataError(f"{labels_name}: expected int64 labels (N,), got "
                        f"{getattr(labels, 'dtype', type(labels).__name__)} {getattr(labels, 'shape', '')}")
    if len(images) != len(labels):
        raise DataError(f"{images_name} holds {len(images)} images but {labels_name} holds {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)]
        raise DataError(f"{labels_name}: {len(bad)} labels out of range 0..{num_classes - 1} "
                        f"(first: {int(bad[0])} at index {int(np.flatnonzero(labels == bad[0])[0])})")


# ---------------------------------------------------------------------------------------------- IDX files

def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file (gzip or plain, told apart by the gzip magic bytes): images (N, H, W) or labels (N,), uint8.

    The array is read-only: it shares the file's bytes, and nobody should change a dataset in place.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read: {error.strerror or error}") from error
    return parse_idx(decompress(data, str(path)), str(path))


def decompress(data: bytes, where: str) -> bytes:
    """The content of a file that may be gzip-compressed (it is when it starts with 1f 8b)."""
    if not data.startswith(GZIP_MAGIC):
        return data
    try:
        return gzip.decompress(data)
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise DataError(f"{where}: corrupt or truncated gzip file ({error}); "
                        f"delete it and get it again") from error


def parse_idx(data: bytes, where: str) -> np.ndarray:
    if len(data) < 4:
        raise DataError(f"{where}: {len(data)} bytes, too short for an IDX header")
    magic = int.from_bytes(data[:4], "big")
    zeros, type_code, ndim = magic >> 16, (magic >> 8) & 0xFF, magic & 0xFF
    if zeros != 0 or type_code not in IDX_TYPES:
        raise DataError(f"{where}: not an IDX file (magic number 0x{magic:08x}; expected 0x{IMAGES_MAGIC:08x} "
                        f"for images or 0x{LABELS_MAGIC:08x} for labels)")
    if type_code != 0x08:
        raise DataError(f"{where}: IDX type code 0x{type_code:02x} ({IDX_TYPES[type_code]}) is not supported; "
                        f"images and labels are unsigned bytes (0x08)")
    if magic not in (IMAGES_MAGIC, LABELS_MAGIC):
        raise DataError(f"{where}: {ndim}-D IDX data (magic 0x{magic:08x}); expected 3-D images "
                        f"(0x{IMAGES_MAGIC:08x}) or 1-D labels (0x{LABELS_MAGIC:08x})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{where}: {len(data)} bytes, too short for the {header}-byte header of {ndim}-D IDX data")
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape, dtype=np.int64))
    payload = len(data) - header
    if payload != expected:
        raise DataError(f"{where}: the header says {'x'.join(map(str, shape))} = {expected} bytes of data, the "
                        f"file holds {payload} ({'truncated' if payload < expected else 'trailing bytes'})")
    return np.frombuffer(data, np.uint8, count=expected, offset=header).reshape(shape)


# ------------------------------------------------------------------------------------------------ loading

def load_dataset(name: str = "fashion-mnist", data_dir: str | os.PathLike | None = None,
                 download: bool = True) -> Dataset:
    """Fashion-MNIST, MNIST (60,000 + 10,000 images of 28x28) or the synthetic set, checked.

    The files are looked for in data_dir, $NETPARITY_DATA, the Debian package folder and the user cache, in
    that order; with download=True, missing files are downloaded into the cache and verified.
    """
    if name == "synthetic":
        return synthetic()
    if name not in SOURCES:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(DATASET_NAMES)}")
    source = SOURCES[name]
    directory = locate(name, data_dir)
    if directory is None:
        cache = cache_dir(name)
        missing = [stem for stem in FILES.values() if find_file(cache, stem) is None]
        if not download:
            raise DataError(f"{source.title} not found in {', '.join(map(str, _searched(name)))} "
                            f"(download=False). {how_to_get(name)}")
        fetch_missing(name, cache, missing)
        directory = cache
    return load_directory(name, directory)


def locate(name: str, data_dir: str | os.PathLike | None = None) -> Path | None:
    """The folder holding all four files of `name`; None when only a download can provide them."""
    if data_dir is not None:
        return _explicit(name, Path(data_dir), "data_dir (--data-dir)")
    if os.environ.get(DATA_ENV):
        return _explicit(name, Path(os.environ[DATA_ENV]), f"${DATA_ENV}")
    for candidate in SOURCES[name].debian:
        if all(find_file(candidate, stem) for stem in FILES.values()):
            return candidate
    cache = cache_dir(name)
    if all(find_file(cache, stem) for stem in FILES.values()):
        return cache
    return None


def _explicit(name: str, root: Path, origin: str) -> Path:
    """The user's folder, or its <name> subfolder; never a fall-through to other places when it lacks files."""
    for candidate in (root, root / name):
        if all(find_file(candidate, stem) for stem in FILES.values()):
            return candidate
    if not root.is_dir():
        raise DataError(f"{root} (from {origin}) does not exist. {how_to_get(name)}")
    missing = [stem for stem in FILES.values() if find_file(root, stem) is None]
    raise DataError(f"{root} (from {origin}) does not hold the {SOURCES[name].title} files, nor does "
                    f"{root / name}: missing {', '.join(s + '[.gz]' for s in missing)}. {how_to_get(name)}")


def find_file(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def cache_dir(name: str) -> Path:
    """$XDG_CACHE_HOME/netparity/<name>, ~/.cache when the variable is unset (or relative, as XDG says)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "netparity" / name


def how_to_get(name: str, download: bool = True) -> str:
    """The ways to get the files, for error messages (without the download when it just failed)."""
    source = SOURCES[name]
    ways = []
    if source.package:
        ways.append(f"apt-get install {source.package} (installs them into {source.debian[0]})")
    ways.append(f"put {', '.join(FILES.values())} (each may be .gz) in a folder and pass it with --data-dir "
                f"(data_dir=) or ${DATA_ENV}")
    if download:
        ways.append(f"let netparity download them from {source.url} into {cache_dir(name)} (download=True, "
                    f"needs the internet)")
    return "To get them: " + "; or ".join(ways) + "."


def _searched(name: str) -> list[Path]:
    return [*SOURCES[name].debian, cache_dir(name)]


def load_directory(name: str, directory: Path) -> Dataset:
    source = SOURCES[name]
    paths = {key: find_file(directory, stem) for key, stem in FILES.items()}
    arrays = {}
    for key, path in paths.items():
        try:
            data = path.read_bytes()
        except OSError as error:
            raise DataError(f"{path}: cannot read: {error.strerror or error}") from error
        content = decompress(data, str(path))
        verify(name, FILES[key], content, str(path))
        array = parse_idx(content, str(path))
        wanted = 3 if key.endswith("images") else 1
        if array.ndim != wanted:
            raise DataError(f"{path}: holds {'images' if array.ndim == 3 else 'labels'}, expected "
                            f"{'images' if wanted == 3 else 'labels'} (is it misnamed?)")
        arrays[key] = array if wanted == 3 else array.astype(np.int64)
    for split in ("train", "test"):
        check_split(arrays[f"{split}_images"], arrays[f"{split}_labels"], len(source.classes),
                    str(paths[f"{split}_images"]), str(paths[f"{split}_labels"]))
    return Dataset(name, classes=source.classes, source=str(directory), **arrays)


def verify(name: str, stem: str, content: bytes, where: str) -> None:
    """The decompressed content is the official file: its size, its SHA-256 where one is pinned, and not
    another dataset's file."""
    source = SOURCES[name]
    again = "delete it and get the file again"
    if source.sizes is not None and len(content) != source.sizes[stem]:
        raise DataError(f"{where}: {len(content)} bytes decompressed, {source.title}'s {stem} has "
                        f"{source.sizes[stem]}; {again}")
    digest = hashlib.sha256(content).hexdigest()   # 30 ms for the largest file
    for other, other_source in SOURCES.items():
        if other != name and other_source.sha256 and digest in other_source.sha256.values():
            raise DataError(f"{where}: this is {other_source.title}'s file, not {source.title}'s")
    if source.sha256 is not None and digest != source.sha256[stem]:
        raise DataError(f"{where}: SHA-256 of the decompressed content is {digest}, {source.title}'s {stem} "
                        f"has {source.sha256[stem]} (corrupt, or another dataset's file); {again}")


# ------------------------------------------------------------------------------------------------ download

def fetch_missing(name: str, directory: Path, stems: list[str]) -> None:
    """Download the missing .gz files into directory; each is verified before it takes its final name."""
    import http.client

    source = SOURCES[name]
    directory.mkdir(parents=True, exist_ok=True)
    for stem in stems:
        url = f"{source.url}{stem}.gz"

        def check(written: Path, stem=stem, url=url) -> None:
            verify(name, stem, decompress(written.read_bytes(), url), url)

        # Only a verified file gets the name that later loads trust; a failure leaves nothing behind.
        with atomic_path(directory / f"{stem}.gz", verify=check) as temporary:
            try:
                _fetch(url, temporary)
            # URLError, HTTPError, timeouts, refused connections, a full disk; IncompleteRead.
            except (OSError, http.client.HTTPException) as error:
                reason = getattr(error, "reason", None) or error
                raise DataError(f"could not download {url} into {directory}: {reason}. "
                                f"{how_to_get(name, download=False)}") from error


def _fetch(url: str, destination: Path) -> None:
    """Stream url into destination with a progress bar on stderr. Tests replace this function."""
    import urllib.request

    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    with urllib.request.urlopen(url, timeout=60) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
        with Progress(*columns, console=Console(stderr=True)) as progress, open(destination, "wb") as stream:
            task = progress.add_task(url.rsplit("/", 1)[-1], total=total)
            while chunk := response.read(1 << 16):
                stream.write(chunk)
                progress.advance(task, len(chunk))
            stream.flush()
            os.fsync(stream.fileno())


# ---------------------------------------------------------------------------------------- synthetic, subset

def synthetic(train: int = 2000, test: int = 500, size: int = 28, seed: int = 0) -> Dataset:
    """A small learnable 10-class set for smoke tests: one bright bar per image on a noisy background.

    Classes 0-4 are horizontal bars in one of five bands from top to bottom, classes 5-9 vertical bars in
    five bands from left to right; the bar's position jitters within its band, its width and brightness
    vary, Gaussian noise covers everything. Easy on purpose: nearest class means on raw pixels already
    classify the test set (tested); a training run that does not learn it is broken.
    The same arguments give the same bits; the test set does not depend on `train`.
    """
    if train < 1 or test < 1:
        raise ValueError(f"synthetic: train and test must be >= 1, got {train} and {test}")
    if size < 5:
        raise ValueError(f"synthetic: size must be >= 5 (five bands of bars), got {size}")
    train_images, train_labels = _bars(np.random.default_rng([seed, 0]), train, size)
    test_images, test_labels = _bars(np.random.default_rng([seed, 1]), test, size)
    return Dataset("synthetic", train_images, train_labels, test_images, test_labels, SYNTHETIC_CLASSES,
                   "synthetic")


def _bars(rng: np.random.Generator, count: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.permutation(np.arange(count) % 10).astype(np.int64)     # balanced, mixed
    band = size / 5
    centre = (labels % 5 + 0.5) * band + rng.uniform(-band / 4, band / 4, count)
    width = band / 4 * rng.uniform(0.8, 1.25, count)
    brightness = rng.uniform(150, 255, count)
    pixels = np.arange(size) + 0.5
    profile = brightness[:, None] * np.exp(-0.5 * ((pixels - centre[:, None]) / width[:, None]) ** 2)
    horizontal = (labels < 5)[:, None, None]
    images = np.where(horizontal, profile[:, :, None], profile[:, None, :])
    images = images + rng.normal(20, 20, (count, size, size))
    return np.clip(np.rint(images), 0, 255).astype(np.uint8), labels


def subset(dataset: Dataset, train_limit: int | None = None, test_limit: int | None = None,
           seed: int = 0) -> Dataset:
    """At most train_limit / test_limit examples (None: all), the same ones for the same seed.

    The examples are a seeded permutation's first N, so every class stays represented; they keep their
    original order (the indices are sorted), so a limit at or above the size returns the data unchanged.
    A limit above the size is clipped to it. Train and test draw from separate streams: changing one limit
    does not change the other split's subset.
    """
    def pick(images, labels, limit, stream):
        if limit is None:
            return images, labels
        if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
            raise ValueError(f"subset of {dataset.name}: limits must be positive integers or None, got {limit!r}")
        if limit >= len(labels):
            return images, labels
        index = np.sort(np.random.default_rng([seed, stream]).permutation(len(labels))[:limit])
        return images[index], labels[index]

    train_images, train_labels = pick(dataset.train_images, dataset.train_labels, train_limit, 0)
    test_images, test_labels = pick(dataset.test_images, dataset.test_labels, test_limit, 1)
    return replace(dataset, train_images=train_images, train_labels=train_labels, test_images=test_images,
                   test_labels=test_labels)
