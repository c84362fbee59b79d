"""Training checkpoints: one store, one key scheme, one integrity scheme, two blob backends.

The store keeps checkpoints under a prefix of a blob backend (an S3 bucket through S3Client, or
a local directory through LocalBlobs); both backends get the same names, checks and messages:

    <prefix>/20261122T003012345678Z-epoch0002.ckpt   the serialized state, one object per save
                                                      metadata: sha256, size, epoch, global-step,
                                                      format-version
    <prefix>/latest                                   JSON {"key", "sha256", "size", "epoch", ...}

A save writes in this order: read `latest` (to name it if anything fails), check the name is
free (never overwrite), upload the checkpoint object completely (multipart when large), and
only then rewrite `latest`; then prune to keep_last. A crash or a lost server mid-upload leaves
the previous checkpoint as `latest`. Loads verify size and sha256 against the object's metadata
(and the pointer) before anything is deserialized, then check the required keys and that the
configured config groups match.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from omegaconf import DictConfig, OmegaConf

from harness.errors import HarnessError
from harness.paths import resolve
from harness.storage.checkpoint_format import (
    CheckpointError,
    CheckpointStore,
    deserialize,
    missing_keys,
    serialize,
)
from harness.storage.local import LocalBlobs
from harness.storage.s3 import (
    SHA256_META,
    ObjectInfo,
    S3Client,
    StorageError,
    StorageNotFound,
    client_from_config,
)

__all__ = [
    "Blobs",
    "CheckpointError",
    "CheckpointStore",
    "Checkpoints",
    "LocalCheckpointStore",
    "S3CheckpointStore",
    "make_store",
]

log = logging.getLogger(__name__)


class Blobs(Protocol):
    """What the store needs of a backend; S3Client and LocalBlobs both provide it."""

    def uri(self, key: str) -> str:
        """Where `key` is, for messages (s3://bucket/key, or a path)."""

    def put_bytes(self, key: str, data: bytes | memoryview, metadata: Mapping[str, str]) -> None:
        """Store `data` under `key` with `metadata`, all or nothing."""

    def head(self, key: str) -> ObjectInfo:
        """Size and metadata of `key`; StorageNotFound when it does not exist."""

    def get_bytes(self, key: str, info: ObjectInfo | None = None) -> bytes:
        """The bytes of `key`."""

    def get_hashed(self, key: str, info: ObjectInfo | None = None) -> tuple[bytes, str]:
        """The bytes of `key` and their sha256."""

    def list_keys(self, prefix: str) -> list[ObjectInfo]:
        """Objects under `prefix`."""

    def delete(self, key: str) -> None:
        """Delete `key` (gone already is fine)."""


class Verified(NamedTuple):
    """A checkpoint read and verified: its name, where it is, and the state."""

    name: str
    uri: str
    state: dict[str, Any]


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


def expected_groups(cfg: DictConfig) -> dict[str, Any]:
    """The config groups of checkpoint.compatible_groups, resolved, that a checkpoint must match."""
    groups: Sequence[str] = cfg.checkpoint.get("compatible_groups", ["model"]) or []
    return {g: _as_container(cfg[g]) for g in groups if g in cfg}


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


class Checkpoints:
    """The CheckpointStore protocol on one prefix of a blob backend (see the module docstring)."""

    def __init__(
        self,
        blobs: Blobs,
        prefix: str,
        *,
        keep_last: int = 3,
        suffix: str = ".ckpt",
        latest_name: str = "latest",
        expected: Mapping[str, Any] | None = None,
    ) -> None:
        self.blobs = blobs
        self.prefix = prefix.strip("/")
        self.keep_last = int(keep_last)
        self.suffix = suffix
        self.latest_name = latest_name
        # Config groups (name -> resolved dict) a checkpoint must match to be loaded.
        self.expected = dict(expected or {})

    # -- names --------------------------------------------------------------------------------
    def _obj(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    @property
    def location(self) -> str:
        """Where the checkpoints are: s3://bucket/prefix/ or a directory, with a trailing /."""
        return self.blobs.uri(self._obj(""))

    def object_key(self, key: str) -> str:
        """Full object key of checkpoint `key` (accepts a bare name, a full key or a URI/path)."""
        key = key.strip()
        root = self.blobs.uri("")
        if key.startswith(root):
            key = key[len(root) :]
        if self.prefix and key.startswith(self.prefix + "/"):
            key = key[len(self.prefix) + 1 :]
        if not key or "/" in key or key.startswith(".") or key == self.latest_name:
            raise CheckpointError(f"not a checkpoint name under {self.location}: {key!r}")
        return self._obj(key)

    def uri(self, key: str) -> str:
        """s3:// URI (or path) of checkpoint `key`."""
        return self.blobs.uri(self.object_key(key))

    @property
    def latest_key(self) -> str:
        """Object key of the `latest` pointer."""
        return self._obj(self.latest_name)

    def _new_name(self, epoch: int) -> str:
        return f"{_now().strftime('%Y%m%dT%H%M%S%fZ')}-epoch{int(epoch):04d}{self.suffix}"

    # -- protocol -----------------------------------------------------------------------------
    def save(self, state: Mapping[str, Any], epoch: int) -> str:
        """Write `state` as a new object, then point `latest` at it, then prune to keep_last."""
        data, digest = serialize(state)
        name = self._new_name(epoch)
        obj = self._obj(name)
        uri = self.blobs.uri(obj)
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
                self.blobs.head(obj)
            except StorageNotFound:
                pass
            else:  # never overwrite an existing checkpoint
                raise CheckpointError(
                    f"checkpoint {uri} already exists; `latest` still points to "
                    f"{previous or 'nothing'}"
                )
            self.blobs.put_bytes(obj, data, meta)
        except CheckpointError:
            raise
        except StorageError as exc:
            where = (
                "was not changed" if previous == "?" else f"still points to {previous or 'nothing'}"
            )
            raise CheckpointError(
                f"saving checkpoint {uri} failed; `latest` {where}: {exc}"
            ) from exc
        # Only now, with the object complete, does `latest` move.
        try:
            self._write_pointer(name, digest, len(data), int(epoch), state.get("global_step", -1))
        except StorageError as exc:
            raise CheckpointError(
                f"checkpoint {uri} written but updating {self.blobs.uri(self.latest_key)} failed "
                f"(it still names {previous or 'nothing'}): {exc}"
            ) from exc
        log.info("checkpoint saved: %s (%d bytes)", uri, len(data))
        self._prune(keep=name)
        return name

    def _write_pointer(self, name: str, digest: str, size: int, epoch: int, step: Any) -> None:
        pointer = {
            "key": name,
            "sha256": digest,
            "size": int(size),
            "epoch": int(epoch),
            "global_step": int(step),
            "saved_at": _now().isoformat(),
        }
        self.blobs.put_bytes(self.latest_key, json.dumps(pointer).encode(), {SHA256_META: digest})

    def _prune(self, keep: str) -> None:
        if self.keep_last <= 0:
            return
        names = self.list()
        for old in names[: max(0, len(names) - self.keep_last)]:
            if old != keep:
                try:
                    self.blobs.delete(self._obj(old))
                except StorageError as exc:  # pruning is housekeeping: the save itself succeeded
                    log.warning("could not delete old checkpoint %s: %s", old, exc)

    def _pointer(self) -> dict[str, Any] | None:
        try:
            raw = self.blobs.get_bytes(self.latest_key)
        except StorageNotFound:
            return None
        try:
            pointer = json.loads(raw)
            str(pointer["key"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(
                f"checkpoint pointer {self.blobs.uri(self.latest_key)} is not JSON with a key"
            ) from exc
        return pointer

    def latest(self) -> str | None:
        """Name of the newest complete checkpoint, or None when there is none."""
        pointer = self._pointer()
        return None if pointer is None else str(pointer["key"])

    def list(self) -> list[str]:
        """Checkpoint names under the prefix, oldest to newest."""
        head = self._obj("")
        names = [o.key[len(head) :] for o in self.blobs.list_keys(head)]
        return sorted(n for n in names if n.endswith(self.suffix) and "/" not in n)

    def delete(self, key: str) -> None:
        """Delete checkpoint `key`; if it is `latest`, repoint `latest` to the newest left first."""
        obj = self.object_key(key)
        name = obj[len(self._obj("")) :]
        info = self.blobs.head(obj)  # StorageNotFound names the object
        pointer = self._pointer()
        if pointer is not None and pointer["key"] == name:
            rest = [n for n in self.list() if n != name]
            if rest:
                prev = self.blobs.head(self._obj(rest[-1]))
                self._write_pointer(
                    rest[-1],
                    prev.metadata.get(SHA256_META, ""),
                    prev.size,
                    int(prev.metadata.get("epoch", -1)),
                    int(prev.metadata.get("global-step", -1)),
                )
            else:
                self.blobs.delete(self.latest_key)
        self.blobs.delete(obj)
        log.info("deleted checkpoint %s (%d bytes)", self.blobs.uri(obj), info.size)

    def load(self, key: str | None = None) -> dict[str, Any]:
        """Read, verify and deserialize checkpoint `key` (None = latest); check the config."""
        found = self.read(key)
        self.check_compatible(found.state, found.uri)
        return found.state

    # -- reading and checking -----------------------------------------------------------------
    def read(self, key: str | None = None, *, check_keys: bool = True) -> Verified:
        """The verified checkpoint `key` (None = latest): name, URI and state; no config check."""
        expected_sha: str | None = None
        if key is None:
            pointer = self._pointer()
            if pointer is None:
                raise CheckpointError(
                    f"no checkpoint to resume: {self.blobs.uri(self.latest_key)} does not exist"
                )
            key, expected_sha = str(pointer["key"]), str(pointer.get("sha256") or "") or None
        obj = self.object_key(key)
        uri = self.blobs.uri(obj)
        try:
            info = self.blobs.head(obj)
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
        data, actual = self.blobs.get_hashed(obj, info)
        if actual != recorded:
            raise CheckpointError(
                f"checkpoint {uri} is corrupted: sha256 {actual[:12]}… of {len(data)} bytes "
                f"!= recorded {recorded[:12]}…"
            )
        state = deserialize(data, uri)
        if check_keys:
            missing = missing_keys(state)
            if missing:
                raise CheckpointError(f"checkpoint {uri} is missing keys: {', '.join(missing)}")
        return Verified(obj[len(self._obj("")) :], uri, state)

    def check_compatible(self, state: Mapping[str, Any], uri: str) -> None:
        """Raise CheckpointError when the checkpoint's config groups differ from the current."""
        if not self.expected:
            return
        saved = _as_container(state.get("config"))
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
        """Metadata of `key` (None = latest) without reading it: for `checkpoints show`."""
        if key is None:
            key = self.latest()
            if key is None:
                raise CheckpointError(f"no checkpoints under {self.location}")
        obj = self.object_key(key)
        try:
            info = self.blobs.head(obj)
        except StorageNotFound as exc:
            raise CheckpointError(f"checkpoint {self.blobs.uri(obj)} does not exist") from exc
        name = obj[len(self._obj("")) :]
        return {
            "key": name,
            "uri": self.blobs.uri(obj),
            "size": info.size,
            "sha256": info.metadata.get(SHA256_META, ""),
            "epoch": info.metadata.get("epoch", ""),
            "global_step": info.metadata.get("global-step", ""),
            "format_version": info.metadata.get("format-version", ""),
            "last_modified": str(info.last_modified or ""),
            "latest": self.latest() == name,
        }


def _scheme(cfg: DictConfig) -> dict[str, Any]:
    """The store settings both backends take from the `checkpoint` group."""
    ck = cfg.checkpoint
    return {
        "keep_last": int(ck.keep_last),
        "suffix": str(ck.suffix),
        "latest_name": str(ck.latest_name),
        "expected": expected_groups(cfg),
    }


class S3CheckpointStore(Checkpoints):
    """Checkpoints under one prefix of an S3 bucket."""

    def __init__(self, client: S3Client, prefix: str, **options: Any) -> None:
        super().__init__(client, prefix, **options)
        self.client = client

    @classmethod
    def from_config(cls, cfg: DictConfig, client: S3Client | None = None) -> S3CheckpointStore:
        """The store for `cfg.checkpoint` on the bucket of `cfg.storage` (created if missing)."""
        client = client or client_from_config(cfg)
        client.ensure_bucket()
        return cls(client, str(cfg.checkpoint.prefix), **_scheme(cfg))


class LocalCheckpointStore(Checkpoints):
    """Checkpoints as files in one directory (the same names, pointer and checks as in S3)."""

    def __init__(self, directory: str | os.PathLike[str], **options: Any) -> None:
        blobs = LocalBlobs(directory)
        super().__init__(blobs, "", **options)
        self.dir = blobs.root

    @classmethod
    def from_config(cls, cfg: DictConfig) -> LocalCheckpointStore:
        """The store for `cfg.checkpoint` in checkpoint.local_dir."""
        return cls(resolve(str(cfg.checkpoint.local_dir)), **_scheme(cfg))


def make_store(cfg: DictConfig) -> CheckpointStore | None:
    """The store chosen by checkpoint.store: none | local | s3."""
    kind = str(cfg.checkpoint.store).lower()
    if kind in ("none", "null", "false", ""):
        return None
    if kind == "local":
        return LocalCheckpointStore.from_config(cfg)
    if kind == "s3":
        return S3CheckpointStore.from_config(cfg)
    raise HarnessError(f"unknown checkpoint.store '{cfg.checkpoint.store}' (none, local, s3)")
