"""IDX reader/writer: round trips and rejection of malformed files."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from harness.data.idx import encode_idx, parse_idx, read_idx, write_idx
from harness.errors import HarnessError


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip(tmp_path, dtype, suffix):
    rng = np.random.default_rng(1)
    arr = (rng.random((5, 7, 3)) * 100).astype(dtype)
    path = write_idx(tmp_path / f"x-idx3-ubyte{suffix}", arr)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back, arr)


def test_header_matches_mnist_layout(tmp_path):
    # Independent oracle: the MNIST spec's header (magic 0x00000803 for 3-d uint8), big-endian.
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = encode_idx(arr)
    assert raw[:4] == b"\x00\x00\x08\x03"
    assert struct.unpack(">III", raw[4:16]) == (2, 3, 4)
    assert raw[16:] == arr.tobytes()
    labels = encode_idx(np.array([7, 2, 1], dtype=np.uint8))
    assert labels[:8] == b"\x00\x00\x08\x01" + struct.pack(">I", 3)


def test_multibyte_values_are_big_endian():
    raw = encode_idx(np.array([1], dtype=np.int32))
    assert raw[-4:] == b"\x00\x00\x00\x01"


@pytest.mark.parametrize(
    "raw, words",
    [
        (b"", "truncated"),
        (b"\x00\x00\x08", "truncated"),
        (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00", "bad magic"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00", "bad magic"),
        (b"\x00\x00\x08\x00", "bad magic"),
        (b"\x00\x00\x08\x03" + struct.pack(">I", 2), "truncated"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 5) + b"\x00" * 4, "truncated"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 2) + b"\x00" * 3, "oversized"),
    ],
)
def test_rejects_malformed(raw, words):
    with pytest.raises(HarnessError, match=words) as exc:
        parse_idx(raw, "some-file")
    assert "some-file" in str(exc.value)


def test_rejects_truncated_file_and_names_it(tmp_path):
    path = write_idx(tmp_path / "imgs-idx3-ubyte", np.zeros((4, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(HarnessError, match=r"truncated IDX file .*imgs-idx3-ubyte"):
        read_idx(path)


def test_rejects_corrupted_gzip(tmp_path):
    path = tmp_path / "x-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(encode_idx(np.zeros(3, np.uint8)))[:-6])
    with pytest.raises(HarnessError, match="x-idx1-ubyte.gz"):
        read_idx(path)


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(HarnessError, match="cannot read IDX file"):
        read_idx(tmp_path / "nope")


def test_gzip_output_is_reproducible(tmp_path):
    arr = np.arange(10, dtype=np.uint8)
    a = write_idx(tmp_path / "a.gz", arr).read_bytes()
    b = write_idx(tmp_path / "b.gz", arr).read_bytes()
    assert a == b
