"""The pure-numpy TensorFlow checkpoint reader, against checkpoints written by an independent minimal writer here
and a tiny one written by TensorFlow itself (fixtures/tf_tiny)."""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path

import numpy as np
import pytest

from tunespace.encoders.tf_checkpoint import CheckpointError, crc32c, read_checkpoint, read_index, snappy_decompress
from tunespace.errors import TunespaceError

FIXTURES = Path(__file__).parent / "fixtures"
DTYPES = {np.dtype("float32"): 1, np.dtype("float64"): 2, np.dtype("int32"): 3, np.dtype("uint8"): 4,
          np.dtype("int64"): 9, np.dtype("bool"): 10, np.dtype("float16"): 19}


# --- an independent minimal writer: bitwise CRC, hand-rolled protobuf and LevelDB blocks --------------------------

def crc_bitwise(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked(crc: int) -> int:
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def pb_int(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


def pb_bytes(number: int, value: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(value)) + value


def block(entries: list[tuple[bytes, bytes]], restart_every: int, restarts: list[int] | None = None) -> bytes:
    out, starts, previous = bytearray(), [], b""
    for i, (key, value) in enumerate(entries):
        shared = 0
        if i % restart_every == 0:
            starts.append(len(out))
        else:
            while shared < min(len(key), len(previous)) and key[shared] == previous[shared]:
                shared += 1
        out += varint(shared) + varint(len(key) - shared) + varint(len(value)) + key[shared:] + value
        previous = key
    starts = starts if restarts is None else restarts
    return bytes(out) + b"".join(struct.pack("<I", s) for s in starts) + struct.pack("<I", len(starts))


def snappy_literals(data: bytes) -> bytes:
    """Valid snappy made of literals only (short and 1-byte-length forms)."""
    out = bytearray(varint(len(data)))
    for start in range(0, len(data), 200):
        chunk = data[start:start + 200]
        out += bytes([(len(chunk) - 1) << 2]) if len(chunk) <= 60 else bytes([60 << 2, len(chunk) - 1])
        out += chunk
    return bytes(out)


def table(entries: list[tuple[bytes, bytes]], per_block: int = 3, restart_every: int = 2, kind: int = 0,
          compress=lambda b: b) -> bytes:
    out, index = bytearray(), []
    for start in range(0, len(entries), per_block):
        chunk = entries[start:start + per_block]
        stored = compress(block(chunk, restart_every))
        index.append((chunk[-1][0], varint(len(out)) + varint(len(stored))))
        out += stored + bytes([kind]) + struct.pack("<I", masked(crc_bitwise(stored + bytes([kind]))))
    handles = []
    for body in (block([], 1), block(index, 1)):  # metaindex (empty), then index
        handles.append(varint(len(out)) + varint(len(body)))
        out += body + b"\0" + struct.pack("<I", masked(crc_bitwise(body + b"\0")))
    footer = b"".join(handles).ljust(40, b"\0") + struct.pack("<II", 0x8B80FB57, 0xDB477524)
    return bytes(out + footer)


def write_checkpoint(prefix: str, tensors: dict[str, np.ndarray], shards: int = 1, **table_options) -> None:
    data = [bytearray() for _ in range(shards)]
    rows = []
    for i, (name, array) in enumerate(sorted(tensors.items())):
        raw = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
        shard = i % shards
        shape = b"".join(pb_bytes(2, pb_int(1, d)) for d in array.shape)
        entry = (pb_int(1, DTYPES[array.dtype]) + pb_bytes(2, shape) + pb_int(3, shard) + pb_int(4, len(data[shard]))
                 + pb_int(5, len(raw)) + varint(6 << 3 | 5) + struct.pack("<I", masked(crc_bitwise(raw))))
        data[shard] += raw
        rows.append((name.encode(), entry))
    header = pb_int(1, shards) + pb_bytes(3, pb_int(1, 1))
    Path(f"{prefix}.index").write_bytes(table([(b"", header)] + rows, **table_options))
    for shard, raw in enumerate(data):
        Path(f"{prefix}.data-{shard:05d}-of-{shards:05d}").write_bytes(bytes(raw))


TENSORS = {
    "conv2d/kernel": np.linspace(-1, 1, 7 * 3 * 1 * 4, dtype=np.float32).reshape(7, 3, 1, 4),
    "conv2d/bias": np.array([0.5, -0.25, 3.0, 1e-8], dtype=np.float32),
    "conv2d_1/kernel": np.arange(6, dtype=np.float64).reshape(2, 3) / 3,
    "global_step": np.array(2**40 + 5, dtype=np.int64),
    "layer/counts": np.array([-3, 0, 2**31 - 1], dtype=np.int32),
    "layer/mask": np.array([[True, False], [False, True]]),
    "layer/half": np.array([0.1, 65504.0, -2.0], dtype=np.float16),
    "layer/bytes": np.array([0, 7, 255], dtype=np.uint8),
    "z_empty": np.zeros((0, 3), dtype=np.float32),
}


def assert_same(read: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert set(read) == set(expected)
    for name, array in expected.items():
        assert read[name].dtype == array.dtype and read[name].shape == array.shape, name
        np.testing.assert_array_equal(read[name], array)


# --- reading ---------------------------------------------------------------------------------------------------

def test_crc32c_known_vector():
    assert crc32c(b"123456789") == 0xE3069283 == crc_bitwise(b"123456789")
    assert crc32c(b"6789", crc32c(b"12345")) == crc32c(b"123456789")


@pytest.mark.parametrize("shards,per_block,restart_every", [(1, 100, 1), (2, 3, 2), (3, 2, 16)])
def test_round_trip_dtypes_blocks_restarts_and_shards(tmp_path, shards, per_block, restart_every):
    write_checkpoint(str(tmp_path / "model.ckpt"), TENSORS, shards=shards, per_block=per_block,
                     restart_every=restart_every)
    assert_same(read_checkpoint(tmp_path / "model.ckpt"), TENSORS)
    index = read_index(tmp_path / "model.ckpt")
    assert index.shards == shards and index.entries["conv2d/kernel"].shape == (7, 3, 1, 4)


def test_snappy_compressed_blocks(tmp_path):
    write_checkpoint(str(tmp_path / "c"), TENSORS, per_block=4, kind=1, compress=snappy_literals)
    assert_same(read_checkpoint(tmp_path / "c"), TENSORS)


def test_snappy_copies_of_every_width_and_overlap():
    literal = bytes([(4 - 1) << 2]) + b"abcd"
    one_byte = bytes([1 | ((6 - 4) << 2), 4])  # copy 6 from 4 back: overlaps its own output
    two_byte = bytes([2 | ((3 - 1) << 2)]) + struct.pack("<H", 10)
    four_byte = bytes([3 | ((2 - 1) << 2)]) + struct.pack("<I", 1)
    expected = b"abcdabcdab" + b"abc" + b"cc"
    assert snappy_decompress(varint(len(expected)) + literal + one_byte + two_byte + four_byte) == expected
    long_literal = bytes(range(100))
    assert snappy_decompress(snappy_literals(long_literal)) == long_literal
    with pytest.raises(CheckpointError, match="bad offset"):
        snappy_decompress(varint(8) + literal + bytes([1, 9]))
    with pytest.raises(CheckpointError, match="header says"):
        snappy_decompress(varint(5) + literal)


def test_folder_with_a_nameless_prefix_and_name_selection(tmp_path):
    folder = tmp_path / "MSD_like"
    folder.mkdir()
    write_checkpoint(f"{folder}/", TENSORS)  # musicnn's layout: files named '.index' and '.data-00000-of-00001'
    read = read_checkpoint(folder, names=["global_step", "conv2d/bias"])
    assert list(read) == ["global_step", "conv2d/bias"] and int(read["global_step"]) == 2**40 + 5
    with pytest.raises(CheckpointError, match=r"\.index.*no variable named 'missing'"):
        read_checkpoint(folder, names=["missing"])
    write_checkpoint(str(folder / "other"), TENSORS)
    with pytest.raises(CheckpointError, match="found 2"):
        read_checkpoint(folder)


def test_checkpoint_written_by_tensorflow():
    spec = importlib.util.spec_from_file_location("make_reference", FIXTURES / "make_musicnn_reference.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    read = read_checkpoint(FIXTURES / "tf_tiny" / "ckpt-1")
    for name, value in recipe.TINY_VALUES.items():
        got = read[f"{name}/.ATTRIBUTES/VARIABLE_VALUE"]
        assert got.dtype == np.asarray(value).dtype and got.shape == np.shape(value), name
        np.testing.assert_array_equal(got, value)
    assert read["_CHECKPOINTABLE_OBJECT_GRAPH"].shape == ()  # TF2's serialized object graph, a string scalar


# --- malformed files ---------------------------------------------------------------------------------------------

def _index_bytes(tmp_path: Path, **options) -> tuple[Path, bytes]:
    write_checkpoint(str(tmp_path / "m"), TENSORS, **options)
    return tmp_path / "m.index", (tmp_path / "m.index").read_bytes()


def test_malformed_index_files_raise_a_named_error(tmp_path):
    path, good = _index_bytes(tmp_path, per_block=100, restart_every=1)
    cases = {
        "bad table magic": good[:-1] + b"\0",
        "too short": good[:20],
        "checksum mismatch": good[:10] + bytes([good[10] ^ 0xFF]) + good[11:],
        "runs past the end": good[:len(good) // 2] + good[-48:],
    }
    for expected, data in cases.items():
        path.write_bytes(data)
        with pytest.raises(CheckpointError, match=expected) as caught:
            read_checkpoint(tmp_path / "m")
        assert str(path) in str(caught.value) and isinstance(caught.value, TunespaceError)


def test_structural_errors_inside_a_block(tmp_path):
    entries = [(b"", pb_int(1, 1)), (b"a", b""), (b"b", b"")]
    bad_restart = block(entries, 1, restarts=[0, 1])  # 1 is inside the first entry
    unordered = block([entries[0], entries[2], entries[1]], 1)
    path = tmp_path / "t.index"
    for data, expected in [(table(entries, compress=lambda b: bad_restart), "not entry boundaries"),
                           (table(entries, compress=lambda b: unordered), "out of order"),
                           (table(entries, kind=7), "unknown compression type 7")]:
        path.write_bytes(data)
        with pytest.raises(CheckpointError, match=expected):
            read_index(tmp_path / "t")
    path.write_bytes(table(entries))
    assert set(read_index(tmp_path / "t").entries) == {"a", "b"}


def test_corrupt_or_missing_tensor_data(tmp_path):
    write_checkpoint(str(tmp_path / "m"), {"w": np.arange(4, dtype=np.float32)})
    data_path = tmp_path / "m.data-00000-of-00001"
    raw = data_path.read_bytes()
    data_path.write_bytes(raw[:4] + bytes([raw[4] ^ 1]) + raw[5:])
    with pytest.raises(CheckpointError, match="w: checksum mismatch") as caught:
        read_checkpoint(tmp_path / "m")
    assert str(data_path) in str(caught.value)
    assert read_checkpoint(tmp_path / "m", verify=False)["w"][1] != 1.0  # verify=False reads what is there
    data_path.write_bytes(raw[:10])
    with pytest.raises(CheckpointError, match="file ends before"):
        read_checkpoint(tmp_path / "m")
    data_path.unlink()
    with pytest.raises(CheckpointError, match="cannot read"):
        read_checkpoint(tmp_path / "m")
    with pytest.raises(CheckpointError, match="cannot read"):
        read_checkpoint(tmp_path / "nothing-here")


def test_entries_the_reader_refuses(tmp_path):
    header = pb_int(1, 1)
    shape = pb_bytes(2, pb_bytes(2, pb_int(1, 4)))
    cases = {
        "partitioned": pb_int(1, 1) + shape + pb_int(5, 16) + pb_bytes(7, b""),
        "unsupported TensorFlow dtype enum 20": pb_int(1, 20) + shape + pb_int(5, 16),
        "do not hold shape": pb_int(1, 1) + shape + pb_int(5, 12),
    }
    (tmp_path / "e.data-00000-of-00001").write_bytes(bytes(16))
    for expected, entry in cases.items():
        (tmp_path / "e.index").write_bytes(table([(b"", header), (b"v", entry)]))
        with pytest.raises(CheckpointError, match=expected):
            read_checkpoint(tmp_path / "e")
