"""Objects as files under one directory, with the same put/get/head/list/delete as S3Client.

Each object KEY is the file ROOT/KEY; its user metadata (what S3 keeps with the object) is the
JSON file ROOT/KEY.meta.json. Both are written through a temporary sibling and renamed (fsync'd
first), the metadata before the object, so once an object is visible its metadata is too and a
crash leaves no partial file under a real name. Names starting with "." are temporaries and
never listed.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from harness.io import atomic_open
from harness.storage.s3 import ObjectInfo, StorageError, StorageNotFound

META_SUFFIX = ".meta.json"


def _info(key: str, st: os.stat_result, metadata: dict[str, str]) -> ObjectInfo:
    return ObjectInfo(
        key=key,
        size=st.st_size,
        etag=f"{st.st_mtime_ns:x}-{st.st_size:x}",
        metadata=metadata,
        last_modified=_dt.datetime.fromtimestamp(st.st_mtime, tz=_dt.timezone.utc),
    )


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


@contextlib.contextmanager
def _os_errors(what: str) -> Iterator[None]:
    """OSError as the S3 client's errors: a missing file is StorageNotFound, else StorageError."""
    try:
        yield
    except FileNotFoundError as exc:
        raise StorageNotFound(f"{what}: not found (no such file)") from exc
    except OSError as exc:
        raise StorageError(f"{what}: {_reason(exc)}") from exc


class LocalBlobs:
    """One directory as an object store: put/get/head/list/delete, metadata in a sidecar."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def uri(self, key: str) -> str:
        """The path of `key` as text (what messages name)."""
        return f"{self.root}/{key}"

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or key.endswith(META_SUFFIX) or any(not p or p.startswith(".") for p in parts):
            raise StorageError(f"not an object key under {self.root}: {key!r}")
        return self.root.joinpath(*parts)

    @staticmethod
    def _meta_path(path: Path) -> Path:
        return path.with_name(path.name + META_SUFFIX)

    def put_bytes(self, key: str, data: bytes | memoryview, metadata: Mapping[str, str]) -> None:
        """Write `data` to `key` and `metadata` beside it, each atomically, metadata first."""
        path = self._path(key)
        side = self._meta_path(path)
        existed = path.exists()
        try:
            with atomic_open(side, "w") as fh:
                json.dump({str(k): str(v) for k, v in metadata.items()}, fh)
            try:
                with atomic_open(path, "wb") as fh:
                    fh.write(data)
            except OSError:
                if not existed:  # no object came to be: its metadata must not linger
                    side.unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise StorageError(f"write {self.uri(key)}: {_reason(exc)}") from exc

    def head(self, key: str) -> ObjectInfo:
        """Size and metadata of `key` (empty when the sidecar is missing or unreadable)."""
        path = self._path(key)
        with _os_errors(f"head {self.uri(key)}"):
            st = path.stat()
        if not path.is_file():
            raise StorageNotFound(f"head {self.uri(key)}: not found (not a file)")
        try:
            raw = json.loads(self._meta_path(path).read_text())
            metadata = {str(k).lower(): str(v) for k, v in raw.items()}
        except (OSError, ValueError, AttributeError):
            metadata = {}  # like an S3 object uploaded without metadata
        return _info(key, st, metadata)

    def get_bytes(self, key: str, info: ObjectInfo | None = None) -> bytes:
        """The bytes of `key`."""
        return self.get_hashed(key, info)[0]

    def get_hashed(self, key: str, info: ObjectInfo | None = None) -> tuple[bytes, str]:
        """The bytes of `key` and their sha256."""
        path = self._path(key)
        with _os_errors(f"read {self.uri(key)}"):
            data = path.read_bytes()
        return data, hashlib.sha256(data).hexdigest()

    def list_keys(self, prefix: str) -> list[ObjectInfo]:
        """Objects whose key starts with `prefix` (sidecars and temporaries left out), by key."""
        top = self.root.joinpath(*prefix.split("/")[:-1]) if "/" in prefix else self.root
        if not top.is_dir():
            return []
        out: list[ObjectInfo] = []
        for path in top.rglob("*"):
            key = path.relative_to(self.root).as_posix()
            if (
                not key.startswith(prefix)
                or key.endswith(META_SUFFIX)
                or any(p.startswith(".") for p in key.split("/"))
            ):
                continue
            try:
                st = path.stat()
            except FileNotFoundError:  # deleted while listing
                continue
            if path.is_file():
                out.append(_info(key, st, {}))
        return sorted(out, key=lambda o: o.key)

    def delete(self, key: str) -> None:
        """Delete `key` and its metadata (no error when already gone)."""
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
            self._meta_path(path).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"delete {self.uri(key)}: {_reason(exc)}") from exc
