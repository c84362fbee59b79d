"""Checkpoint stores: the protocol the trainer uses, a local-file store, and the factory.

A store keeps numbered checkpoints of the training state (see state.py). `latest` moves only
after a checkpoint was fully written, and each load verifies integrity, so an interrupted save
never poisons a resume.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from harness.errors import HarnessError
from harness.io import atomic_path
from harness.paths import resolve
from harness.storage.checkpoint_format import CheckpointStore, deserialize, serialize


def checkpoint_key(epoch: int) -> str:
    """The key of the checkpoint taken after `epoch` completed epochs (sorts by epoch)."""
    return f"epoch-{epoch:04d}"


def sha256(data: bytes) -> str:
    """Hex sha256 of bytes."""
    return hashlib.sha256(data).hexdigest()


class LocalCheckpointStore:
    """Checkpoints as files in a directory: KEY.pt + KEY.pt.sha256, and a `latest` pointer."""

    def __init__(self, directory: str | os.PathLike[str], keep_last: int = 3) -> None:
        self.dir = Path(directory)
        self.keep_last = int(keep_last)

    @classmethod
    def from_config(cls, cfg: DictConfig) -> LocalCheckpointStore:
        """Build from the `checkpoint` config group."""
        return cls(resolve(cfg.checkpoint.local_dir), cfg.checkpoint.keep_last)

    def _file(self, key: str) -> Path:
        if not key or "/" in key or key.startswith("."):
            raise HarnessError(f"invalid checkpoint key: {key!r}")
        return self.dir / f"{key}.pt"

    def save(self, state: dict[str, Any], epoch: int) -> str:
        """Write KEY.pt and its sha256 sidecar atomically, then point latest at it, then prune."""
        key = checkpoint_key(epoch)
        data = serialize(state)
        path = self._file(key)
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
        with atomic_path(path.with_name(path.name + ".sha256")) as tmp:
            tmp.write_text(json.dumps({"sha256": sha256(data), "size": len(data)}))
        with atomic_path(self.dir / "latest") as tmp:
            tmp.write_text(key)
        self._prune()
        return key

    def _prune(self) -> None:
        if self.keep_last <= 0:
            return
        keys = self.list()
        for key in keys[: max(0, len(keys) - self.keep_last)]:
            self.delete(key)

    def load(self, key: str | None = None) -> dict[str, Any]:
        """Read and verify a checkpoint (size and sha256 against the sidecar)."""
        if key is None:
            key = self.latest()
            if key is None:
                raise HarnessError(f"no checkpoint to resume from in {self.dir}")
        path = self._file(key)
        side = path.with_name(path.name + ".sha256")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise HarnessError(f"checkpoint {key} not found: {path} ({exc.strerror})") from exc
        try:
            meta = json.loads(side.read_text())
            want, size = meta["sha256"], int(meta["size"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise HarnessError(f"checkpoint {key}: missing or bad checksum file {side}") from exc
        if len(data) != size:
            raise HarnessError(f"truncated checkpoint {path}: {len(data)} bytes, expected {size}")
        if sha256(data) != want:
            raise HarnessError(f"corrupted checkpoint {path}: sha256 mismatch")
        return deserialize(data, str(path))

    def latest(self) -> str | None:
        """The key in `latest` if that checkpoint still exists, else the newest listed one."""
        pointer = self.dir / "latest"
        if pointer.exists():
            key = pointer.read_text().strip()
            if key and self._file(key).exists():
                return key
        keys = self.list()
        return keys[-1] if keys else None

    def list(self) -> list[str]:
        """Keys of complete checkpoints (file and sidecar present), oldest to newest."""
        if not self.dir.is_dir():
            return []
        return sorted(
            p.name[:-3]
            for p in self.dir.glob("*.pt")
            if not p.name.startswith(".") and p.with_name(p.name + ".sha256").exists()
        )

    def delete(self, key: str) -> None:
        """Remove a checkpoint and its sidecar (missing is fine)."""
        path = self._file(key)
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".sha256").unlink(missing_ok=True)


def make_store(cfg: DictConfig) -> CheckpointStore | None:
    """The store chosen by checkpoint.store: none | local | s3."""
    kind = str(cfg.checkpoint.store).lower()
    if kind in ("none", "null", "false", ""):
        return None
    if kind == "local":
        return LocalCheckpointStore.from_config(cfg)
    if kind == "s3":
        from harness.storage.checkpoints import S3CheckpointStore  # storage issue; heavy deps

        return S3CheckpointStore.from_config(cfg)
    raise HarnessError(f"unknown checkpoint.store '{cfg.checkpoint.store}' (none, local, s3)")
