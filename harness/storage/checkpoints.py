"""Training checkpoints in an S3 bucket: one verified object per save, a `latest` pointer last.

Layout under `checkpoint.prefix` (say `checkpoints/mnist-onnx`):

    <prefix>/20261122T003012345678Z-epoch0002.ckpt   the serialized state, one object per save
                                                      metadata: sha256, size, epoch, global_step
    <prefix>/latest                                   JSON {"key", "sha256", "size", "epoch", ...}

The checkpoint object is uploaded completely (multipart when large) before `latest` is
rewritten, so a crash or a lost server mid-upload leaves the previous checkpoint as `latest`.
Loads verify size and sha256 against the object's metadata (and the pointer) before anything
is deserialized, then check the required keys and that the model config matches.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

from harness.storage.checkpoint_format import REQUIRED_KEYS, deserialize
from harness.storage.s3 import (
    SHA256_META,
    OverlappedSha256,
    S3Client,
    StorageError,
    StorageNotFound,
    client_from_config,
)

log = logging.getLogger(__name__)


class CheckpointError(StorageError):
    """A checkpoint is missing, corrupted, incomplete or incompatible."""


class _HashingSink(io.RawIOBase):
    """A write-only file for torch.save that keeps the bytes and hashes them as they come."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[bytes] = []
        self.hasher = OverlappedSha256()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        chunk = bytes(b)  # torch may reuse its buffer; the hasher needs a stable copy
        self.chunks.append(chunk)
        self.hasher.update(chunk)
        return len(chunk)


def _serialize(state: Mapping[str, Any]) -> tuple[bytes, str]:
    """torch.save bytes of `state` (the format of harness.storage.checkpoint_format.serialize) and
    their sha256, hashed while torch is still writing."""
    import torch

    sink = _HashingSink()
    torch.save(dict(state), sink)
    return b"".join(sink.chunks), sink.hasher.hexdigest()


def _as_container(node: Any) -> Any:
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)
    if isinstance(node, str):
        try:
            return OmegaConf.to_container(OmegaConf.create(node), resolve=True)
        except Exception:  # noqa: BLE001 - not YAML: compare as is
            return node
    return node


