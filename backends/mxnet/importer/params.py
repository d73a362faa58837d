"""MXNet's NDArray list file (``prefix-0000.params``, ``mx.nd.save``) read and written with NumPy alone.

The layout, read in MXNet 1.9.1's source (src/ndarray/ndarray.cc ``NDArray::Save``, ``Load``,
``LegacyLoad`` and the list ``Save``/``Load`` under ``kMXAPINDArrayListMagic``; include/mxnet/tuple.h
``Tuple::Save``; include/mxnet/base.h ``Context::Save``; dmlc-core's serializer for vectors and
strings). Everything is little-endian::

    file    := u64 0x112, u64 reserved, u64 n, array * n, u64 k, name * k      (k is 0 or n)
    name    := u64 length, UTF-8 bytes
    array   := u32 0xF993FAC9 (V2), i32 storage type, shape, body
             | u32 0xF993FACA (V3: NumPy shape semantics, written by npx.save), i32 storage type, shape, body
             | u32 0xF993FAC8 (V1), shape, body
             | u32 ndim (legacy, before V1: the "magic" is the dimension count), u32 dim * ndim, body
    shape   := i32 ndim, i64 dim * ndim
    body    := i32 dev_type, i32 dev_id, i32 type flag, data (C order)

Storage types 1 (row_sparse) and 2 (csr) carry index arrays after the values; they are refused.
An array whose shape is unknown (ndim -1 or a dimension -1; in V2 also ndim 0) has no body: MXNet
writes one only for an uninitialised NDArray, and a checkpoint has no use for it, so it is refused.

One exception follows MXNet's writer rather than its loader: MXNet 1.9.1 saves a 0-d ``mx.nd``
array as V2 with ndim 0 *and* a body, but its own loader stops after the shape (V2 ndim 0 meant
"none" before 1.5) and then fails on the next bytes ("Unknown type enum", measured). Since the only
V2 ndim-0 arrays a 1.x writer produces have a body, this reader reads it; ``write_params`` refuses
0-d arrays unless ``np_shape=True`` (V3, as ``npx.save`` writes), so it never writes such a file.
"""

from __future__ import annotations

import math
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ....spec.errors import NetparityError
from ....spec.files import atomic_writer

LIST_MAGIC = 0x112
V1_MAGIC = 0xF993FAC8
V2_MAGIC = 0xF993FAC9
V3_MAGIC = 0xF993FACA
MAGICS = {V1_MAGIC: "V1", V2_MAGIC: "V2", V3_MAGIC: "V3"}

# mshadow's TypeFlag (3rdparty/mshadow/mshadow/base.h). bfloat16 has no NumPy type; it is read as
# the float32 it widens to exactly (its 16 bits are a float32's upper half).
TYPE_FLAGS = {0: np.dtype("<f4"), 1: np.dtype("<f8"), 2: np.dtype("<f2"), 3: np.dtype("u1"), 4: np.dtype("<i4"),
              5: np.dtype("i1"), 6: np.dtype("<i8"), 7: np.dtype("?"), 8: np.dtype("<i2"), 9: np.dtype("<u2"),
              10: np.dtype("<u4"), 11: np.dtype("<u8")}
BFLOAT16 = 12
# What MXNet 1.9.1's Python API can load back (mx.nd.array refuses int16 and wider unsigned types).
WRITABLE_FLAGS = {np.dtype(TYPE_FLAGS[flag]).newbyteorder("="): flag for flag in range(8)}
STORAGE_TYPES = {0: "default (dense)", 1: "row_sparse", 2: "csr"}
DEVICE_TYPES = {1: "cpu", 2: "gpu", 3: "cpu_pinned", 5: "cpu_shared"}
MAX_NDIM = 32  # NumPy's limit; a larger legacy "dimension count" is an unknown magic, not a shape


