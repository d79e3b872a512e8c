"""Read TensorFlow "V2" checkpoints (TF1 `Saver` and TF2 `tf.train.Checkpoint`) with numpy alone.

Why: published audio models (musicnn and others) ship only TensorFlow checkpoints, and installing TensorFlow to read
a few megabytes of weights is a heavy, version-fragile dependency. A V2 checkpoint `PREFIX` is two kinds of file:

- `PREFIX.index`: a LevelDB-style sorted table (SSTable). Data blocks hold prefix-compressed keys with restart
  points, each block followed by a one-byte compression flag (none or snappy) and a masked CRC32C; an index block
  points at the data blocks and a 48-byte footer points at the index. Keys are variable names; the empty key holds a
  `BundleHeaderProto` (shard count, endianness) and every other value a `BundleEntryProto` (dtype, shape, shard,
  offset, size, masked CRC32C of the bytes).
- `PREFIX.data-SSSSS-of-NNNNN`: the raw tensor bytes, in the header's byte order.

Anything that does not parse raises :class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np

from tunespace.errors import TunespaceError

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER_SIZE = 5
NO_COMPRESSION, SNAPPY_COMPRESSION = 0, 1
_MASK_DELTA = 0xA282EAD8

# tensorflow/core/framework/types.proto DataType values with a fixed-width numpy equivalent
_NUMPY_DTYPES: dict[int, str] = {1: "f4", 2: "f8", 3: "i4", 4: "u1", 5: "i2", 6: "i1", 9: "i8", 10: "b1", 17: "u2",
                                 19: "f2", 22: "u4", 23: "u8"}
DT_STRING, DT_BFLOAT16 = 7, 14


class CheckpointError(TunespaceError, ValueError):
    """A checkpoint file is missing, truncated, corrupt or uses a feature this reader does not support."""

    def __init__(self, path: str | Path, message: str) -> None:
        self.path = str(path)
        super().__init__(f"{path}: {message}")


@dataclass(frozen=True)
class TensorEntry:
    """Where one variable lives: a decoded `BundleEntryProto`."""

    name: str
    dtype: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc32c: int | None


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC-32C (Castagnoli), as LevelDB and TensorFlow compute it; `crc` extends a previous value."""
    table = _CRC_TABLE
    crc ^= 0xFFFFFFFF
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def mask_crc(crc: int) -> int:
    """LevelDB stores CRCs rotated and offset, so a CRC of data that embeds CRCs stays well distributed."""
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _varint(data: bytes, position: int, path: Path) -> tuple[int, int]:
    """(value, next position) of a base-128 varint; at most 10 bytes, as protobuf allows."""
    value = shift = 0
    for _ in range(10):
        if position >= len(data):
            raise CheckpointError(path, "truncated varint")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7
    raise CheckpointError(path, "varint longer than 10 bytes")


def snappy_decompress(data: bytes, path: str | Path = "<snappy>") -> bytes:
    """Decode a raw snappy block (no framing), the format LevelDB uses for compressed table blocks."""
    path = Path(path)
    expected, i = _varint(data, 0, path)
    out = bytearray()
    while i < len(data):
        tag = data[i]
        i += 1
        kind = tag & 3
        if kind == 0:  # literal
            length = tag >> 2
            if length >= 60:
                extra = length - 59
                length = int.from_bytes(data[i:i + extra], "little")
                i += extra
            length += 1
            if i + length > len(data):
                raise CheckpointError(path, "snappy literal runs past the block")
            out += data[i:i + length]
            i += length
            continue
        if kind == 1:
            length, offset = ((tag >> 2) & 7) + 4, ((tag >> 5) << 8) | (data[i] if i < len(data) else 0)
            i += 1
        else:
            width = 2 if kind == 2 else 4
            length, offset = (tag >> 2) + 1, int.from_bytes(data[i:i + width], "little")
            i += width
        if i > len(data) or offset == 0 or offset > len(out):
            raise CheckpointError(path, f"snappy copy with bad offset {offset} at output byte {len(out)}")
        start = len(out) - offset
        while length > 0:  # a copy may overlap its own output: repeat the available span
            chunk = out[start:start + min(length, offset)]
            out += chunk
            start += len(chunk)
            length -= len(chunk)
    if len(out) != expected:
        raise CheckpointError(path, f"snappy block decodes to {len(out)} bytes, header says {expected}")
    return bytes(out)


