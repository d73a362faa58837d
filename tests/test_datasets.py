"""Datasets: IDX files and their errors, where the files are looked for, verification, downloads (faked),
the synthetic set and subsets. No test reads the real cache or touches the network."""

import gzip
import hashlib
import urllib.error
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netparity.compare import datasets
from netparity.compare.datasets import FILES, DataError, Dataset, load_dataset, read_idx, subset, synthetic

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
REAL_SOURCES = dict(datasets.SOURCES)


def idx_bytes(array, magic=None) -> bytes:
    array = np.asarray(array, np.uint8)
    magic = 0x0800 | array.ndim if magic is None else magic
    return magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape) + array.tobytes()


def write_dataset(directory: Path, seed=0, train=12, test=6, compress=True) -> dict:
    """Four small IDX files in Fashion-MNIST's names; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {"train_images": rng.integers(0, 256, (train, 28, 28), dtype=np.uint8),
              "train_labels": np.arange(train) % 10,
              "test_images": rng.integers(0, 256, (test, 28, 28), dtype=np.uint8),
              "test_labels": rng.integers(0, 10, test)}
    directory.mkdir(parents=True, exist_ok=True)
    for key, stem in FILES.items():
        data = idx_bytes(arrays[key])
        (directory / (stem + ".gz" if compress else stem)).write_bytes(gzip.compress(data) if compress else data)
    return arrays


def assert_loaded(dataset: Dataset, arrays: dict, directory: Path):
    assert dataset.source == str(directory)
    for key, array in arrays.items():
        np.testing.assert_array_equal(getattr(dataset, key), array, err_msg=key)


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """Debian folder and cache under tmp_path, no $NETPARITY_DATA, no pinned hashes/sizes, no network."""
    monkeypatch.delenv(datasets.DATA_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for name, source in REAL_SOURCES.items():
        monkeypatch.setitem(datasets.SOURCES, name,
                            replace(source, debian=(tmp_path / "debian" / name,), sha256=None, sizes=None))

    def offline(url, destination):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution (tests are offline)")
    monkeypatch.setattr(datasets, "_fetch", offline)


def pin(monkeypatch, name, **changes):
    monkeypatch.setitem(datasets.SOURCES, name, replace(datasets.SOURCES[name], **changes))


# ------------------------------------------------------------------------------------------------ IDX

@settings(max_examples=25, deadline=None)
@given(shape=st.one_of(st.tuples(st.integers(0, 5), st.integers(1, 6), st.integers(1, 6)),
                       st.tuples(st.integers(0, 40))),
       compress=st.booleans(), seed=st.integers(0, 2 ** 32 - 1))
def test_idx_round_trip(tmp_path_factory, shape, compress, seed):
    array = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    data = idx_bytes(array)
    path = tmp_path_factory.mktemp("idx") / "file"
    path.write_bytes(gzip.compress(data) if compress else data)
    read = read_idx(path)
    assert read.dtype == np.uint8 and read.shape == shape
    np.testing.assert_array_equal(read, array)
    assert not read.flags.writeable


GOOD = idx_bytes(np.arange(2 * 3 * 4).reshape(2, 3, 4))
GOOD_GZ = gzip.compress(GOOD)
BAD_FILES = {
    "truncated gzip": (GOOD_GZ[:len(GOOD_GZ) // 2], "corrupt or truncated gzip"),
    "gzip with a bad CRC": (GOOD_GZ[:-8] + bytes(8), "corrupt or truncated gzip"),
    "gzip with garbled data": (GOOD_GZ[:10] + b"\xff" * 10 + GOOD_GZ[20:], "corrupt or truncated gzip"),
    "wrong magic": (b"\x12\x34" + GOOD[2:], "not an IDX file (magic number 0x12340803"),
    "float32 type code": (b"\x00\x00\x0d\x03" + GOOD[4:], "type code 0x0d (float32) is not supported"),
    "unknown type code": (b"\x00\x00\x07\x03" + GOOD[4:], "not an IDX file"),
    "2-D data": (idx_bytes(np.zeros((3, 4))), "2-D IDX data"),
    "4-D data": (idx_bytes(np.zeros((1, 2, 3, 4))), "4-D IDX data"),
    "payload too short": (GOOD[:-5], "2x3x4 = 24 bytes of data, the file holds 19 (truncated)"),
    "payload too long": (GOOD + b"\x00\x00", "the file holds 26 (trailing bytes)"),
    "header too short": (GOOD[:10], "too short for the 16-byte header"),
    "empty file": (b"", "0 bytes, too short"),
}


@pytest.mark.parametrize("case", BAD_FILES)
@pytest.mark.parametrize("compress", [False, True])
def test_bad_idx_files_name_the_file_and_the_problem(tmp_path, case, compress):
    data, message = BAD_FILES[case]
    if compress and not case.startswith("gzip") and case != "truncated gzip":
        data = gzip.compress(data)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(data)
    with pytest.raises(DataError) as caught:
        read_idx(path)
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_missing_idx_file_names_it(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "nowhere")


def test_images_and_labels_of_different_counts_name_both_files(tmp_path):
    arrays = write_dataset(tmp_path / "data")
    labels = tmp_path / "data" / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(idx_bytes(arrays["train_labels"][:-1])))
    with pytest.raises(DataError) as caught:
        load_dataset(data_dir=tmp_path / "data", download=False)
    message = str(caught.value)
    assert str(tmp_path / "data" / "train-images-idx3-ubyte.gz") in message and str(labels) in message
    assert "12 images" in message and "11 labels" in message


def test_labels_out_of_range_name_the_file(tmp_path):
    arrays = write_dataset(tmp_path)
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(idx_bytes(np.r_[arrays["test_labels"][:-1], 10])))
    with pytest.raises(DataError, match=r"labels out of range 0\.\.9 \(first: 10 at index 5\)") as caught:
        load_dataset(data_dir=tmp_path, download=False)
    assert str(labels) in str(caught.value)


def test_labels_where_images_belong_are_reported(tmp_path):
    arrays = write_dataset(tmp_path)
    images = tmp_path / "t10k-images-idx3-ubyte.gz"
    images.write_bytes(gzip.compress(idx_bytes(arrays["test_labels"])))
    with pytest.raises(DataError, match="holds labels, expected images") as caught:
        load_dataset(data_dir=tmp_path, download=False)
    assert str(images) in str(caught.value)


def test_dataset_checks_its_arrays():
    images, labels = np.zeros((3, 4, 4), np.uint8), np.zeros(3, np.int64)
    Dataset("d", images, labels, images, labels, ("a", "b"), "here")
    with pytest.raises(DataError, match="here: d train images holds 3 images but here: d train labels holds 2"):
        Dataset("d", images, labels[:2], images, labels, ("a", "b"), "here")
    with pytest.raises(DataError, match="expected int64 labels"):
        Dataset("d", images, labels, images, labels.astype(np.int32), ("a", "b"), "here")
    with pytest.raises(DataError, match="out of range 0..1"):
        Dataset("d", images, labels, images, labels + 2, ("a", "b"), "here")


# ------------------------------------------------------------------------------------------ locations

def test_location_order_data_dir_then_env_then_debian_then_cache(tmp_path, monkeypatch):
    places = {"data_dir": tmp_path / "mine", "env": tmp_path / "env", "debian": tmp_path / "debian" / "fashion-mnist",
              "cache": tmp_path / "cache" / "netparity" / "fashion-mnist"}
    written = {place: write_dataset(directory, seed=i, compress=i % 2 == 0)
               for i, (place, directory) in enumerate(places.items())}
    monkeypatch.setenv(datasets.DATA_ENV, str(places["env"]))
    assert_loaded(load_dataset(data_dir=places["data_dir"], download=False), written["data_dir"], places["data_dir"])
    assert_loaded(load_dataset(download=False), written["env"], places["env"])
    monkeypatch.delenv(datasets.DATA_ENV)
    assert_loaded(load_dataset(download=False), written["debian"], places["debian"])
    for path in places["debian"].iterdir():
        path.unlink()
    assert_loaded(load_dataset(download=False), written["cache"], places["cache"])


def test_a_root_with_dataset_folders_works_for_env_and_data_dir(tmp_path, monkeypatch):
    folder = tmp_path / "root" / "mnist"
    arrays = write_dataset(folder)
    assert_loaded(load_dataset("mnist", data_dir=tmp_path / "root", download=False), arrays, folder)
    monkeypatch.setenv(datasets.DATA_ENV, str(tmp_path / "root"))
    assert_loaded(load_dataset("mnist", download=False), arrays, folder)


@pytest.mark.parametrize("how", ["data_dir", "env"])
def test_an_explicit_folder_without_the_files_is_an_error_not_skipped(tmp_path, monkeypatch, how):
    write_dataset(tmp_path / "debian" / "fashion-mnist")            # would be found next: must not be
    explicit = tmp_path / "explicit"
    write_dataset(explicit)
    (explicit / "t10k-labels-idx1-ubyte.gz").unlink()
    if how == "env":
        monkeypatch.setenv(datasets.DATA_ENV, str(explicit))
    with pytest.raises(DataError) as caught:
        load_dataset(data_dir=explicit if how == "data_dir" else None)
    message = str(caught.value)
    assert str(explicit) in message and "missing t10k-labels-idx1-ubyte[.gz]" in message
    assert ("$NETPARITY_DATA" if how == "env" else "--data-dir") in message
    assert "apt-get install dataset-fashion-mnist" in message


def test_a_data_dir_that_does_not_exist(tmp_path):
    with pytest.raises(DataError, match="does not exist") as caught:
        load_dataset(data_dir=tmp_path / "typo")
    assert str(tmp_path / "typo") in str(caught.value)


def test_cache_follows_xdg_cache_home(tmp_path, monkeypatch):
    assert datasets.cache_dir("mnist") == tmp_path / "cache" / "netparity" / "mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert datasets.cache_dir("mnist") == Path.home() / ".cache" / "netparity" / "mnist"


def test_unknown_dataset():
    with pytest.raises(DataError, match="unknown dataset 'cifar'; known: fashion-mnist, mnist, synthetic"):
        load_dataset("cifar")


# ------------------------------------------------------------------------------------------ verification

def digests(arrays: dict) -> dict:
    return {stem: hashlib.sha256(idx_bytes(arrays[key])).hexdigest() for key, stem in FILES.items()}


def test_pinned_hash_mismatch_names_the_file(tmp_path, monkeypatch):
    pin(monkeypatch, "fashion-mnist", sha256=REAL_SOURCES["fashion-mnist"].sha256)
    write_dataset(tmp_path)
    with pytest.raises(DataError, match="SHA-256 of the decompressed content") as caught:
        load_dataset(data_dir=tmp_path, download=False)
    assert str(tmp_path / "train-images-idx3-ubyte.gz") in str(caught.value)


def test_pinned_sizes_are_checked(tmp_path, monkeypatch):
    pin(monkeypatch, "mnist", sizes=datasets.SIZES)
    write_dataset(tmp_path)
    with pytest.raises(DataError, match="9424 bytes decompressed, MNIST's train-images-idx3-ubyte has 47040016"):
        load_dataset("mnist", data_dir=tmp_path, download=False)


def test_fashion_mnist_files_are_not_taken_for_mnist(tmp_path, monkeypatch):
    arrays = write_dataset(tmp_path)
    pin(monkeypatch, "fashion-mnist", sha256=digests(arrays))
    assert_loaded(load_dataset("fashion-mnist", data_dir=tmp_path, download=False), arrays, tmp_path)
    with pytest.raises(DataError, match="this is Fashion-MNIST's file, not MNIST's"):
        load_dataset("mnist", data_dir=tmp_path, download=False)


# ------------------------------------------------------------------------------------------ downloads (faked)

def test_no_files_and_download_false_says_how_to_get_them(monkeypatch):
    calls = []
    monkeypatch.setattr(datasets, "_fetch", lambda url, destination: calls.append(url))
    with pytest.raises(DataError) as caught:
        load_dataset(download=False)
    message = str(caught.value)
    for hint in ("download=False", "apt-get install dataset-fashion-mnist", "--data-dir", "$NETPARITY_DATA",
                 "download=True"):
        assert hint in message
    assert calls == []


def test_offline_download_is_a_data_error_with_the_ways_to_get_the_files(tmp_path):
    with pytest.raises(DataError) as caught:
        load_dataset()
    message = str(caught.value)
    assert "could not download http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/" in message
    assert "Temporary failure in name resolution" in message
    assert "apt-get install dataset-fashion-mnist" in message and "--data-dir" in message
    assert list((tmp_path / "cache" / "netparity" / "fashion-mnist").iterdir()) == []   # no temporary left


def fake_server(files: dict, calls: list):
    def fetch(url, destination):
        calls.append(url)
        destination.write_bytes(files[url.rsplit("/", 1)[-1]])
    return fetch


def test_download_verifies_then_renames_into_the_cache(tmp_path, monkeypatch):
    arrays = write_dataset(tmp_path / "server")
    pin(monkeypatch, "fashion-mnist", sha256=digests(arrays))
    calls = []
    files = {p.name: p.read_bytes() for p in (tmp_path / "server").iterdir()}
    monkeypatch.setattr(datasets, "_fetch", fake_server(files, calls))
    cache = tmp_path / "cache" / "netparity" / "fashion-mnist"
    cache.mkdir(parents=True)
    (cache / "t10k-labels-idx1-ubyte.gz").write_bytes(files["t10k-labels-idx1-ubyte.gz"])   # already there

    assert_loaded(load_dataset(), arrays, cache)
    assert calls == [f"http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/{stem}.gz"
                     for stem in list(FILES.values())[:3]]
    assert sorted(p.name for p in cache.iterdir()) == sorted(files)
    assert_loaded(load_dataset(download=False), arrays, cache)      # the cache now serves it


def test_a_download_with_the_wrong_content_is_rejected_and_not_kept(tmp_path, monkeypatch):
    write_dataset(tmp_path / "server")
    pin(monkeypatch, "mnist", sha256=None, sizes=datasets.SIZES)
    files = {p.name: p.read_bytes() for p in (tmp_path / "server").iterdir()}
    monkeypatch.setattr(datasets, "_fetch", fake_server(files, []))
    with pytest.raises(DataError, match="https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz: "
                                        "9424 bytes decompressed"):
        load_dataset("mnist")
    assert list((tmp_path / "cache" / "netparity" / "mnist").iterdir()) == []


# ------------------------------------------------------------------------------------------ real data

def test_real_fashion_mnist(monkeypatch):
    if not all(datasets.find_file(DEBIAN_FASHION, stem) for stem in FILES.values()):
        pytest.skip(f"Fashion-MNIST is not in {DEBIAN_FASHION}: apt-get install dataset-fashion-mnist")
    monkeypatch.setitem(datasets.SOURCES, "fashion-mnist", REAL_SOURCES["fashion-mnist"])
    assert datasets.locate("fashion-mnist") == DEBIAN_FASHION      # found without being told where
    for stem in FILES.values():                                    # the pinned hashes, computed independently
        content = gzip.decompress(datasets.find_file(DEBIAN_FASHION, stem).read_bytes())
        assert hashlib.sha256(content).hexdigest() == REAL_SOURCES["fashion-mnist"].sha256[stem]
        assert len(content) == datasets.SIZES[stem]
    data = load_dataset("fashion-mnist", download=False)
    assert data.train_images.shape == (60000, 28, 28) and data.test_images.shape == (10000, 28, 28)
    assert data.train_images.dtype == np.uint8 and data.train_labels.dtype == np.int64
    assert np.bincount(data.train_labels).tolist() == [6000] * 10
    assert np.bincount(data.test_labels).tolist() == [1000] * 10
    assert data.classes[0] == "t-shirt" and data.classes[9] == "ankle boot"
    assert data.source == str(DEBIAN_FASHION)


# ------------------------------------------------------------------------------------------ synthetic, subset

def test_synthetic_is_deterministic_balanced_and_learnable():
    a, b, other = synthetic(seed=3), synthetic(seed=3), synthetic(seed=4)
    for key in ("train_images", "train_labels", "test_images", "test_labels"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    assert not np.array_equal(a.train_images, other.train_images)
    np.testing.assert_array_equal(synthetic(train=100, seed=3).test_images, a.test_images)  # test set fixed
    assert a.train_images.shape == (2000, 28, 28) and a.test_images.shape == (500, 28, 28)
    assert np.bincount(a.train_labels).tolist() == [200] * 10 and a.source == "synthetic"
    # Learnable: even nearest class means, on raw pixels, classify the test set well.
    x = a.train_images.reshape(len(a.train_images), -1).astype(np.float32)
    means = np.stack([x[a.train_labels == k].mean(0) for k in range(10)])
    test = a.test_images.reshape(len(a.test_images), -1).astype(np.float32)
    predicted = np.argmin(((test[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert (predicted == a.test_labels).mean() > 0.9
    assert synthetic(train=10, test=10, size=64).train_images.shape == (10, 64, 64)


def indexed(n_train, n_test) -> Dataset:
    """A dataset whose images encode their own index (4 little-endian bytes in a 2x2 image)."""
    def split(n):
        return np.arange(n, dtype="<u4").view(np.uint8).reshape(n, 2, 2), np.arange(n, dtype=np.int64) % 10
    return Dataset("indexed", *split(n_train), *split(n_test), tuple("0123456789"), "test")


@settings(max_examples=40, deadline=None)
@given(n_train=st.integers(1, 300), n_test=st.integers(1, 50),
       train_limit=st.one_of(st.none(), st.integers(1, 400)), test_limit=st.one_of(st.none(), st.integers(1, 80)),
       seed=st.integers(0, 1000))
def test_subset_is_deterministic_clipped_and_drawn_from_the_data(n_train, n_test, train_limit, test_limit, seed):
    data = indexed(n_train, n_test)
    part = subset(data, train_limit, test_limit, seed)
    again = subset(data, train_limit, test_limit, seed)
    for images, labels, n, limit in ((part.train_images, part.train_labels, n_train, train_limit),
                                     (part.test_images, part.test_labels, n_test, test_limit)):
        assert len(images) == len(labels) == (n if limit is None else min(limit, n))
        index = images.reshape(len(images), 4).view("<u4")[:, 0]
        assert np.all(np.diff(index.astype(np.int64)) > 0) and index.max() < n      # distinct rows, kept in order
        np.testing.assert_array_equal(labels, index % 10)                            # labels follow their images
    np.testing.assert_array_equal(again.train_images, part.train_images)
    np.testing.assert_array_equal(subset(data, None, test_limit, seed).test_images, part.test_images)


def test_subset_mixes_classes_and_depends_on_the_seed():
    data = synthetic(train=1000, test=100)
    part = subset(data, 100, 10, seed=1)
    assert len(np.unique(part.train_labels)) == 10
    assert not np.array_equal(part.train_images, subset(data, 100, 10, seed=2).train_images)
    with pytest.raises(ValueError, match="positive integers or None"):
        subset(data, 0)
