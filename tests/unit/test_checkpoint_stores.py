"""The one checkpoint store on both backends: a local directory and an S3 bucket (moto).

Every test runs on both; the same operations give the same names, results and messages (with the
location, `s3://bucket/prefix/` or the directory, as the only difference). Damage is done through
the backend's own put/get, so it is real bytes in real files and objects.
"""

from __future__ import annotations

import copy
import json
import re

import pytest
import torch
from omegaconf import OmegaConf

from harness.config import compose
from harness.storage.checkpoint_format import FORMAT_VERSION, CheckpointError, CheckpointStore
from harness.storage.checkpoints import LocalCheckpointStore, S3CheckpointStore, make_store
from harness.storage.local import META_SUFFIX
from harness.storage.s3 import StorageNotFound

BACKENDS = ["local", "s3"]
NAME = re.compile(r"^\d{8}T\d{12}Z-epoch\d{4}\.ckpt$")


@pytest.fixture(scope="module")
def base():
    """A small model config with keep_last=2 (composed once: Hydra is the slow part)."""
    small = ["model.channels=4", "model.blocks=2", "model.hidden=8"]
    return compose([*small, "checkpoint.keep_last=2"])


def _with(cfg, **dotted):
    out = copy.deepcopy(cfg)
    for key, value in dotted.items():
        OmegaConf.update(out, key.replace("__", "."), value, merge=False)
    return out


def _state(cfg, epoch: int) -> dict:
    """A checkpoint-shaped state, the same bytes for the same (config, epoch)."""
    gen = torch.Generator().manual_seed(epoch)
    return {
        "format_version": FORMAT_VERSION,
        "model": {"w": torch.rand(256, generator=gen), "b": torch.rand(8, generator=gen)},
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.001}]},
        "scheduler": {"last_epoch": epoch},
        "config": OmegaConf.to_container(cfg, resolve=True),
        "epoch": epoch,
        "global_step": 10 * epoch,
        "rng": {"torch": gen.get_state()},
    }


def _factory(kind: str, request, tmp_path):
    """cfg -> the store of `cfg` on backend `kind`, always at the same place."""
    if kind == "local":
        return lambda cfg: LocalCheckpointStore.from_config(
            _with(cfg, checkpoint__local_dir=str(tmp_path / "checkpoints"))
        )
    client = request.getfixturevalue("s3_client")
    prefix = f"{request.getfixturevalue('s3_prefix')}-{kind}/ckpt"
    return lambda cfg: S3CheckpointStore.from_config(
        _with(cfg, checkpoint__prefix=prefix), client=client
    )


@pytest.fixture(params=BACKENDS)
def build(request, tmp_path):
    """A store factory for the backend of this parametrisation."""
    return _factory(request.param, request, tmp_path)


def _norm(text: str, store) -> str:
    """A message with the location and the save times taken out (what differs by backend)."""
    text = text.replace(store.location, "<at>/")
    return re.sub(r"\d{8}T\d{12}Z-", "<t>-", text)


def _error(store, fn, *args) -> str:
    with pytest.raises(CheckpointError) as info:
        fn(*args)
    msg = str(info.value)
    assert "\n" not in msg
    return _norm(msg, store)


def _snapshot(store) -> dict[str, int]:
    """Every object under the store's location and its size (detects writes and deletes)."""
    head = store.latest_key[: -len(store.latest_name)]
    return {o.key: o.size for o in store.blobs.list_keys(head)}