def _block(data: bytes, offset: int, size: int, path: Path, verify: bool) -> bytes:
    """The uncompressed contents of the block at (offset, size), its trailer checked."""
    end = offset + size
    if end + BLOCK_TRAILER_SIZE > len(data):
        raise CheckpointError(path, f"block at {offset} (+{size}) runs past the end of the file")
    body, kind = data[offset:end], data[end]
    if verify:
        (stored,) = struct.unpack_from("<I", data, end + 1)
        if mask_crc(crc32c(data[offset:end + 1])) != stored:
            raise CheckpointError(path, f"block at {offset}: checksum mismatch")
    if kind == NO_COMPRESSION:
        return body
    if kind == SNAPPY_COMPRESSION:
        return snappy_decompress(body, path)
    raise CheckpointError(path, f"block at {offset}: unknown compression type {kind}")


def _block_entries(block: bytes, path: Path) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs of a table block, keys rebuilt from their shared prefixes; restart points checked."""
    if len(block) < 4:
        raise CheckpointError(path, "block shorter than its restart count")
    (restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 - 4 * restarts
    if restarts == 0 or limit < 0:
        raise CheckpointError(path, f"block declares {restarts} restart points in {len(block)} bytes")
    restart_offsets = set(struct.unpack_from(f"<{restarts}I", block, limit))
    entries: list[tuple[bytes, bytes]] = []
    key = b""
    position = 0
    while position < limit:
        start = position
        shared, position = _varint(block, position, path)
        unshared, position = _varint(block, position, path)
        value_size, position = _varint(block, position, path)
        if shared > len(key) or position + unshared + value_size > limit:
            raise CheckpointError(path, f"block entry at {start} overruns the block or its previous key")
        if start in restart_offsets:
            if shared:
                raise CheckpointError(path, f"restart point at {start} shares a key prefix")
            restart_offsets.discard(start)
        key = key[:shared] + block[position:position + unshared]
        position += unshared
        entries.append((key, block[position:position + value_size]))
        position += value_size
    if restart_offsets:
        raise CheckpointError(path, f"restart points {sorted(restart_offsets)} are not entry boundaries")
    return entries


def read_table(path: str | Path, verify: bool = True) -> list[tuple[bytes, bytes]]:
    """All (key, value) pairs of an SSTable file, in key order (keys must be strictly increasing)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CheckpointError(path, f"cannot read: {error.strerror or error}") from error
    if len(data) < FOOTER_SIZE:
        raise CheckpointError(path, f"{len(data)} bytes is too short for a table footer")
    footer = data[-FOOTER_SIZE:]
    low, high = struct.unpack_from("<II", footer, FOOTER_SIZE - 8)
    if (high << 32) | low != TABLE_MAGIC:
        raise CheckpointError(path, "not a TensorFlow checkpoint index (bad table magic number)")
    _, position = _varint(footer, 0, path)  # metaindex handle: unused (no filters in checkpoints)
    _, position = _varint(footer, position, path)
    index_offset, position = _varint(footer, position, path)
    index_size, _ = _varint(footer, position, path)
    entries: list[tuple[bytes, bytes]] = []
    for _, handle in _block_entries(_block(data, index_offset, index_size, path, verify), path):
        offset, position = _varint(handle, 0, path)
        size, _ = _varint(handle, position, path)
        entries.extend(_block_entries(_block(data, offset, size, path, verify), path))
    for (before, _), (after, _) in pairwise(entries):
        if after <= before:
            raise CheckpointError(path, f"keys out of order: {after!r} after {before!r}")
    return entries