def _diff(old: Any, new: Any, path: str) -> list[str]:
    """Dotted paths where `old` (checkpoint) and `new` (current config) differ."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out: list[str] = []
        for k in sorted(set(old) | set(new), key=str):
            out += _diff(old.get(k, "<missing>"), new.get(k, "<missing>"), f"{path}.{k}")
        return out
    return [] if old == new else [f"{path}={old!r} in the checkpoint, {new!r} now"]


class S3CheckpointStore:
    """The CheckpointStore protocol of harness.training.checkpoint, backed by one S3 prefix."""

    def __init__(
        self,
        client: S3Client,
        prefix: str,
        *,
        keep_last: int = 3,
        suffix: str = ".ckpt",
        latest_name: str = "latest",
        expected: Mapping[str, Any] | None = None,
    ) -> None:
        self.client = client
        self.prefix = prefix.strip("/")
        self.keep_last = int(keep_last)
        self.suffix = suffix
        self.latest_name = latest_name
        # Config groups (name -> resolved dict) a checkpoint must match to be loaded.
        self.expected = dict(expected or {})

    @classmethod
    def from_config(cls, cfg: DictConfig, client: S3Client | None = None) -> S3CheckpointStore:
        """The store for `cfg.checkpoint` on the bucket of `cfg.storage` (created if missing)."""
        client = client or client_from_config(cfg)
        client.ensure_bucket()
        ck = cfg.checkpoint
        groups: Sequence[str] = ck.get("compatible_groups", ["model"]) or []
        expected = {g: _as_container(cfg[g]) for g in groups if g in cfg}
        return cls(
            client,
            str(ck.prefix),
            keep_last=int(ck.keep_last),
            suffix=str(ck.get("suffix", ".ckpt")),
            latest_name=str(ck.get("latest_name", "latest")),
            expected=expected,
        )

    # -- names --------------------------------------------------------------------------------
    def object_key(self, key: str) -> str:
        """Full object key of checkpoint `key` (accepts a bare name, a full key or an s3:// URI)."""
        key = key.strip()
        uri_head = f"s3://{self.client.bucket}/"
        if key.startswith(uri_head):
            key = key[len(uri_head) :]
        if key.startswith(self.prefix + "/"):
            key = key[len(self.prefix) + 1 :]
        if not key or "/" in key or key == self.latest_name:
            raise CheckpointError(
                f"not a checkpoint name under s3://{self.client.bucket}/{self.prefix}/: {key!r}"
            )
        return f"{self.prefix}/{key}"

    def uri(self, key: str) -> str:
        """s3:// URI of checkpoint `key`."""
        return self.client.uri(self.object_key(key))

    @property
    def latest_key(self) -> str:
        """Object key of the `latest` pointer."""
        return f"{self.prefix}/{self.latest_name}"

    def _new_name(self, epoch: int) -> str:
        now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        return f"{now}-epoch{int(epoch):04d}{self.suffix}"

    # -- protocol -----------------------------------------------------------------------------
    def save(self, state: Mapping[str, Any], epoch: int) -> str:
        """Upload `state` as a new object, then point `latest` at it, then prune to keep_last."""
        data, digest = _serialize(state)
        name = self._new_name(epoch)
        obj = f"{self.prefix}/{name}"
        meta = {
            SHA256_META: digest,
            "size": str(len(data)),
            "epoch": str(int(epoch)),
            "global-step": str(int(state.get("global_step", -1))),
            "format-version": str(state.get("format_version", "")),
        }
        previous: str | None = "?"
        try:
            previous = self.latest()  # read first: named in the message if the upload fails
            try:
                self.client.head(obj)
            except StorageNotFound:
                pass
            else:  # never overwrite an existing checkpoint
                raise CheckpointError(f"checkpoint {self.client.uri(obj)} already exists")
            self.client.put_bytes(obj, data, meta)
        except CheckpointError:
            raise
        except StorageError as exc:
            where = (
                "was not changed" if previous == "?" else f"still points to {previous or 'nothing'}"
            )
            raise CheckpointError(
                f"saving checkpoint {self.client.uri(obj)} failed; `latest` {where}: {exc}"
            ) from exc
        pointer = {
            "key": name,
            "sha256": digest,
            "size": len(data),
            "epoch": int(epoch),
            "global_step": int(state.get("global_step", -1)),
            "saved_at": _dt.datetime.now(_dt.timezone.utc).isoformat(),
        }
        # Only now, with the object complete, does `latest` move.
        try:
            self.client.put_bytes(
                self.latest_key, json.dumps(pointer).encode(), {SHA256_META: digest}
            )
        except StorageError as exc:
            raise CheckpointError(
                f"checkpoint {self.client.uri(obj)} uploaded but updating "
                f"{self.client.uri(self.latest_key)} failed (it still names the previous one): "
                f"{exc}"
            ) from exc
        log.info("checkpoint saved: %s (%d bytes)", self.client.uri(obj), len(data))
        self._prune(keep=name)
        return name

    def _prune(self, keep: str) -> None:
        if self.keep_last <= 0:
            return
        names = self.list()
        for old in names[: max(0, len(names) - self.keep_last)]:
            if old != keep:
                try:
                    self.client.delete(self.object_key(old))
                except StorageError as exc:  # pruning is housekeeping: the save itself succeeded
                    log.warning("could not delete old checkpoint %s: %s", old, exc)

    def _pointer(self) -> dict[str, Any] | None:
        try:
            raw = self.client.get_bytes(self.latest_key)
        except StorageNotFound:
            return None
        try:
            pointer = json.loads(raw)
            str(pointer["key"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(
                f"checkpoint pointer {self.client.uri(self.latest_key)} is not JSON with a key"
            ) from exc
        return pointer

    def latest(self) -> str | None:
        """Name of the newest complete checkpoint, or None when there is none."""
        pointer = self._pointer()
        return None if pointer is None else str(pointer["key"])

    def list(self) -> list[str]:
        """Checkpoint names under the prefix, oldest to newest."""
        objs = self.client.list_keys(self.prefix + "/")
        names = [o.key[len(self.prefix) + 1 :] for o in objs]
        return sorted(n for n in names if n.endswith(self.suffix) and "/" not in n)

    def delete(self, key: str) -> None:
        """Delete checkpoint `key`; if it is `latest`, repoint `latest` to the newest left first."""
        obj = self.object_key(key)
        name = obj[len(self.prefix) + 1 :]
        info = self.client.head(obj)  # StorageNotFound names the object
        pointer = self._pointer()
        if pointer is not None and pointer["key"] == name:
            rest = [n for n in self.list() if n != name]
            if rest:
                prev = self.client.head(self.object_key(rest[-1]))
                new = {
                    "key": rest[-1],
                    "sha256": prev.metadata.get(SHA256_META, ""),
                    "size": prev.size,
                    "epoch": int(prev.metadata.get("epoch", -1)),
                    "global_step": int(prev.metadata.get("global-step", -1)),
                    "saved_at": _dt.datetime.now(_dt.timezone.utc).isoformat(),
                }
                self.client.put_bytes(
                    self.latest_key, json.dumps(new).encode(), {SHA256_META: new["sha256"]}
                )
            else:
                self.client.delete(self.latest_key)
        self.client.delete(obj)
        log.info("deleted checkpoint %s (%d bytes)", self.client.uri(obj), info.size)

    def load(self, key: str | None = None) -> dict[str, Any]:
        """Download, verify and deserialize checkpoint `key` (None = latest); check the config."""
        state = self.read(key)
        self.check_compatible(state, self.uri(state["_name"]))
        state.pop("_name")
        return state

    # -- reading and checking -----------------------------------------------------------------
    def read(self, key: str | None = None, *, check_keys: bool = True) -> dict[str, Any]:
        """Verified state of `key` (None = latest) plus `_name`; no config check."""
        expected_sha: str | None = None
        if key is None:
            pointer = self._pointer()
            if pointer is None:
                raise CheckpointError(
                    f"no checkpoint to resume: {self.client.uri(self.latest_key)} does not exist"
                )
            key, expected_sha = str(pointer["key"]), str(pointer.get("sha256") or "") or None
        obj = self.object_key(key)
        uri = self.client.uri(obj)
        try:
            info = self.client.head(obj)
        except StorageNotFound as exc:
            raise CheckpointError(f"checkpoint {uri} does not exist") from exc
        recorded = info.metadata.get(SHA256_META)
        if not recorded:
            raise CheckpointError(
                f"checkpoint {uri} has no sha256 metadata: not a harness checkpoint"
            )
        if expected_sha and expected_sha != recorded:
            raise CheckpointError(
                f"checkpoint {uri} was replaced: sha256 {recorded[:12]}… differs from "
                f"{expected_sha[:12]}… recorded in {self.latest_name}"
            )
        size = info.metadata.get("size")
        if size is not None and size.isdigit() and int(size) != info.size:
            raise CheckpointError(
                f"checkpoint {uri} is truncated: {info.size} bytes stored, {size} written"
            )
        data, actual = self.client.get_hashed(obj, info)
        if actual != recorded:
            raise CheckpointError(
                f"checkpoint {uri} is corrupted: sha256 {actual[:12]}… of {len(data)} bytes "
                f"!= recorded {recorded[:12]}…"
            )
        try:
            state = deserialize(data)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is the same problem
            raise CheckpointError(f"checkpoint {uri} cannot be deserialized: {exc}") from exc
        if not isinstance(state, dict):
            raise CheckpointError(f"checkpoint {uri} holds a {type(state).__name__}, not a dict")
        if check_keys:
            missing = [k for k in REQUIRED_KEYS if k not in state]
            if missing:
                raise CheckpointError(f"checkpoint {uri} is missing keys: {', '.join(missing)}")
        state["_name"] = obj[len(self.prefix) + 1 :]
        return state

    def check_compatible(self, state: Mapping[str, Any], uri: str) -> None:
        """Raise CheckpointError when the checkpoint's config groups differ from the current."""
        saved = _as_container(state.get("config"))
        if not self.expected:
            return
        if not isinstance(saved, Mapping):
            raise CheckpointError(f"checkpoint {uri} has no readable config to check against")
        diffs: list[str] = []
        for group, now in self.expected.items():
            diffs += _diff(saved.get(group, "<missing>"), now, group)
        if diffs:
            more = f" (+{len(diffs) - 3} more)" if len(diffs) > 3 else ""
            raise CheckpointError(
                f"checkpoint {uri} is incompatible with the current config: "
                + "; ".join(diffs[:3])
                + more
            )

    def describe(self, key: str | None = None) -> dict[str, Any]:
        """Metadata of `key` (None = latest) without downloading it: for `checkpoints show`."""
        if key is None:
            key = self.latest()
            if key is None:
                raise CheckpointError(
                    f"no checkpoints under s3://{self.client.bucket}/{self.prefix}/"
                )
        obj = self.object_key(key)
        try:
            info = self.client.head(obj)
        except StorageNotFound as exc:
            raise CheckpointError(f"checkpoint {self.client.uri(obj)} does not exist") from exc
        return {
            "key": obj[len(self.prefix) + 1 :],
            "uri": self.client.uri(obj),
            "size": info.size,
            "sha256": info.metadata.get(SHA256_META, ""),
            "epoch": info.metadata.get("epoch", ""),
            "global_step": info.metadata.get("global-step", ""),
            "format_version": info.metadata.get("format-version", ""),
            "last_modified": str(info.last_modified or ""),
            "latest": self.latest() == obj[len(self.prefix) + 1 :],
        }
