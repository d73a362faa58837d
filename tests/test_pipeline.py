"""The batch pipeline: bilinear resizing (against PyTorch), epoch orders and batches that every framework
sees bit for bit the same."""

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netparity.compare.datasets import synthetic
from netparity.compare.pipeline import (Batches, epoch_order, interpolation_matrix, iterate_batches,
                                        pipeline_throughput, resize_bilinear, steps_per_epoch)


def random_images(n, height=28, width=28, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, height, width), dtype=np.uint8)


# ------------------------------------------------------------------------------------------------ resize

@settings(max_examples=50, deadline=None)
@given(in_size=st.integers(1, 64), out_size=st.integers(1, 256))
def test_interpolation_rows_are_two_tap_and_sum_to_one(in_size, out_size):
    matrix = interpolation_matrix(in_size, out_size)
    assert matrix.shape == (out_size, in_size) and matrix.dtype == np.float32
    np.testing.assert_allclose(matrix.sum(1), 1.0, atol=1e-6)
    assert ((matrix != 0).sum(1) <= 2).all() and (matrix >= 0).all()
    assert interpolation_matrix(in_size, out_size) is matrix and not matrix.flags.writeable   # cached, shared


def test_same_size_is_exactly_images_over_255():
    images = random_images(6)
    out = resize_bilinear(images, 28)
    assert out.dtype == np.float32 and out.shape == (6, 1, 28, 28)
    np.testing.assert_array_equal(out[:, 0], (images / 255).astype(np.float32))
    every_value = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    np.testing.assert_array_equal(resize_bilinear(every_value, 16)[0, 0], every_value[0].astype(np.float32) / 255)


@pytest.mark.parametrize("size", [20, 96, 224])
def test_an_image_resizes_to_the_same_bits_in_any_batch(size):
    images = random_images(200, seed=size)
    whole = resize_bilinear(images, size)
    for start, count in [(0, 1), (7, 3), (50, 128), (199, 1)]:
        assert resize_bilinear(images[start:start + count], size).tobytes() == whole[start:start + count].tobytes()


@settings(max_examples=40, deadline=None)
@given(value=st.integers(0, 255), height=st.integers(1, 40), width=st.integers(1, 40), size=st.integers(1, 120))
def test_a_constant_image_stays_constant(value, height, width, size):
    out = resize_bilinear(np.full((2, height, width), value, np.uint8), size)
    assert out.shape == (2, 1, size, size)
    np.testing.assert_allclose(out, value / 255, rtol=0, atol=2e-7)


@pytest.mark.parametrize("shape,size", [((28, 28), 96), ((28, 28), 224), ((28, 28), 14), ((28, 28), 20),
                                        ((28, 20), 64), ((5, 7), 3), ((1, 1), 9)])
def test_matches_torch_bilinear_without_antialias(shape, size):
    torch = pytest.importorskip("torch", reason="PyTorch is the reference for bilinear resizing")
    images = random_images(16, *shape, seed=size)
    expected = torch.nn.functional.interpolate(torch.from_numpy(images[:, None].astype(np.float32) / 255),
                                               size=(size, size), mode="bilinear", align_corners=False,
                                               antialias=False).numpy()
    out = resize_bilinear(images, size)
    assert out.shape == expected.shape
    assert np.abs(out - expected).max() <= 1e-5


def test_resize_rejects_what_it_cannot_resize():
    with pytest.raises(ValueError, match="expected uint8 images"):
        resize_bilinear(np.zeros((2, 28, 28), np.float32), 32)
    with pytest.raises(ValueError, match="expected uint8 images"):
        resize_bilinear(np.zeros((2, 1, 28, 28), np.uint8), 32)
    with pytest.raises(ValueError, match="size must be >= 1"):
        resize_bilinear(np.zeros((2, 28, 28), np.uint8), 0)


# ------------------------------------------------------------------------------------------------ batches