class CheckpointError(NetparityError, ValueError):
    """A checkpoint file that cannot be read: truncated, corrupt, an unknown magic or type, or a
    feature this reader refuses (sparse storage). ``path`` and ``offset`` (the byte where the
    problem starts, None when it is not about one place) say where."""

    def __init__(self, path, reason: str, offset: int | None = None):
        self.path = str(path)
        self.offset = offset
        self.reason = reason
        where = f"{self.path}" + (f" at byte offset {offset}" if offset is not None else "")
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True)
class StoredArray:
    """One array as the file holds it (``read_ndarray_file``)."""

    name: str | None
    array: np.ndarray
    version: str  # V1, V2, V3 or legacy
    context: tuple[str, int]  # (device type, device id) it was saved from
    type_flag: int
    offset: int  # where its record starts


class _Cursor:
    """Bounds-checked little-endian reads from a buffer; every failure names the file and offset."""

    def __init__(self, buffer, path: Path):
        self.buffer = buffer
        self.size = len(buffer)
        self.path = path
        self.at = 0

    def fail(self, reason: str, offset: int | None = None):
        raise CheckpointError(self.path, reason, self.at if offset is None else offset)

    def need(self, count: int, what: str) -> None:
        if count > self.size - self.at:
            self.fail(f"truncated: {what} needs {count} bytes but only {self.size - self.at} remain "
                      f"(file size {self.size})")

    def unpack(self, fmt: str, what: str):
        size = struct.calcsize(fmt)
        self.need(size, what)
        values = struct.unpack_from(fmt, self.buffer, self.at)
        self.at += size
        return values

    def one(self, fmt: str, what: str) -> int:
        return self.unpack(fmt, what)[0]

    def array(self, dtype: np.dtype, shape: tuple[int, ...], what: str) -> np.ndarray:
        count = math.prod(shape)  # Python ints: a corrupt shape must not overflow into a small size
        self.need(count * dtype.itemsize, what)
        # frombuffer views the file; copy so that the array owns its memory after the map closes
        data = np.frombuffer(self.buffer, dtype=dtype, count=count, offset=self.at).copy()
        self.at += count * dtype.itemsize
        return data.reshape(shape)


def _shape(cursor: _Cursor, index: int) -> tuple[int, ...]:
    start = cursor.at
    ndim = cursor.one("<i", f"array #{index}'s dimension count")
    if ndim == -1:
        return None
    if not 0 <= ndim <= MAX_NDIM:
        cursor.fail(f"array #{index}: corrupt shape, {ndim} dimensions", start)
    return cursor.unpack(f"<{ndim}q", f"array #{index}'s {ndim} dimensions")


def _body(cursor: _Cursor, index: int, shape: tuple[int, ...], shape_at: int) -> tuple[np.ndarray, tuple, int]:
    if shape is None or any(d == -1 for d in shape):
        cursor.fail(f"array #{index} has an unknown shape {shape}: an uninitialised NDArray, which holds no "
                    "values", shape_at)
    if any(d < 0 for d in shape):
        cursor.fail(f"array #{index}: corrupt shape {shape}", shape_at)
    context_at = cursor.at
    dev_type, dev_id = cursor.unpack("<ii", f"array #{index}'s context")
    if dev_type not in DEVICE_TYPES or dev_id < 0:
        cursor.fail(f"array #{index}: corrupt context (device type {dev_type}, id {dev_id}); MXNet's device "
                    f"types are {', '.join(f'{k} {v}' for k, v in DEVICE_TYPES.items())}", context_at)
    flag_at = cursor.at
    flag = cursor.one("<i", f"array #{index}'s type flag")
    what = f"array #{index}'s data ({'x'.join(map(str, shape)) or 'scalar'})"
    if flag == BFLOAT16:
        upper = cursor.array(np.dtype("<u2"), shape, what)
        data = (upper.astype(np.uint32) << 16).view(np.float32)
    elif flag in TYPE_FLAGS:
        data = cursor.array(TYPE_FLAGS[flag], shape, what)
    else:
        cursor.fail(f"array #{index}: unknown type flag {flag}; known: "
                    + ", ".join(f"{k} {v.name}" for k, v in TYPE_FLAGS.items()) + f", {BFLOAT16} bfloat16", flag_at)
    return data, (DEVICE_TYPES[dev_type], dev_id), flag


