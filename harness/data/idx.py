"""IDX files (the MNIST format): read and write, magic number and size checked, .gz supported.

Layout: 2 zero bytes, a dtype code, the number of dimensions, one big-endian uint32 per
dimension, then the values in C order (big-endian for multi-byte types).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from harness.errors import HarnessError
from harness.io import atomic_path

# IDX dtype code -> numpy dtype (big-endian, as the format stores them)
DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
CODES: dict[str, int] = {dt.newbyteorder("=").str[1:]: code for code, dt in DTYPES.items()}


def _open_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise HarnessError(f"cannot read IDX file {path}: {exc.strerror or exc}") from exc
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise HarnessError(f"corrupted gzip IDX file {path}: {exc}") from exc
    return raw


def parse_idx(raw: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes into an array; HarnessError naming `name` on a bad magic or size."""
    if len(raw) < 4:
        raise HarnessError(f"truncated IDX file {name}: {len(raw)} bytes, no header")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in DTYPES or raw[3] == 0:
        raise HarnessError(f"not an IDX file {name}: bad magic number 0x{raw[:4].hex()}")
    dtype, ndim = DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise HarnessError(f"truncated IDX file {name}: header needs {header} bytes")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        kind = "truncated" if len(raw) < expected else "oversized"
        raise HarnessError(
            f"{kind} IDX file {name}: {len(raw)} bytes, shape {shape} needs {expected}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (optionally .gz) into a native-endian numpy array."""
    path = Path(path)
    return parse_idx(_open_bytes(path), str(path))


def encode_idx(array: np.ndarray) -> bytes:
    """Encode an array as IDX bytes."""
    arr = np.asarray(array)
    key = arr.dtype.newbyteorder("=").str[1:]
    if key not in CODES:
        raise HarnessError(f"IDX cannot store dtype {arr.dtype}")
    if arr.ndim == 0 or arr.ndim > 255:
        raise HarnessError(f"IDX cannot store an array with {arr.ndim} dimensions")
    code = CODES[key]
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(arr, dtype=DTYPES[code]).tobytes()


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Write `array` as an IDX file (gzip when the name ends in .gz), atomically."""
    path = Path(path)
    data = encode_idx(array)
    if path.suffix == ".gz":
        # mtime=0: identical inputs give identical bytes (reproducible data files)
        data = gzip.compress(data, mtime=0)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
        tmp.chmod(0o644)  # mkstemp makes 0600; data files are meant to be shared
    return path