def test_save_list_prune_latest_describe(build, base):
    store = build(base)
    assert isinstance(store, CheckpointStore)
    assert store.latest() is None and store.list() == []
    keys = [store.save(_state(base, e), e) for e in (1, 2, 3)]
    assert all(NAME.match(k) for k in keys) and keys == sorted(keys)
    assert [k.split("-", 1)[1] for k in keys] == [f"epoch000{e}.ckpt" for e in (1, 2, 3)]
    assert store.list() == keys[1:]  # keep_last=2 pruned the oldest
    assert store.latest() == keys[-1]
    assert store.load()["epoch"] == 3 and store.load(keys[1])["epoch"] == 2
    assert store.load(store.uri(keys[1]))["epoch"] == 2  # a full URI / path works too
    info = store.describe()
    assert info["key"] == keys[-1] and info["latest"] is True
    assert (info["epoch"], info["global_step"], info["format_version"]) == ("3", "30", "1")
    assert len(info["sha256"]) == 64 and info["uri"] == store.uri(keys[-1])
    assert store.describe(keys[1])["latest"] is False
    pointer = json.loads(store.blobs.get_bytes(store.latest_key))
    assert pointer["key"] == keys[-1] and pointer["sha256"] == info["sha256"]
    assert pointer["size"] == info["size"] and pointer["epoch"] == 3


def test_delete_repoints_latest_then_clears_it(build, base):
    store = build(base)
    keys = [store.save(_state(base, e), e) for e in (1, 2)]
    store.delete(keys[-1])
    assert store.latest() == keys[0] and store.list() == [keys[0]]
    pointer = json.loads(store.blobs.get_bytes(store.latest_key))
    assert pointer["epoch"] == 1 and pointer["global_step"] == 10
    assert store.load()["epoch"] == 1  # the repointed sha256 matches the object
    store.delete(keys[0])
    assert store.latest() is None and store.list() == []
    assert _error(store, store.load) == "no checkpoint to resume: <at>/latest does not exist"
    assert _error(store, store.describe) == "no checkpoints under <at>/"
    with pytest.raises(StorageNotFound, match=f"{re.escape(keys[0])}: not found"):
        store.delete(keys[0])


@pytest.mark.parametrize(
    "damage,expect",
    [
        ("flipped", r"is corrupted: sha256 [0-9a-f]{12}… of \d+ bytes != recorded [0-9a-f]{12}…$"),
        ("truncated", r"is truncated: \d+ bytes stored, \d+ written$"),
        ("no-metadata", r"has no sha256 metadata: not a harness checkpoint$"),
        ("replaced", r"was replaced: sha256 [0-9a-f]{12}… differs from [0-9a-f]{12}… .* latest$"),
    ],
)
def test_damaged_checkpoint_is_refused_and_nothing_changes(build, base, damage, expect):
    store = build(base)
    good = store.save(_state(base, 1), 1)
    bad = store.save(_state(base, 2), 2)
    obj = store.object_key(bad)
    data, meta = store.blobs.get_bytes(obj), store.blobs.head(obj).metadata
    if damage == "flipped":
        mid = len(data) // 2
        data = data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1 :]
    elif damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "no-metadata":
        meta = {}
    else:  # another valid checkpoint under this name: only the pointer's sha256 can tell
        other = store.object_key(good)
        data, meta = store.blobs.get_bytes(other), store.blobs.head(other).metadata
    store.blobs.put_bytes(obj, data, meta)
    before = _snapshot(store)
    msg = _error(store, store.load)
    assert re.match(rf"checkpoint <at>/<t>-epoch0002\.ckpt {expect}", msg), msg
    assert _snapshot(store) == before  # a failed load writes and deletes nothing
    assert store.latest() == bad
    assert store.load(good)["epoch"] == 1  # the older checkpoint is intact


def test_missing_keys_incompatible_config_and_unknown_names(build, base):
    store = build(base)
    state = _state(base, 1)
    del state["optimizer"], state["rng"]
    store.save(state, 1)
    msg = _error(store, store.load)
    assert msg == "checkpoint <at>/<t>-epoch0001.ckpt is missing keys: optimizer, rng"
    key = store.save(_state(base, 2), 2)
    wide = build(_with(base, model__channels=8))
    before = _snapshot(store)
    assert _error(wide, wide.load) == (
        "checkpoint <at>/<t>-epoch0002.ckpt is incompatible with the current config: "
        "model.channels=4 in the checkpoint, 8 now"
    )
    assert _snapshot(store) == before
    assert build(_with(base, checkpoint__compatible_groups=[])).load(key)["epoch"] == 2
    missing = "20990101T000000000000Z-epoch0009.ckpt"
    assert _error(store, store.load, missing) == "checkpoint <at>/<t>-epoch0009.ckpt does not exist"
    for bad in ("", "latest", "../x.ckpt", "a/b.ckpt", ".hidden.ckpt"):
        assert "not a checkpoint name under <at>/" in _error(store, store.load, bad)