def _array(cursor: _Cursor, index: int):
    start = cursor.at
    magic = cursor.one("<I", f"array #{index}'s magic")
    version = MAGICS.get(magic)
    if version in ("V2", "V3"):
        stype_at = cursor.at
        stype = cursor.one("<i", f"array #{index}'s storage type")
        if stype != 0:
            if stype in STORAGE_TYPES:
                cursor.fail(f"array #{index} is stored {STORAGE_TYPES[stype]}: sparse arrays are not supported; "
                            "in MXNet, convert it with .tostype('default') and save again", stype_at)
            cursor.fail(f"array #{index}: unknown storage type {stype}", stype_at)
        shape_at = cursor.at
        # V2 ndim 0: a 0-d array with a body, as MXNet 1.x's writer saves it (module docstring)
        data, context, flag = _body(cursor, index, _shape(cursor, index), shape_at)
    elif version == "V1":
        shape_at = cursor.at
        data, context, flag = _body(cursor, index, _shape(cursor, index), shape_at)
    else:
        ndim = magic  # legacy: no magic, the record starts with its dimension count
        if ndim > MAX_NDIM:
            cursor.fail(f"array #{index}: unknown magic 0x{magic:08X} (V1 0x{V1_MAGIC:08X}, V2 0x{V2_MAGIC:08X}, "
                        f"V3 0x{V3_MAGIC:08X}, or a legacy dimension count up to {MAX_NDIM})", start)
        version = "legacy"
        shape = cursor.unpack(f"<{ndim}I", f"array #{index}'s {ndim} dimensions")
        data, context, flag = _body(cursor, index, shape, start)
    return data, version, context, flag, start


def _read(buffer, path: Path) -> list[StoredArray]:
    cursor = _Cursor(buffer, path)
    header, _reserved = cursor.unpack("<QQ", "the file header")
    if header != LIST_MAGIC:
        cursor.fail(f"not an MXNet NDArray file: header 0x{header:X}, expected 0x{LIST_MAGIC:X}", 0)
    count_at = cursor.at
    count = cursor.one("<Q", "the array count")
    if count > (cursor.size - cursor.at) // 4:  # every array takes at least 4 bytes
        cursor.fail(f"corrupt array count {count} for a file of {cursor.size} bytes", count_at)
    records = [_array(cursor, index) for index in range(count)]
    names_at = cursor.at
    name_count = cursor.one("<Q", "the name count")
    if name_count not in (0, count):
        cursor.fail(f"{name_count} names for {count} arrays (MXNet writes none or one per array)", names_at)
    names = []
    for index in range(name_count):
        length_at = cursor.at
        length = cursor.one("<Q", f"name #{index}'s length")
        cursor.need(length, f"name #{index} ({length} bytes)")
        raw = bytes(buffer[cursor.at:cursor.at + length])
        try:
            names.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            cursor.fail(f"name #{index} is not UTF-8 text: {raw[:40]!r}", length_at)
        cursor.at += length
    if cursor.at != cursor.size:
        cursor.fail(f"{cursor.size - cursor.at} bytes follow the last name: the file is corrupt or holds more "
                    "than one NDArray list")
    seen = set()
    for index, name in enumerate(names):
        if name in seen:
            raise CheckpointError(path, f"name {name!r} appears twice (array #{index})")
        seen.add(name)
    return [StoredArray(names[i] if names else None, data, version, context, flag, start)
            for i, (data, version, context, flag, start) in enumerate(records)]


def read_ndarray_file(path) -> list[StoredArray]:
    """Every array of an MXNet NDArray file, in file order, with its name (None in a file saved
    from a list), format version, context and type flag. CheckpointError for anything it cannot
    read, naming the file and the byte offset."""
    path = Path(path)
    try:
        with open(path, "rb") as stream:
            if stream.seek(0, 2) == 0:
                raise CheckpointError(path, "empty file, not an MXNet NDArray file", 0)
            with mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                return _read(mapped, path)
    except OSError as error:
        raise CheckpointError(path, f"cannot read: {error.strerror or error}") from None


