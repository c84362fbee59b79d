"""The checkpoint format both stores share, and the interface training writes through.

A checkpoint is the torch-serialized dict that harness.training.state.capture_state builds;
FORMAT_VERSION and REQUIRED_KEYS describe it so a store can refuse an incomplete one before
training sees it.
"""

from __future__ import annotations

import io
from typing import Any, Protocol, runtime_checkable

from harness.errors import HarnessError

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


@runtime_checkable
class CheckpointStore(Protocol):
    """Where checkpoints live (local files, S3)."""

    def save(self, state: dict[str, Any], epoch: int) -> str:
        """Persist one checkpoint and return its key; then update latest and prune."""

    def load(self, key: str | None = None) -> dict[str, Any]:
        """Load a checkpoint (None = latest), verified; HarnessError naming it on any problem."""

    def latest(self) -> str | None:
        """Key of the newest complete checkpoint, or None."""

    def list(self) -> list[str]:
        """Keys, oldest to newest."""

    def delete(self, key: str) -> None:
        """Remove one checkpoint."""


def serialize(state: dict[str, Any]) -> bytes:
    """torch.save the state into bytes."""
    import torch  # here, not at the top: listing checkpoints needs no torch

    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def deserialize(data: bytes, name: str = "checkpoint") -> dict[str, Any]:
    """torch.load a state from bytes; HarnessError naming `name` when it is not one."""
    import torch

    try:
        # weights_only=False: the state holds RNG tuples and numpy arrays, from our own writer
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    except Exception as exc:
        raise HarnessError(f"corrupted checkpoint {name}: cannot unpickle ({exc})") from exc
    if not isinstance(state, dict):
        raise HarnessError(f"corrupted checkpoint {name}: not a dict")
    return state
