"""The checkpoint format every store shares, its one serializer, and the interface training uses.

A checkpoint is the torch-serialized dict that harness.training.state.capture_state builds;
FORMAT_VERSION and REQUIRED_KEYS describe it so a store can refuse an incomplete one before
training sees it. Training depends on this module and on `checkpoints.make_store` only.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from harness.storage.s3 import OverlappedSha256, StorageError

FORMAT_VERSION = 1
REQUIRED_KEYS = (
    "format_version",
    "model",
    "optimizer",
    "scheduler",
    "config",
    "epoch",
    "global_step",
    "rng",
)


class CheckpointError(StorageError):
    """A checkpoint is missing, corrupted, incomplete or incompatible."""


@runtime_checkable
class CheckpointStore(Protocol):
    """Where checkpoints live (a local directory, an S3 prefix)."""

    def save(self, state: Mapping[str, Any], epoch: int) -> str:
        """Persist one checkpoint and return its key; then update latest and prune."""

    def load(self, key: str | None = None) -> dict[str, Any]:
        """Load a checkpoint (None = latest), verified; CheckpointError naming it on any problem."""

    def latest(self) -> str | None:
        """Key of the newest complete checkpoint, or None."""

    def list(self) -> list[str]:
        """Keys, oldest to newest."""

    def delete(self, key: str) -> None:
        """Remove one checkpoint."""


class _HashingSink(io.RawIOBase):
    """A write-only file for torch.save that keeps the bytes and hashes them as they come."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[bytes] = []
        self.hasher = OverlappedSha256()

    def writable(self) -> bool:
        """Always: torch.save only writes."""
        return True

    def write(self, b: Any) -> int:
        """Keep and hash one chunk."""
        chunk = bytes(b)  # torch may reuse its buffer; the hasher needs a stable copy
        self.chunks.append(chunk)
        self.hasher.update(chunk)
        return len(chunk)


def serialize(state: Mapping[str, Any]) -> tuple[bytes, str]:
    """torch.save bytes of `state` and their sha256, hashed while torch is still writing."""
    import torch  # here, not at the top: listing checkpoints needs no torch

    sink = _HashingSink()
    torch.save(dict(state), sink)
    return b"".join(sink.chunks), sink.hasher.hexdigest()


def deserialize(data: bytes, name: str = "checkpoint") -> dict[str, Any]:
    """torch.load a state from bytes; CheckpointError naming `name` when it is not one."""
    import torch

    try:
        # weights_only=False: the state holds RNG tuples and numpy arrays, from our own writer
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is the same problem
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint {name} cannot be deserialized: {first}") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {name} holds a {type(state).__name__}, not a dict")
    return state


def missing_keys(state: Mapping[str, Any]) -> list[str]:
    """REQUIRED_KEYS absent from `state`, in their declared order."""
    return [k for k in REQUIRED_KEYS if k not in state]
