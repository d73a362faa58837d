"""The ``.params`` NDArray file in NumPy alone (backends/mxnet/importer/params.py).

Files MXNet 1.9.1 writes read back equal and are written back byte for byte; V1 and legacy files,
built here byte by byte from MXNet's source layout, read the same as MXNet's own loader reads them;
every truncation, a wrong magic, an unknown type and sparse storage are CheckpointErrors naming the
file and the byte offset. The tests without MXNet run everywhere; those that ask MXNet skip without it.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

from netparity.backends.frameworks import FrameworkMissing, import_mxnet
from netparity.backends.mxnet.importer import (CheckpointError, read_ndarray_file, read_params, split_prefixes,
                                                 write_params)
from netparity.spec.errors import NetparityError

DTYPES = ["float32", "float64", "float16", "uint8", "int32", "int8", "int64", "bool"]
FLAGS = {"float32": 0, "float64": 1, "float16": 2, "uint8": 3, "int32": 4, "int8": 5, "int64": 6, "bool": 7}


@pytest.fixture(scope="module")
def mx():
    try:
        return import_mxnet()
    except FrameworkMissing as missing:
        pytest.skip(str(missing))


def sample(dtype: str, shape, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if dtype.startswith("float"):
        return (rng.standard_normal(shape) * 3).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


# -- byte-by-byte records, from src/ndarray/ndarray.cc (MXNet 1.9.1) ---------------------------------------

def body(array: np.ndarray, flag: int, context=(1, 0)) -> bytes:
    return struct.pack("<iii", *context, flag) + array.tobytes()


def v2_record(array, flag, context=(1, 0), magic=0xF993FAC9, stype=0) -> bytes:
    shape = struct.pack(f"<i{array.ndim}q", array.ndim, *array.shape)
    return struct.pack("<Ii", magic, stype) + shape + body(array, flag, context)


def v1_record(array, flag, context=(1, 0)) -> bytes:  # V1: the int64 TShape, no storage type
    return struct.pack(f"<Ii{array.ndim}q", 0xF993FAC8, array.ndim, *array.shape) + body(array, flag, context)


def legacy_record(array, flag, context=(1, 0)) -> bytes:  # no magic: u32 ndim, u32 dims
    return struct.pack(f"<I{array.ndim}I", array.ndim, *array.shape) + body(array, flag, context)


def list_file(records, names=()) -> bytes:
    data = struct.pack("<QQQ", 0x112, 0, len(records)) + b"".join(records)
    data += struct.pack("<Q", len(names))
    for name in names:
        data += struct.pack("<Q", len(name.encode())) + name.encode()
    return data


def assert_same(read: dict, expected: dict) -> None:
    assert list(read) == list(expected)
    for key, value in expected.items():
        assert read[key].dtype == value.dtype, key
        assert read[key].shape == value.shape, key
        np.testing.assert_array_equal(read[key], value, err_msg=key)


# -- files written by MXNet 1.9.1 -------------------------------------------------------------------------

def test_every_dtype_and_rank_written_by_mxnet(mx, tmp_path):
    arrays = {}
    for index, dtype in enumerate(DTYPES):
        arrays[f"arg:w_{dtype}"] = sample(dtype, (4, 3, 2, 5), index)  # 4-d, like a conv weight
        arrays[f"aux:v_{dtype}"] = sample(dtype, (7,), index + 50)
    path = tmp_path / "mx.params"
    mx.nd.save(str(path), {k: mx.nd.array(v, dtype=v.dtype) for k, v in arrays.items()})
    assert_same(read_params(path), arrays)
    assert {item.version for item in read_ndarray_file(path)} == {"V2"}
    assert {item.context for item in read_ndarray_file(path)} == {("cpu", 0)}
    written = tmp_path / "ours.params"
    write_params(written, arrays)
    assert written.read_bytes() == path.read_bytes()


def test_list_without_names(mx, tmp_path):
    arrays = [sample("float32", (3,)), sample("int64", (2, 2), 1), sample("float16", (1, 1, 1, 1), 2)]
    path = tmp_path / "list.params"
    mx.nd.save(str(path), [mx.nd.array(a, dtype=a.dtype) for a in arrays])
    stored = read_ndarray_file(path)
    assert [item.name for item in stored] == [None, None, None]
    assert_same(read_params(path), {str(i): a for i, a in enumerate(arrays)})
    written = tmp_path / "ours.params"
    write_params(written, arrays)
    assert written.read_bytes() == path.read_bytes()


def test_zero_d_arrays(mx, tmp_path):
    """0-d arrays: under NumPy shape semantics MXNet writes V3 and loads it back; the plain nd API
    writes a V2 0-d array with its value that MXNet's own loader misreads (the reader follows the
    writer), and write_params refuses to write such a file."""
    npx = mx.npx
    values = {"scalar": np.float32(2.5).reshape(()), "vector": sample("float32", (3,))}
    v3 = tmp_path / "np.params"
    with mx.util.np_shape(True), mx.util.np_array(True):
        npx.save(str(v3), {k: mx.np.array(v) for k, v in values.items()})
    assert_same(read_params(v3), values)
    assert {item.version for item in read_ndarray_file(v3)} == {"V3"}
    ours = tmp_path / "ours_np.params"
    write_params(ours, values, np_shape=True)
    assert ours.read_bytes() == v3.read_bytes()

    v2 = tmp_path / "nd.params"
    mx.nd.save(str(v2), {k: mx.nd.array(v) for k, v in values.items()})
    assert_same(read_params(v2), values)
    with pytest.raises(mx.base.MXNetError):
        mx.nd.load(str(v2))
    with pytest.raises(CheckpointError, match="0-d"):
        write_params(tmp_path / "refused.params", values)


def test_module_checkpoint_prefixes_split_like_mxnet(mx, tmp_path):
    data = mx.sym.var("data")
    net = mx.sym.FullyConnected(mx.sym.BatchNorm(data, name="bn"), num_hidden=3, name="fc")
    prefix = str(tmp_path / "net")
    arg = {"fc_weight": mx.nd.array(sample("float32", (3, 4))), "fc_bias": mx.nd.array(sample("float32", (3,), 1)),
           "bn_gamma": mx.nd.array(sample("float32", (4,), 2)), "bn_beta": mx.nd.array(sample("float32", (4,), 3))}
    aux = {"bn_moving_mean": mx.nd.array(sample("float32", (4,), 4)),
           "bn_moving_var": mx.nd.array(np.abs(sample("float32", (4,), 5)))}
    mx.model.save_checkpoint(prefix, 0, net, arg, aux)
    params = read_params(f"{prefix}-0000.params")
    assert set(params) == {f"arg:{k}" for k in arg} | {f"aux:{k}" for k in aux}
    _, mx_arg, mx_aux = mx.model.load_checkpoint(prefix, 0)
    args, auxs = split_prefixes(params)
    assert_same(args, {k: mx_arg[k].asnumpy() for k in args})
    assert_same(auxs, {k: mx_aux[k].asnumpy() for k in auxs})
    assert set(args) == set(mx_arg) and set(auxs) == set(mx_aux)


def test_gluon_save_parameters_bare_names(mx, tmp_path):
    net = mx.gluon.nn.HybridSequential()
    net.add(mx.gluon.nn.Conv2D(4, 3, in_channels=2), mx.gluon.nn.BatchNorm(in_channels=4))
    net.initialize(mx.init.Uniform(1.0))
    path = tmp_path / "net.params"
    net.save_parameters(str(path))
    params = read_params(path)
    expected = {name: p.data().asnumpy() for name, p in net._collect_params_with_prefix().items()}
    assert_same(params, expected)
    assert all(":" not in key for key in params)


def test_written_files_load_in_mxnet(mx, tmp_path):
    arrays = {f"x_{dtype}": sample(dtype, (2, 3), i) for i, dtype in enumerate(DTYPES)}
    path = tmp_path / "ours.params"
    write_params(path, arrays)
    loaded = mx.nd.load(str(path))
    assert_same({k: v.asnumpy() for k, v in loaded.items()}, arrays)


# -- V1 and legacy files, byte by byte, against MXNet's loader ----------------------------------------------

OLD_ARRAYS = {"conv_weight": sample("float32", (2, 3, 3, 3)), "fc_bias": sample("float64", (5,), 1),
              "steps": sample("int32", (2, 2), 2), "half": sample("float16", (3, 1), 3), "codes": sample("uint8", (4,), 4)}


@pytest.mark.parametrize("record", [v1_record, legacy_record], ids=["V1", "legacy"])
def test_old_formats_read_like_mxnet(record, tmp_path):
    path = tmp_path / f"{record.__name__}.params"
    path.write_bytes(list_file([record(a, FLAGS[a.dtype.name]) for a in OLD_ARRAYS.values()], list(OLD_ARRAYS)))
    assert_same(read_params(path), OLD_ARRAYS)
    assert {item.version for item in read_ndarray_file(path)} == {"V1" if record is v1_record else "legacy"}


@pytest.mark.parametrize("record", [v1_record, legacy_record, v2_record], ids=["V1", "legacy", "V2"])
def test_old_formats_against_mxnet_loader(mx, record, tmp_path):
    """MXNet's own loader reads the hand-built files to the same arrays, a GPU context included
    (a CPU build keeps the array on the CPU)."""
    path = tmp_path / "old.params"
    records = [record(a, FLAGS[a.dtype.name], context=(2, 1) if i == 0 else (1, 0))
               for i, a in enumerate(OLD_ARRAYS.values())]
    path.write_bytes(list_file(records, list(OLD_ARRAYS)))
    loaded = mx.nd.load(str(path))
    assert_same(read_params(path), {k: v.asnumpy() for k, v in loaded.items()})
    assert read_ndarray_file(path)[0].context == ("gpu", 1)
    unnamed = tmp_path / "unnamed.params"
    unnamed.write_bytes(list_file(records))
    loaded = mx.nd.load(str(unnamed))
    assert isinstance(loaded, list)
    assert_same(read_params(unnamed), {str(i): v.asnumpy() for i, v in enumerate(loaded)})


def test_v3_records_without_mxnet(tmp_path):
    """V3 (NumPy shape semantics): the V2 layout under another magic, where ndim 0 is a scalar."""
    arrays = {"scalar": np.array(1.5, np.float32), "matrix": sample("int8", (2, 3))}
    path = tmp_path / "v3.params"
    path.write_bytes(list_file([v2_record(a, FLAGS[a.dtype.name], magic=0xF993FACA) for a in arrays.values()],
                               list(arrays)))
    assert_same(read_params(path), arrays)
    assert [item.version for item in read_ndarray_file(path)] == ["V3", "V3"]
    written = tmp_path / "ours.params"
    write_params(written, arrays, np_shape=True)
    assert written.read_bytes() == path.read_bytes()


def test_bfloat16_widens_exactly():
    values = np.array([1.0, -2.5, 3.140625, 65280.0], np.float32)  # exactly representable in bfloat16
    upper = (values.view(np.uint32) >> 16).astype("<u2")
    record = struct.pack("<Iiiq", 0xF993FAC9, 0, 1, 4) + struct.pack("<iii", 1, 0, 12) + upper.tobytes()
    from tempfile import NamedTemporaryFile
    with NamedTemporaryFile(suffix=".params") as handle:
        handle.write(list_file([record], ["b"]))
        handle.flush()
        read = read_params(handle.name)["b"]
    assert read.dtype == np.float32
    np.testing.assert_array_equal(read, values)


# -- bad files -----------------------------------------------------------------------------------------------

def good_file() -> bytes:
    arrays = [sample("float32", (2, 3)), sample("int64", (4,), 1)]
    return list_file([v2_record(arrays[0], 0), v2_record(arrays[1], 6)], ["arg:a", "aux:b"])


def expect_error(path, match: str, offset: int | None):
    with pytest.raises(CheckpointError, match=match) as caught:
        read_params(path)
    error = caught.value
    assert isinstance(error, NetparityError)
    assert str(path) in str(error)
    assert error.offset == offset
    if offset is not None:
        assert f"at byte offset {offset}:" in str(error)
    assert "\n" not in str(error)
    return error


def test_every_truncation_is_an_error_at_an_offset(tmp_path):
    data = good_file()
    path = tmp_path / "cut.params"
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError) as caught:
            read_params(path)
        error = caught.value
        assert str(path) in str(error)
        if cut == 0:
            assert "empty file" in str(error)
            continue
        assert error.offset is not None and error.offset <= cut, (cut, str(error))
        assert "truncated" in str(error) or "corrupt" in str(error), (cut, str(error))


def test_truncated_data_names_the_array(tmp_path):
    data = good_file()
    path = tmp_path / "cut.params"
    first_data = 24 + 4 + 4 + 4 + 16 + 12  # header and count, magic, storage type, ndim, dims, context and flag
    path.write_bytes(data[:first_data + 10])
    expect_error(path, r"truncated: array #0's data \(2x3\) needs 24 bytes but only 10 remain", first_data)


def test_wrong_list_magic(tmp_path):
    path = tmp_path / "bad.params"
    path.write_bytes(struct.pack("<QQ", 0x113, 0) + good_file()[16:])
    expect_error(path, "not an MXNet NDArray file: header 0x113, expected 0x112", 0)


def test_unknown_array_magic(tmp_path):
    data = bytearray(good_file())
    data[24:28] = struct.pack("<I", 0xDEADBEEF)
    path = tmp_path / "bad.params"
    path.write_bytes(bytes(data))
    expect_error(path, "unknown magic 0xDEADBEEF", 24)


def test_unknown_type_flag(tmp_path):
    path = tmp_path / "bad.params"
    path.write_bytes(list_file([v2_record(np.zeros(2, np.float32), 99)], ["x"]))
    expect_error(path, "unknown type flag 99", 24 + 4 + 4 + 4 + 8 + 8)


def test_corrupt_context_and_huge_shape(tmp_path):
    path = tmp_path / "bad.params"
    path.write_bytes(list_file([v2_record(np.zeros(2, np.float32), 0, context=(9, 0))], ["x"]))
    expect_error(path, "corrupt context", 24 + 4 + 4 + 4 + 8)
    record = struct.pack("<Iiiqq", 0xF993FAC9, 0, 2, 1 << 40, 1 << 40) + struct.pack("<iii", 1, 0, 0)
    path.write_bytes(list_file([record]))
    expect_error(path, "needs 4835703278458516698824704 bytes", 24 + 4 + 4 + 4 + 16 + 12)  # no huge allocation


def test_sparse_storage_refused(mx, tmp_path):
    for storage, name in (("csr", "csr"), ("row_sparse", "row_sparse")):
        path = tmp_path / f"{storage}.params"
        mx.nd.save(str(path), {"s": mx.nd.sparse.zeros(storage, (3, 4))})
        expect_error(path, f"stored {name}: sparse arrays are not supported", 28)


def test_sparse_storage_refused_without_mxnet(tmp_path):
    path = tmp_path / "sparse.params"
    path.write_bytes(list_file([v2_record(np.zeros(2, np.float32), 0, stype=1)], ["s"]))
    expect_error(path, "stored row_sparse", 28)


def test_other_corruptions(tmp_path):
    path = tmp_path / "bad.params"
    one = v2_record(np.zeros(2, np.float32), 0)
    path.write_bytes(list_file([one, one], ["a"]))
    expect_error(path, "1 names for 2 arrays", 24 + 2 * len(one))
    path.write_bytes(list_file([one, one], ["a", "a"]))
    expect_error(path, "name 'a' appears twice", None)
    path.write_bytes(list_file([one], ["a"]) + b"\0\0\0")
    expect_error(path, "3 bytes follow the last name", 24 + len(one) + 8 + 9)
    path.write_bytes(list_file([one])[:-8] + struct.pack("<QQ", 1, 1) + b"\xff")
    expect_error(path, "name #0 is not UTF-8", 24 + len(one) + 8)
    path.write_bytes(struct.pack("<QQQ", 0x112, 0, 1 << 60))
    expect_error(path, "corrupt array count", 16)
    path.write_bytes(list_file([struct.pack("<Iii", 0xF993FAC9, 0, -1)]))
    expect_error(path, "unknown shape", 32)


def test_missing_and_unreadable_paths(tmp_path):
    expect_error(tmp_path / "nope.params", "cannot read: No such file or directory", None)
    expect_error(tmp_path, "cannot read", None)


def test_writer_refuses_unloadable_dtypes_and_is_atomic(tmp_path):
    path = tmp_path / "w.params"
    write_params(path, {"a": np.ones(2, np.float32)})
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match="dtype uint16, which MXNet 1.9.1 cannot load"):
        write_params(path, {"a": np.ones(2, np.float32), "b": np.ones(2, np.uint16)})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.params"]


def test_writer_round_trip_without_mxnet(tmp_path):
    arrays = {f"arg:{dtype}": sample(dtype, (3, 2, 1, 2), i) for i, dtype in enumerate(DTYPES)}
    arrays["big_endian"] = sample("float64", (3,), 9).astype(">f8")
    arrays["strided"] = sample("float32", (4, 6), 10)[:, ::2]
    path = tmp_path / "w.params"
    write_params(path, arrays)
    read = read_params(path)
    assert read["big_endian"].dtype == np.float64
    for key, value in arrays.items():
        np.testing.assert_array_equal(read[key], value)