def collect(batches):
    return [(x.copy(), y.copy()) for x, y in batches]


def test_same_seed_and_epoch_give_bitwise_the_same_batches():
    data = synthetic(train=300, test=1)
    first = collect(iterate_batches(data.train_images, data.train_labels, 64, 40, seed=7, epoch=3))
    again = collect(iterate_batches(data.train_images, data.train_labels, 64, 40, seed=7, epoch=3))
    assert len(first) == len(again) == 5
    for (x, y), (x2, y2) in zip(first, again):
        assert x.tobytes() == x2.tobytes() and y.tobytes() == y2.tobytes()
        assert x.dtype == np.float32 and x.shape[1:] == (1, 40, 40) and y.dtype == np.int64
        assert 0.0 <= x.min() and x.max() <= 1.0


def test_another_epoch_or_seed_gives_another_order():
    base = epoch_order(1000, seed=0, epoch=0)
    assert not np.array_equal(base, epoch_order(1000, seed=0, epoch=1))
    assert not np.array_equal(base, epoch_order(1000, seed=1, epoch=0))
    np.testing.assert_array_equal(epoch_order(1000, seed=0, epoch=5, shuffle=False), np.arange(1000))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 200), batch_size=st.integers(1, 64), seed=st.integers(0, 2 ** 32 - 1),
       epoch=st.integers(0, 100), shuffle=st.booleans())
def test_every_example_once_per_epoch_with_the_last_partial_batch_kept(n, batch_size, seed, epoch, shuffle):
    images = np.arange(n, dtype=np.int64).astype(np.uint8).reshape(n, 1, 1).repeat(2, 1).repeat(2, 2)
    ids = np.arange(n) * 3 + 1                                   # labels as example ids
    batches = Batches(images, ids, batch_size, 2, seed, epoch, shuffle)
    sizes, seen = [], []
    for x, y in batches:
        sizes.append(len(y))
        seen.extend(y.tolist())
        np.testing.assert_array_equal(x[:, 0, 0, 0], ((y - 1) // 3 % 256).astype(np.float32) / 255)  # pairs kept
    assert len(batches) == steps_per_epoch(n, batch_size) == len(sizes)
    assert sizes == [batch_size] * (n // batch_size) + ([n % batch_size] if n % batch_size else [])
    assert sorted(seen) == ids.tolist()
    if not shuffle:
        assert seen == ids.tolist()
    assert [y.tolist() for _, y in batches] == [seen[i:i + batch_size] for i in range(0, n, batch_size)]


def test_steps_per_epoch():
    assert steps_per_epoch(60000, 256) == 235 and steps_per_epoch(60000, 250) == 240
    assert steps_per_epoch(1, 128) == 1 and steps_per_epoch(0, 128) == 0


def test_batches_reject_bad_arguments():
    images, labels = np.zeros((4, 8, 8), np.uint8), np.zeros(4, np.int64)
    with pytest.raises(ValueError, match="4 integer labels"):
        Batches(images, labels[:3], 2, 8, 0, 0)
    with pytest.raises(ValueError, match="4 integer labels"):
        Batches(images, labels.astype(np.float32), 2, 8, 0, 0)
    with pytest.raises(ValueError, match="batch_size and size must be >= 1"):
        Batches(images, labels, 0, 8, 0, 0)
    with pytest.raises(ValueError, match="seed and epoch must be >= 0"):
        Batches(images, labels, 2, 8, 0, -1)


def test_throughput_helper_runs():
    assert pipeline_throughput(32, batch_size=16, batches=2, dataset=synthetic(train=64, test=1)) > 0


def test_the_data_layer_imports_no_framework():
    code = ("import sys, netparity.compare.datasets, netparity.compare.pipeline\n"
            "loaded = sorted(m for m in ('torch', 'mxnet', 'tensorflow', 'keras', 'jax') if m in sys.modules)\n"
            "assert not loaded, loaded")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
