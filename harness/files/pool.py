"""Deterministic pools of small UTF-8 text files and their `sha256sum -c` compatible manifest."""

from __future__ import annotations

import hashlib
import logging
import math
import os
import random
import shutil
import stat
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.io import atomic_open

log = logging.getLogger(__name__)

MANIFEST = "SHA256SUMS"

# Words with non-ASCII letters on purpose: the pool must survive UTF-8 end to end.
_WORDS = (
    "label annotate crowd sample token image digit review accept reject batch task worker "
    "naïve café straße façade smørrebrød jalapeño über déjà-vu 日本語 テキスト данные δεδομένα "
    "données mañana zürich köln ångström œuvre"
).split()


@dataclass(frozen=True)
class PoolSpec:
    """What a generated pool looks like: count, seed, size range and folder fan-out."""

    count: int
    seed: int = 0
    min_size: int = 4
    max_size: int = 65536
    fanout: tuple[int, ...] = (8, 4)

    def check(self) -> None:
        """Raise HarnessError on values that cannot make a pool."""
        if self.count < 1:
            raise HarnessError(f"--count must be at least 1, got {self.count}")
        if not 1 <= self.min_size <= self.max_size:
            raise HarnessError(
                f"file sizes need 1 <= min_size <= max_size, got {self.min_size}..{self.max_size}"
            )
        if any(f < 1 for f in self.fanout):
            raise HarnessError(f"fanout entries must be >= 1, got {list(self.fanout)}")


def _text(rng: random.Random, size: int) -> bytes:
    """UTF-8 text of exactly `size` bytes (multi-byte characters never split)."""
    out = bytearray()
    line = 0
    while len(out) < size:
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 12)))
        out += f"{line:05d} {words}\n".encode()
        line += 1
    data = bytes(out[:size])
    # Cut back to a character boundary, then pad with ASCII to the exact size.
    text = data.decode("utf-8", errors="ignore").encode()
    return text + b"\n" * (size - len(text))


def _relpath(index: int, rng: random.Random, fanout: tuple[int, ...]) -> str:
    """Nested relative path for file `index`: 1..len(fanout) folder levels."""
    depth = rng.randint(1, len(fanout)) if fanout else 0
    parts = [f"d{level}-{rng.randrange(fanout[level]):02d}" for level in range(depth)]
    return "/".join([*parts, f"item-{index:06d}.txt"])


def plan_pool(spec: PoolSpec) -> list[tuple[str, bytes]]:
    """The (relative path, content) pairs of a pool: a pure function of `spec`."""
    spec.check()
    rng = random.Random(spec.seed)
    lo, hi = math.log(spec.min_size), math.log(spec.max_size)
    files = []
    for i in range(spec.count):
        # Log-uniform sizes: many tiny files, some near the maximum, like real annotation data.
        size = min(spec.max_size, max(spec.min_size, round(math.exp(rng.uniform(lo, hi)))))
        files.append((_relpath(i, rng, spec.fanout), _text(rng, size)))
    return files


def build_pool(root: str | os.PathLike[str], spec: PoolSpec) -> Path:
    """Create a new pool at `root` (absent or empty) atomically, with its manifest."""
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise HarnessError(
            f"{root} exists and is not an empty folder; pick a new path, or run "
            f"`harness files build {root}` without --count to only write its manifest"
        )
    files = plan_pool(spec)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        for rel, data in files:
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        _write_manifest_lines(tmp, ((_sha256_bytes(d), rel) for rel, d in files))
        # World-readable like any web root: mkdtemp makes 0700, nginx workers may be another user.
        _make_readable(tmp)
        if root.exists():
            root.rmdir()
        os.rename(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("built pool of %d files at %s", len(files), root)
    return root


def _make_readable(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def is_hidden(rel: str) -> bool:
    """True when any component of a relative path starts with a dot (never served)."""
    return any(part.startswith(".") for part in rel.split("/"))


def scan_pool(root: str | os.PathLike[str]) -> tuple[list[str], list[str]]:
    """Servable regular files under `root` (sorted relative paths) and the skipped ones."""
    root = Path(root)
    keep, skipped = [], []
    for dirpath, dirnames, filenames in os.walk(root):  # os.walk does not follow symlinked dirs
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        for name in sorted(dirnames):
            if os.path.islink(os.path.join(dirpath, name)):
                skipped.append(f"{_join(rel_dir, name)} (symlink)")
        for name in filenames:
            rel = _join(rel_dir, name)
            st = os.lstat(os.path.join(dirpath, name))
            if rel == MANIFEST:
                continue
            if stat.S_ISLNK(st.st_mode):
                skipped.append(f"{rel} (symlink)")
            elif not stat.S_ISREG(st.st_mode):
                skipped.append(f"{rel} (not a regular file)")
            elif is_hidden(rel):
                skipped.append(f"{rel} (hidden)")
            elif "\n" in rel or "\\" in rel or "\r" in rel:
                raise HarnessError(f"file name {rel!r} has a newline or backslash; rename it")
            else:
                keep.append(rel)
    return sorted(keep), sorted(skipped)


def _join(rel_dir: str, name: str) -> str:
    return name if rel_dir == "." else f"{rel_dir}/{name}"


def write_manifest(root: str | os.PathLike[str]) -> tuple[int, list[str]]:
    """Write SHA256SUMS for an existing folder; return (files listed, skipped entries)."""
    root = Path(root)
    if not root.is_dir():
        raise HarnessError(f"{root} is not a folder")
    files, skipped = scan_pool(root)
    if not files:
        raise HarnessError(
            f"{root} holds no servable files (hidden files and symlinks are skipped)"
        )
    for item in skipped:
        log.warning("not listed in %s: %s", MANIFEST, item)
    _write_manifest_lines(root, ((sha256_file(root / rel), rel) for rel in files))
    return len(files), skipped


def _write_manifest_lines(root: Path, entries: Iterable[tuple[str, str]]) -> None:
    # Two spaces = text mode in sha256sum's format; sorted so the manifest is deterministic.
    with atomic_open(root / MANIFEST, "w", encoding="utf-8", newline="\n") as fh:
        for digest, rel in sorted(entries, key=lambda e: e[1]):
            fh.write(f"{digest}  {rel}\n")
    os.chmod(root / MANIFEST, 0o644)


def parse_manifest(text: str) -> list[tuple[str, str]]:
    """(sha256 hex, relative path) pairs of a sha256sum manifest; bad lines raise HarnessError."""
    entries = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        digest, sep, rel = line.partition(" ")
        if rel.startswith(("*", " ")):
            rel = rel[1:]  # '*' marks binary mode, ' ' text mode
        digest = digest.lower()
        if (
            not sep
            or len(digest) != 64
            or any(c not in "0123456789abcdef" for c in digest)
            or not rel
        ):
            raise HarnessError(f"{MANIFEST} line {n} is not '<sha256>  <path>': {line[:80]!r}")
        entries.append((digest, rel))
    return entries
