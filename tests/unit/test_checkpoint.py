"""Checkpoint state capture/restore and the local checkpoint store."""

from __future__ import annotations

import json

import pytest
import torch

from harness.config import compose
from harness.errors import HarnessError
from harness.models.cnn import build_model
from harness.storage.checkpoint_format import (
    REQUIRED_KEYS,
    CheckpointStore,
    deserialize,
    serialize,
)
from harness.training.checkpoint import LocalCheckpointStore, make_store
from harness.training.loop import make_optimizer, make_scheduler
from harness.training.state import capture_state, restore_state


def _setup(overrides=()):
    cfg = compose(["model.channels=4", "model.blocks=2", "model.hidden=8", *overrides])
    torch.manual_seed(0)
    model = build_model(cfg.model)
    opt = make_optimizer(cfg, model)
    sched = make_scheduler(cfg, opt)
    return cfg, model, opt, sched


def _step(model, opt, sched):
    model.train()
    loss = model(torch.rand(4, 1, 28, 28)).sum()
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()


def test_capture_restore_round_trip_through_bytes():
    cfg, model, opt, sched = _setup()
    _step(model, opt, sched)
    state = capture_state(model, opt, sched, epoch=3, global_step=17, cfg=cfg)
    assert set(REQUIRED_KEYS) <= set(state)
    state = deserialize(serialize(state))
    expected_next = torch.rand(3)  # the RNG continues from the captured point
    cfg2, model2, opt2, sched2 = _setup()
    assert restore_state(state, model2, opt2, sched2, cfg2) == (3, 17)
    assert torch.equal(torch.rand(3), expected_next)
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)
    assert sched2.last_epoch == sched.last_epoch
    # identical next step on both
    torch.manual_seed(5)
    _step(model, opt, sched)
    torch.manual_seed(5)
    _step(model2, opt2, sched2)
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)


def test_restore_rejects_incompatible_model_and_missing_keys():
    cfg, model, opt, sched = _setup()
    state = capture_state(model, opt, sched, 1, 1, cfg)
    cfg2, model2, opt2, sched2 = _setup(["model.channels=6"])
    with pytest.raises(HarnessError, match="incompatible.*model.channels"):
        restore_state(state, model2, opt2, sched2, cfg2)
    broken = dict(state)
    del broken["rng"]
    with pytest.raises(HarnessError, match="missing keys: rng"):
        restore_state(broken, model, opt, sched, cfg)


def test_local_store_save_list_prune_latest(tmp_path):
    store = LocalCheckpointStore(tmp_path, keep_last=2)
    assert isinstance(store, CheckpointStore)
    assert store.latest() is None and store.list() == []
    keys = [store.save({"epoch": e, "x": torch.tensor([e])}, e) for e in (1, 2, 3)]
    assert store.list() == keys[1:]  # pruned to keep_last, oldest first
    assert store.latest() == keys[-1]
    assert store.load()["epoch"] == 3 and store.load(keys[1])["epoch"] == 2
    store.delete(keys[-1])
    assert store.latest() == keys[1]


def test_local_store_detects_corruption_and_truncation(tmp_path):
    store = LocalCheckpointStore(tmp_path, keep_last=0)
    key = store.save({"epoch": 1, "w": torch.arange(100)}, 1)
    path = tmp_path / f"{key}.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(HarnessError, match=f"corrupted checkpoint .*{key}.pt"):
        store.load(key)
    path.write_bytes(bytes(data[:-5]))
    with pytest.raises(HarnessError, match="truncated checkpoint"):
        store.load(key)
    (tmp_path / f"{key}.pt.sha256").write_text(json.dumps({"nope": 1}))
    with pytest.raises(HarnessError, match="checksum file"):
        store.load(key)
    with pytest.raises(HarnessError, match="not found"):
        store.load("epoch-0099")


def test_deserialize_rejects_garbage():
    with pytest.raises(HarnessError, match="corrupted checkpoint"):
        deserialize(b"not a checkpoint")


def test_make_store_by_config(tmp_path):
    assert make_store(compose(["checkpoint.store=none"])) is None
    store = make_store(compose(["checkpoint.store=local", f"checkpoint.local_dir={tmp_path}"]))
    assert isinstance(store, LocalCheckpointStore) and store.dir == tmp_path
    with pytest.raises(HarnessError, match="unknown checkpoint.store"):
        make_store(compose(["checkpoint.store=ftp"]))
