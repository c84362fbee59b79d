"""Conversion cache: outputs stored under .cache/ keyed by a hash of everything that made them."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from harness.io import atomic_path, file_lock

_sha_memo: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file, memoised per (path, size, mtime) within the process."""
    st = os.stat(path)
    memo_key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if memo_key not in _sha_memo:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _sha_memo[memo_key] = h.hexdigest()
    return _sha_memo[memo_key]


def key_of(parts: dict[str, Any]) -> str:
    """A short stable hash of a JSON-serialisable description of the inputs."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


class ConversionCache:
    """Entries live in <root>/<name>/<key>/ with the artefact and a meta.json written last."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def entry(self, name: str, key: str) -> Path:
        """Directory of one cache entry."""
        return self.root / name / key

    def lookup(self, name: str, key: str, filename: str) -> tuple[Path, dict[str, Any]] | None:
        """(artefact path, meta) when a complete entry exists, else None."""
        d = self.entry(name, key)
        meta_path, art = d / "meta.json", d / filename
        if meta_path.is_file() and art.is_file():
            meta = json.loads(meta_path.read_text())
            if meta.get("sha256") == file_sha256(art):
                return art, meta
        return None

    def building(self, name: str) -> contextlib.AbstractContextManager[None]:
        """A cross-process lock held while one process builds an entry of `name`."""
        return file_lock(self.root / f".{name}.lock")

    def store(
        self, name: str, key: str, produced: Path, filename: str, meta: dict[str, Any]
    ) -> Path:
        """Move `produced` into the entry and write meta.json (the completeness marker) last."""
        d = self.entry(name, key)
        d.mkdir(parents=True, exist_ok=True)
        art = d / filename
        shutil.move(str(produced), art)
        meta = dict(meta, sha256=file_sha256(art), key=key)
        with atomic_path(d / "meta.json") as tmp:
            tmp.write_text(json.dumps(meta, indent=1, default=str))
        # older entries of the same artefact are dead weight (90 MB each)
        for other in (self.root / name).iterdir():
            if other.is_dir() and other.name != key:
                shutil.rmtree(other, ignore_errors=True)
        return art


def install(src: Path, dst: Path) -> bool:
    """Place `src` at `dst` (hard link, else copy) unless identical; True when dst changed."""
    if dst.is_file() and dst.stat().st_size == src.stat().st_size:
        if file_sha256(dst) == file_sha256(src):
            return False
    with atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
    return True