def test_never_overwrites_and_a_bad_pointer_is_named(build, base, monkeypatch):
    store = build(base)
    first = store.save(_state(base, 1), 1)
    monkeypatch.setattr(store, "_new_name", lambda epoch: first)  # a clock that stood still
    before = _snapshot(store)
    assert _error(store, store.save, _state(base, 2), 2) == (
        "checkpoint <at>/<t>-epoch0001.ckpt already exists; `latest` still points to "
        f"{_norm(first, store)}"
    )
    assert _snapshot(store) == before and store.load()["epoch"] == 1
    store.blobs.put_bytes(store.latest_key, b"not json", {})
    assert _error(store, store.latest) == "checkpoint pointer <at>/latest is not JSON with a key"


def _transcript(build, cfg) -> list[str]:
    """One run of everything a store does, as text with the backend-specific parts taken out."""
    store = build(cfg)
    out = []
    keys = [store.save(_state(cfg, e), e) for e in (1, 2, 3)]
    out.append(f"saved {[_norm(k, store) for k in keys]}, kept {len(store.list())}")
    info = {k: v for k, v in store.describe().items() if k not in ("uri", "key", "last_modified")}
    out.append(f"latest {_norm(store.latest(), store)}: {json.dumps(info, sort_keys=True)}")
    out.append(f"load {store.load()['epoch']}")
    obj = store.object_key(keys[-1])
    store.blobs.put_bytes(obj, store.blobs.get_bytes(obj)[:-3], store.blobs.head(obj).metadata)
    out.append(_error(store, store.load))
    store.delete(keys[-1])
    out.append(f"after delete: latest {_norm(store.latest(), store)}, load {store.load()['epoch']}")
    wide = build(_with(cfg, model__channels=8))
    out.append(_error(wide, wide.load))
    for key in store.list():
        store.delete(key)
    out.append(_error(store, store.load))
    return out


def test_local_and_s3_give_the_same_transcript(request, tmp_path, base):
    local = _transcript(_factory("local", request, tmp_path), base)
    s3 = _transcript(_factory("s3", request, tmp_path), base)
    assert local == s3
    assert "is truncated" in local[3] and "incompatible" in local[5] and "no checkpoint" in local[6]


def test_local_layout_has_no_temporaries(tmp_path, base):
    """The directory holds the checkpoints, their metadata and `latest`; nothing half-written."""
    store = LocalCheckpointStore(tmp_path, keep_last=2)
    keys = [store.save(_state(base, e), e) for e in (1, 2, 3)]
    names = sorted(p.name for p in tmp_path.iterdir())
    kept = [*keys[1:], "latest"]
    want = sorted([*kept, *(k + META_SUFFIX for k in kept)])
    assert names == want
    meta = json.loads((tmp_path / (keys[-1] + META_SUFFIX)).read_text())
    assert meta["size"] == str((tmp_path / keys[-1]).stat().st_size) and meta["epoch"] == "3"


def test_make_store_s3(monkeypatch, s3_service, s3_bucket, s3_prefix, base):
    for key, value in s3_service.env().items():
        monkeypatch.setenv(key, value)
    cfg = _with(
        base,
        checkpoint__store="s3",
        checkpoint__prefix=f"{s3_prefix}/ckpt",
        storage__bucket=s3_bucket,
    )
    store = make_store(cfg)
    assert isinstance(store, S3CheckpointStore) and store.location == (
        f"s3://{s3_bucket}/{s3_prefix}/ckpt/"
    )
    key = store.save(_state(base, 1), 1)
    assert store.load(store.uri(key))["epoch"] == 1
