"""Checkpoint state capture/restore, the serializer, and the store factory.

The stores themselves (local directory and S3, one implementation) are tested side by side in
test_checkpoint_stores.py.
"""

from __future__ import annotations

import hashlib
import io

import pytest
import torch

from harness.config import compose
from harness.errors import HarnessError
from harness.models.cnn import build_model
from harness.storage.checkpoint_format import (
    REQUIRED_KEYS,
    CheckpointError,
    CheckpointStore,
    deserialize,
    serialize,
)
from harness.storage.checkpoints import LocalCheckpointStore, make_store
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
    data, digest = serialize(state)
    assert digest == hashlib.sha256(data).hexdigest()
    state = deserialize(data)
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


def test_deserialize_rejects_garbage():
    with pytest.raises(CheckpointError, match="checkpoint x.ckpt cannot be deserialized: "):
        deserialize(b"not a checkpoint", "x.ckpt")
    buf = io.BytesIO()
    torch.save([1, 2], buf)
    with pytest.raises(CheckpointError, match="checkpoint x.ckpt holds a list, not a dict"):
        deserialize(buf.getvalue(), "x.ckpt")


def test_make_store_by_config(tmp_path):
    assert make_store(compose(["checkpoint.store=none"])) is None
    cfg = compose(["checkpoint.store=local", f"checkpoint.local_dir={tmp_path}"])
    store = make_store(cfg)
    assert isinstance(store, LocalCheckpointStore) and isinstance(store, CheckpointStore)
    assert store.dir == tmp_path and store.keep_last == cfg.checkpoint.keep_last
    assert store.suffix == cfg.checkpoint.suffix and store.latest_name == cfg.checkpoint.latest_name
    assert set(store.expected) == set(cfg.checkpoint.compatible_groups)
    assert not tmp_path.joinpath("latest").exists()  # building a store writes nothing
    with pytest.raises(HarnessError, match="unknown checkpoint.store"):
        make_store(compose(["checkpoint.store=ftp"]))
