"""`harness train` with checkpoints in S3, in new processes: exact resume and bad checkpoints."""

from __future__ import annotations

import io
import uuid
from dataclasses import replace

import pytest
import torch

from harness.config import compose
from harness.models.cnn import build_model
from harness.storage.checkpoints import CheckpointError, S3CheckpointStore
from harness.storage.faultproxy import FaultProxy
from harness.storage.s3 import RetryPolicy, S3Client
from harness.testing.states import assert_bit_identical
from harness.training.loop import make_optimizer, make_scheduler
from harness.training.state import capture_state
from harness.urls import host_port
from tests.integration._cli import harness, ok

pytestmark = pytest.mark.integration

SMALL = [
    "train.epochs=2",
    "train.batch_size=128",
    "model.channels=4",
    "model.hidden=32",
    "train.progress=false",
    "logging.enabled=false",
    "checkpoint.store=s3",
    "checkpoint.every_n_epochs=1",
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """The digits IDX files, prepared once for this module."""
    from harness.data.loader import prepare

    d = tmp_path_factory.mktemp("digits")
    prepare(compose([f"data.dir={d}"]))  # what `harness data prepare` runs
    return d


def _args(tmp_path, data_dir, bucket, prefix, name):
    return [
        *SMALL,
        f"data.dir={data_dir}",
        f"storage.bucket={bucket}",
        f"checkpoint.prefix={prefix}/{name}",
        f"paths.artifacts_dir={tmp_path}/{name}",
        f"paths.work_dir={tmp_path}/w",
    ]


def _store(s3_service, bucket, prefix, name, overrides=()):
    cfg = compose(
        [f"storage.bucket={bucket}", f"checkpoint.prefix={prefix}/{name}", *SMALL, *overrides]
    )
    return S3CheckpointStore.from_config(cfg, client=s3_service.client(bucket, ensure_bucket=False))


def test_s3_resume_in_new_process_is_bit_exact(tmp_path, data_dir, s3_service, s3_bucket, s3_env):
    """2 epochs straight == 1 epoch, process ends, `resume=true` 1 epoch in a new process."""
    prefix = f"e2e-{uuid.uuid4().hex[:8]}"
    straight = _args(tmp_path, data_dir, s3_bucket, prefix, "straight")
    resumed = _args(tmp_path, data_dir, s3_bucket, prefix, "resumed")
    ok(harness("train", *straight, env=s3_env))
    proc = ok(harness("train", *resumed, "train.stop_after_epoch=1", env=s3_env))
    assert "stopped after epoch 1" in proc.stdout
    rs = _store(s3_service, s3_bucket, prefix, "resumed")
    assert len(rs.list()) == 1 and rs.list()[0].endswith("-epoch0001.ckpt")
    ok(harness("train", *resumed, "resume=true", env=s3_env))

    st = _store(s3_service, s3_bucket, prefix, "straight")
    assert [k[-9:] for k in st.list()] == [k[-9:] for k in rs.list()] == ["0001.ckpt", "0002.ckpt"]
    a, b = st.load(), rs.load()
    assert a["epoch"] == b["epoch"] == 2 and a["global_step"] == b["global_step"]
    assert_bit_identical(a["model"], b["model"])
    assert_bit_identical(a["optimizer"], b["optimizer"])
    assert a["scheduler"] == b["scheduler"]
    assert_bit_identical(a["rng"]["torch"], b["rng"]["torch"])
    first = st.load(st.list()[0])["model"]
    assert any(not torch.equal(first[k], a["model"][k]) for k in first)  # epoch 2 did change them
    ma = torch.load(tmp_path / "straight" / "model.pt", weights_only=True)["model"]
    mb = torch.load(tmp_path / "resumed" / "model.pt", weights_only=True)["model"]
    assert_bit_identical(ma, mb)


def test_resume_from_bad_checkpoint_fails_cleanly(
    tmp_path, data_dir, s3_service, s3_bucket, s3_env
):
    """Corrupted latest / incompatible model: one line naming the object, nothing overwritten."""
    prefix = f"bad-{uuid.uuid4().hex[:8]}"
    args = _args(tmp_path, data_dir, s3_bucket, prefix, "run")
    # a checkpoint after one epoch, as `harness train` writes it (same capture_state)
    cfg = compose([*args])
    model = build_model(cfg.model)
    optimizer = make_optimizer(cfg, model)
    state = capture_state(model, optimizer, make_scheduler(cfg, optimizer), 1, 12, cfg)
    store = _store(s3_service, s3_bucket, prefix, "run")
    key = store.save(state, epoch=1)
    client = store.client

    def snapshot():
        return {o.key: o.etag for o in client.list_keys(store.prefix + "/")}

    # a model config that does not match the checkpoint
    before = snapshot()
    proc = harness("train", *args, "resume=true", "model.channels=8", env=s3_env)
    assert proc.returncode != 0
    err = proc.stderr.strip().splitlines()[-1]
    assert err.startswith("harness: error:") and key in err and "model.channels=4" in err
    assert snapshot() == before and not (tmp_path / "run" / "model.pt").exists()

    # flipped bytes in the stored object
    obj = store.object_key(key)
    data = bytearray(client.get_bytes(obj))
    data[len(data) // 3] ^= 0x01
    client.raw.put_object(
        Bucket=client.bucket, Key=obj, Body=bytes(data), Metadata=client.head(obj).metadata
    )
    before = snapshot()
    proc = harness("train", *args, "resume=true", env=s3_env)
    assert proc.returncode != 0
    err = proc.stderr.strip().splitlines()[-1]
    assert f"s3://{s3_bucket}/{obj} is corrupted" in err
    assert snapshot() == before and not (tmp_path / "run" / "model.pt").exists()


def test_upload_cut_mid_checkpoint_then_resume(tmp_path, data_dir, s3_service, s3_bucket, s3_env):
    """The connection to S3 is cut after exactly N bytes of the next checkpoint's upload (a
    fault proxy counting bytes, no race with the clock): clear error, `latest` unchanged; then
    `harness train resume=true` continues from the previous checkpoint."""
    prefix = f"cut-{uuid.uuid4().hex[:8]}"
    args = _args(tmp_path, data_dir, s3_bucket, prefix, "run")
    cfg = compose([*args])
    model = build_model(cfg.model)
    optimizer = make_optimizer(cfg, model)
    scheduler = make_scheduler(cfg, optimizer)
    host, port = host_port(s3_service.url)
    with FaultProxy(host, port) as proxy:
        client = S3Client(
            replace(
                s3_service.settings(s3_bucket),
                endpoint_url=proxy.url,
                connect_timeout=1.0,
                read_timeout=1.0,
                retry=RetryPolicy(max_attempts=2, base_delay=0.05, max_delay=0.1),
            )
        )
        store = S3CheckpointStore.from_config(cfg, client=client)
        prev = store.save(capture_state(model, optimizer, scheduler, 1, 12, cfg), epoch=1)
        state = capture_state(model, optimizer, scheduler, 2, 24, cfg)
        buf = io.BytesIO()
        torch.save(state, buf)
        size = buf.getbuffer().nbytes
        cut = size // 2  # well past the request line and headers, well inside the body
        before = proxy.forwarded_up
        proxy.cut_after(cut)
        with pytest.raises(CheckpointError, match=r"saving checkpoint s3://\S+ failed; `latest`"):
            store.save(state, epoch=2)
        assert proxy.forwarded_up - before == cut  # the upload was reached and cut mid-body
        proxy.restore()
    # the server itself was never touched: read it directly
    store = S3CheckpointStore.from_config(cfg, client=s3_service.client(s3_bucket))
    assert store.latest() == prev and store.list() == [prev]
    proc = ok(harness("train", *args, "resume=true", env=s3_env))
    assert "test accuracy" in proc.stdout
    names = store.list()
    assert (
        names[0] == prev and names[-1].endswith("-epoch0002.ckpt") and store.latest() == names[-1]
    )
    assert store.load()["epoch"] == 2