def _fields(message: bytes, path: Path) -> Iterable[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of a protobuf message; varint, fixed32/64 and length-delimited fields."""
    position = 0
    while position < len(message):
        tag, position = _varint(message, position, path)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, position = _varint(message, position, path)
            yield number, wire, value
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            if position + width > len(message):
                raise CheckpointError(path, "truncated fixed-width protobuf field")
            yield number, wire, int.from_bytes(message[position:position + width], "little")
            position += width
        elif wire == 2:
            size, position = _varint(message, position, path)
            if position + size > len(message):
                raise CheckpointError(path, "truncated protobuf field")
            yield number, wire, message[position:position + size]
            position += size
        else:
            raise CheckpointError(path, f"unsupported protobuf wire type {wire}")


def _integer(value: int | bytes, path: Path, what: str) -> int:
    if isinstance(value, bytes):
        raise CheckpointError(path, f"{what}: a length-delimited field where an integer belongs")
    return value


def _shape(message: int | bytes, path: Path, name: str) -> tuple[int, ...]:
    """Dimensions of a `TensorShapeProto` (field 2: repeated Dim, whose field 1 is the size)."""
    if not isinstance(message, bytes):
        raise CheckpointError(path, f"{name}: malformed shape")
    dims = []
    for number, _, value in _fields(message, path):
        if number == 2 and isinstance(value, bytes):
            sizes = [size for field, _, size in _fields(value, path) if field == 1]
            dims.append(_integer(sizes[0], path, name) if sizes else 0)
        elif number == 3 and value:
            raise CheckpointError(path, f"{name}: tensor of unknown rank")
    return tuple(dims)


def _entry(name: str, message: bytes, path: Path) -> TensorEntry:
    """Decode a `BundleEntryProto`: dtype 1, shape 2, shard 3, offset 4, size 5, crc32c 6, slices 7."""
    values: dict[int, int | bytes] = {}
    for number, _, value in _fields(message, path):
        if number == 7:
            raise CheckpointError(path, f"{name}: partitioned (sliced) variables are not supported")
        values[number] = value
    number = {field: _integer(values.get(field, 0), path, name) for field in (1, 3, 4, 5)}
    crc = values.get(6)
    return TensorEntry(name=name, dtype=number[1], shape=_shape(values.get(2, b""), path, name), shard=number[3],
                       offset=number[4], size=number[5], crc32c=None if crc is None else _integer(crc, path, name))


def _prefix(path: str | Path) -> str:
    """A checkpoint prefix from a prefix or a folder holding exactly one index (musicnn's is named `.index`)."""
    path = Path(path)
    if not path.is_dir():
        return str(path)
    indexes = sorted(p for p in path.iterdir() if p.name.endswith(".index"))
    if len(indexes) != 1:
        raise CheckpointError(path, f"expected one checkpoint index in the folder, found {len(indexes)}")
    return str(indexes[0])[: -len(".index")]


@dataclass(frozen=True)
class CheckpointIndex:
    """The decoded `.index` of a checkpoint: shard count, byte order and where each variable lives."""

    prefix: str
    path: Path
    shards: int
    byte_order: str
    entries: dict[str, TensorEntry]

    def data_path(self, shard: int) -> Path:
        return Path(f"{self.prefix}.data-{shard:05d}-of-{self.shards:05d}")


def read_index(prefix: str | Path, verify: bool = True) -> CheckpointIndex:
    """Parse `PREFIX.index`; `prefix` may also be a folder with a single index file."""
    base = _prefix(prefix)
    index_path = Path(f"{base}.index")
    rows = read_table(index_path, verify=verify)
    if not rows or rows[0][0] != b"":
        raise CheckpointError(index_path, "no bundle header (empty key) in the index")
    header = {number: value for number, _, value in _fields(rows[0][1], index_path)}
    shards = _integer(header.get(1, 0), index_path, "bundle header")
    if shards < 1:
        raise CheckpointError(index_path, f"bundle header declares {shards} data shards")
    byte_order = ">" if header.get(2, 0) == 1 else "<"
    entries = {}
    for key, value in rows[1:]:
        try:
            name = key.decode("utf-8")
        except UnicodeDecodeError as error:
            raise CheckpointError(index_path, f"variable name {key!r} is not UTF-8") from error
        entries[name] = _entry(name, value, index_path)
    return CheckpointIndex(prefix=base, path=index_path, shards=shards, byte_order=byte_order, entries=entries)


def _strings(entry: TensorEntry, raw: bytes, path: Path, verify: bool) -> np.ndarray:
    """A string tensor: varint lengths, a masked CRC32C of the lengths, then the bytes.

    TensorFlow checksums the lengths as fixed-width integers (uint32, or uint64 past 4 GiB), not as the varints it
    writes, and the entry's checksum covers those integers, the length checksum and the strings, in that order.
    """
    count = int(np.prod(entry.shape, dtype=np.int64))
    lengths = []
    position = 0
    for _ in range(count):
        length, position = _varint(raw, position, path)
        lengths.append(length)
    if position + 4 > len(raw):
        raise CheckpointError(path, f"{entry.name}: string tensor truncated before its length checksum")
    stored = raw[position:position + 4]
    position += 4
    if position + sum(lengths) != len(raw):
        raise CheckpointError(path, f"{entry.name}: string tensor holds {len(raw)} bytes, its lengths need "
                                    f"{position + sum(lengths)}")
    if verify:
        fixed = b"".join(struct.pack("<I", n) if n <= 0xFFFFFFFF else struct.pack("<Q", n) for n in lengths)
        crc = crc32c(fixed)
        if struct.pack("<I", mask_crc(crc)) != stored:
            raise CheckpointError(path, f"{entry.name}: string lengths checksum mismatch")
        if entry.crc32c is not None and mask_crc(crc32c(raw[position:], crc32c(stored, crc))) != entry.crc32c:
            raise CheckpointError(path, f"{entry.name}: checksum mismatch")
    values = np.empty(count, dtype=object)
    for i, length in enumerate(lengths):
        values[i] = raw[position:position + length]
        position += length
    return values.reshape(entry.shape)


def _decode(entry: TensorEntry, raw: bytes, byte_order: str, path: Path, verify: bool) -> np.ndarray:
    if entry.dtype == DT_STRING:
        return _strings(entry, raw, path, verify)
    count = int(np.prod(entry.shape, dtype=np.int64))
    if entry.dtype == DT_BFLOAT16:
        words = np.frombuffer(raw, dtype=f"{byte_order}u2")
        if words.size != count:
            raise CheckpointError(path, f"{entry.name}: {len(raw)} bytes do not hold shape {entry.shape} bfloat16")
        return (words.astype(np.uint32) << 16).view(np.float32).reshape(entry.shape)
    code = _NUMPY_DTYPES.get(entry.dtype)
    if code is None:
        raise CheckpointError(path, f"{entry.name}: unsupported TensorFlow dtype enum {entry.dtype}")
    dtype = np.dtype(code if code == "b1" else f"{byte_order}{code}")
    if len(raw) != count * dtype.itemsize:
        raise CheckpointError(path, f"{entry.name}: {len(raw)} bytes do not hold shape {entry.shape} of {dtype}")
    return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="), copy=True).reshape(entry.shape)


def read_checkpoint(prefix: str | Path, names: Iterable[str] | None = None,
                    verify: bool = True) -> dict[str, np.ndarray]:
    """{variable name: array} of a V2 checkpoint, all variables or only `names` (missing ones raise).

    `verify` checks the CRC32C of index blocks and of every tensor read (pure Python: about 0.1 s per MB).
    """
    index = read_index(prefix, verify=verify)
    wanted = list(index.entries) if names is None else list(names)
    missing = [name for name in wanted if name not in index.entries]
    if missing:
        raise CheckpointError(index.path, f"no variable named {', '.join(map(repr, missing))}")
    by_shard: dict[int, list[TensorEntry]] = {}
    for name in wanted:
        by_shard.setdefault(index.entries[name].shard, []).append(index.entries[name])
    out: dict[str, np.ndarray] = {}
    for shard, entries in sorted(by_shard.items()):
        path = index.data_path(shard)
        if not 0 <= shard < index.shards:
            raise CheckpointError(path, f"variable {entries[0].name} names shard {shard} of {index.shards}")
        try:
            handle = path.open("rb")
        except OSError as error:
            raise CheckpointError(path, f"cannot read: {error.strerror or error}") from error
        with handle:
            for entry in sorted(entries, key=lambda e: e.offset):
                handle.seek(entry.offset)
                raw = handle.read(entry.size)
                if len(raw) != entry.size:
                    raise CheckpointError(path, f"{entry.name}: file ends before its {entry.size} bytes")
                checked = verify and entry.crc32c is not None and entry.dtype != DT_STRING  # strings: see _strings
                if checked and mask_crc(crc32c(raw)) != entry.crc32c:
                    raise CheckpointError(path, f"{entry.name}: checksum mismatch")
                out[entry.name] = _decode(entry, raw, index.byte_order, path, verify)
    return {name: out[name] for name in wanted}


__all__ = ["CheckpointError", "CheckpointIndex", "TensorEntry", "crc32c", "mask_crc", "read_checkpoint",
           "read_index", "read_table", "snappy_decompress"]