def read_params(path) -> dict[str, np.ndarray]:
    """``{name: array}`` in file order, names as stored (``arg:conv0_weight``, ``aux:bn0_running_mean``
    in Module checkpoints and ``export`` files; bare in Gluon's ``save_parameters``). A file saved
    from a list has no names; its arrays are keyed ``"0"``, ``"1"``, ... (``mx.nd.load`` returns a
    list for it)."""
    stored = read_ndarray_file(path)
    return {item.name if item.name is not None else str(index): item.array for index, item in enumerate(stored)}


def split_prefixes(params: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(arguments, auxiliary states) with the ``arg:`` / ``aux:`` prefixes removed, as
    ``mx.model.load_checkpoint`` splits them; bare names (Gluon's ``save_parameters``) count as
    arguments."""
    args, auxs = {}, {}
    for key, value in params.items():
        kind, colon, name = key.partition(":")
        if colon and kind == "aux":
            auxs[name] = value
        elif colon and kind == "arg":
            args[name] = value
        else:
            args[key] = value
    return args, auxs


def _type_flag(array: np.ndarray, path, name) -> int:
    flag = WRITABLE_FLAGS.get(array.dtype.newbyteorder("="))
    if flag is None:
        allowed = ", ".join(TYPE_FLAGS[f].name for f in range(8))
        raise CheckpointError(path, f"array {name!r} has dtype {array.dtype}, which MXNet 1.9.1 cannot load; "
                                    f"use one of {allowed}")
    return flag


def write_params(path, arrays: Mapping[str, np.ndarray] | Sequence[np.ndarray], *, np_shape: bool = False) -> None:
    """Write ``arrays`` (a dict, saved with names, or a list, saved without) as MXNet's ``mx.nd.save``
    does, byte for byte: V2 records, dense, CPU context 0, then the names. The file is written
    atomically. ``np_shape=True`` writes V3 records as ``npx.save`` does (NumPy shape semantics,
    loadable only under ``npx.set_np()``), which 0-d arrays need: MXNet 1.9.1 writes a V2 0-d
    array that its own loader cannot read, so those are refused without it."""
    if isinstance(arrays, Mapping):
        names = [str(name) for name in arrays]
        values = list(arrays.values())
    else:
        names, values = [], list(arrays)
    magic = V3_MAGIC if np_shape else V2_MAGIC
    prepared = []
    for index, value in enumerate(values):
        name = names[index] if names else f"#{index}"
        array = np.asarray(value)
        flag = _type_flag(array, path, name)
        if array.ndim == 0 and not np_shape:
            raise CheckpointError(path, f"array {name!r} is 0-d: MXNet 1.9.1 cannot load a 0-d array saved without "
                                        "NumPy shape semantics; reshape it to (1,) or pass np_shape=True")
        if array.ndim > MAX_NDIM:
            raise CheckpointError(path, f"array {name!r} has {array.ndim} dimensions (at most {MAX_NDIM})")
        # not ascontiguousarray: it turns a 0-d array into a 1-d one
        prepared.append((flag, np.array(array, dtype=array.dtype.newbyteorder("<"), order="C", copy=False)))
    with atomic_writer(path, "wb") as stream:
        stream.write(struct.pack("<QQQ", LIST_MAGIC, 0, len(prepared)))
        for flag, array in prepared:
            stream.write(struct.pack(f"<Iii{array.ndim}q", magic, 0, array.ndim, *array.shape))
            stream.write(struct.pack("<iii", 1, 0, flag))  # context cpu(0), type flag
            stream.write(memoryview(array).cast("B") if array.size else b"")
        stream.write(struct.pack("<Q", len(names)))
        for name in names:
            raw = name.encode("utf-8")
            stream.write(struct.pack("<Q", len(raw)) + raw)
