"""S3 checkpoints against a real S3 server (moto or MinIO): integrity, faults, retries, CLI.

Faults are real: bytes are flipped in stored objects, connections are reset or cut by a TCP
proxy between client and server, and the server process itself is stopped (SIGSTOP).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import torch
from omegaconf import OmegaConf

from harness.config import compose
from harness.models.cnn import build_model
from harness.paths import ROOT
from harness.storage.checkpoints import CheckpointError, S3CheckpointStore
from harness.storage.faultproxy import FaultProxy
from harness.storage.s3 import (
    RetryPolicy,
    S3Client,
    StorageAuthError,
    StorageUnavailable,
)
from harness.urls import host_port
from tests.integration._cli import harness

pytestmark = pytest.mark.integration
MB = 1024 * 1024


def training_state(cfg, steps: int = 2, extra_mb: float = 0.0, seed: int = 0) -> dict:
    """A real training state (CNN, Adam with moments, cosine scheduler, RNG states)."""
    torch.manual_seed(seed)
    model = build_model(cfg.model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    for _ in range(steps):
        loss = model(torch.rand(4, 1, 28, 28)).logsumexp(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    import random

    import numpy as np

    state = {
        "format_version": 1,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "config": OmegaConf.to_container(cfg, resolve=True),
        "epoch": steps,
        "global_step": steps * 10,
        "rng": {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
        },
    }
    if extra_mb:
        state["model"]["padding"] = torch.rand(int(extra_mb * MB / 4))
    return state


def assert_same(a, b, path="state"):
    """Bit-identical nested states (tensors with torch.equal, the rest with ==)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), path
    elif isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif hasattr(a, "shape"):  # numpy arrays in the RNG state
        assert (a == b).all(), path
    else:
        assert a == b, path


@pytest.fixture
def cfg(s3_bucket, s3_prefix):
    """Config pointing the checkpoint store at a fresh prefix of the test bucket."""
    return compose(
        [
            f"storage.bucket={s3_bucket}",
            f"checkpoint.prefix={s3_prefix}/ckpt",
            "checkpoint.keep_last=2",
            "model.channels=4",
            "model.hidden=16",
            "++data.dir=data/digits",
        ]
    )


def make_store(cfg, client: S3Client) -> S3CheckpointStore:
    return S3CheckpointStore.from_config(cfg, client=client)


def snapshot(client: S3Client, prefix: str) -> dict[str, str]:
    """key -> ETag of every object under prefix (detects any overwrite)."""
    return {o.key: o.etag for o in client.list_keys(prefix)}


def reupload(client: S3Client, key: str, data: bytes, metadata: dict[str, str]) -> None:
    client.raw.put_object(Bucket=client.bucket, Key=key, Body=data, Metadata=metadata)


def test_service_and_bucket_idempotent(s3_service, s3_bucket):
    assert s3_service.ready()
    client = s3_service.client(s3_bucket)
    client.ensure_bucket()
    client.ensure_bucket()
    names = [b["Name"] for b in client.raw.list_buckets()["Buckets"]]
    assert names.count(s3_bucket) == 1


def test_save_load_bit_identical_latest_and_keep_last(cfg, s3_client):
    store = make_store(cfg, s3_client)
    states = [training_state(cfg, steps=i + 1) for i in range(3)]
    keys = [store.save(s, epoch=i + 1) for i, s in enumerate(states)]
    assert store.list() == keys[1:]  # keep_last=2 pruned the oldest
    assert store.latest() == keys[2]
    assert_same(store.load(), states[2])
    assert_same(store.load(keys[1]), states[1])
    info = store.describe()
    assert info["latest"] and info["epoch"] == "3" and len(info["sha256"]) == 64
    # the latest pointer names the object and its digest
    pointer = json.loads(s3_client.get_bytes(store.latest_key))
    assert pointer["key"] == keys[2] and pointer["sha256"] == info["sha256"]


def test_large_checkpoint_uses_multipart(cfg, s3_service, s3_bucket):
    client = S3Client(
        replace(s3_service.settings(s3_bucket), multipart_threshold=5 * MB, part_size=5 * MB)
    )
    store = make_store(cfg, client)
    state = training_state(cfg, extra_mb=12)
    key = store.save(state, epoch=1)
    etag = client.head(store.object_key(key)).etag.strip('"')
    assert etag.endswith("-3"), etag  # a multipart ETag: 3 parts of <= 5 MiB
    assert_same(store.load(key), state)


@pytest.mark.parametrize("damage", ["flipped", "truncated", "no-metadata"])
def test_damaged_object_clear_error_nothing_overwritten(cfg, s3_client, damage):
    store = make_store(cfg, s3_client)
    good = store.save(training_state(cfg, steps=1), epoch=1)
    bad = store.save(training_state(cfg, steps=2), epoch=2)
    obj = store.object_key(bad)
    data = s3_client.get_bytes(obj)
    meta = s3_client.head(obj).metadata
    if damage == "flipped":
        mid = len(data) // 2
        reupload(s3_client, obj, data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1 :], meta)
        expect = r"is corrupted: sha256"
    elif damage == "truncated":
        reupload(s3_client, obj, data[: len(data) // 2], meta)
        expect = r"is truncated"
    else:
        reupload(s3_client, obj, data, {})
        expect = r"has no sha256 metadata"
    before = snapshot(s3_client, store.prefix)
    with pytest.raises(CheckpointError, match=rf"checkpoint s3://\S+/{bad} {expect}"):
        store.load()
    assert snapshot(s3_client, store.prefix) == before  # nothing overwritten or deleted
    assert store.latest() == bad
    store.load(good)  # the older checkpoint is still intact


def test_missing_keys_clear_error(cfg, s3_client):
    store = make_store(cfg, s3_client)
    state = training_state(cfg)
    del state["optimizer"], state["rng"]
    key = store.save(state, epoch=1)
    with pytest.raises(CheckpointError, match=rf"{key} is missing keys: optimizer, rng"):
        store.load()


def test_incompatible_model_config_clear_error(cfg, s3_client):
    store = make_store(cfg, s3_client)
    key = store.save(training_state(cfg), epoch=1)
    other = compose([f"{k}={v}" for k, v in _overrides(cfg).items()] + ["model.channels=8"])
    store8 = make_store(other, s3_client)
    before = snapshot(s3_client, store.prefix)
    with pytest.raises(CheckpointError, match=rf"{key} is incompatible.*model.channels=4 .* 8 now"):
        store8.load()
    assert snapshot(s3_client, store.prefix) == before


def _overrides(cfg) -> dict[str, str]:
    return {
        "storage.bucket": cfg.storage.bucket,
        "checkpoint.prefix": cfg.checkpoint.prefix,
        "model.hidden": cfg.model.hidden,
        "++data.dir": cfg.data.dir,
    }


def _proxied_client(s3_service, bucket, proxy, **retry) -> S3Client:
    settings = replace(
        s3_service.settings(bucket),
        endpoint_url=proxy.url,
        connect_timeout=2.0,
        read_timeout=5.0,
        retry=RetryPolicy(**{"max_attempts": 4, "base_delay": 0.05, "max_delay": 0.2, **retry}),
        multipart_threshold=5 * MB,
        part_size=5 * MB,
        max_concurrency=2,
    )
    return S3Client(settings)


@pytest.fixture
def proxy(s3_service):
    host, port = s3_service.url.split("//")[1].split(":")
    with FaultProxy(host, int(port)) as p:
        yield p


def test_transient_connection_errors_are_retried(cfg, s3_service, s3_bucket, proxy):
    client = _proxied_client(s3_service, s3_bucket, proxy)
    store = make_store(cfg, client)
    state = training_state(cfg)
    proxy.drop_next(2)
    attempts0 = client.attempts
    key = store.save(state, epoch=1)
    assert proxy.dropped == 2
    assert client.attempts - attempts0 >= 2 + 1  # the failed tries were repeated
    assert_same(store.load(key), state)


def test_retries_are_bounded(cfg, s3_service, s3_bucket, proxy):
    client = _proxied_client(s3_service, s3_bucket, proxy, max_attempts=3)
    client.ensure_bucket()
    proxy.go_down()
    t0 = time.monotonic()
    with pytest.raises(StorageUnavailable, match="after 3 attempts"):
        client.put_bytes(f"{cfg.checkpoint.prefix}/x", b"abc", {})
    assert time.monotonic() - t0 < 10
    assert proxy.dropped == 3


def test_server_gone_mid_upload_latest_stays_previous(cfg, s3_service, s3_bucket, proxy):
    """The server vanishes halfway through a multipart upload: save fails, latest unchanged."""
    client = _proxied_client(s3_service, s3_bucket, proxy, max_attempts=2)
    store = make_store(cfg, client)
    prev_state = training_state(cfg, steps=1)
    prev = store.save(prev_state, epoch=1)
    proxy.cut_after(7 * MB)  # inside part 2 of the 12 MB upload
    with pytest.raises(
        CheckpointError, match=r"saving checkpoint .* failed; `latest` still points"
    ):
        store.save(training_state(cfg, steps=2, extra_mb=12), epoch=2)
    proxy.restore()  # the server is back
    assert store.latest() == prev
    assert store.list() == [prev]  # no half-written object became visible
    assert_same(store.load(), prev_state)
    store.save(training_state(cfg, steps=3), epoch=3)  # and saving works again


@pytest.mark.skipif(sys.platform != "linux", reason="SIGSTOP/SIGCONT of the server process")
def test_server_process_stopped_during_save(cfg, s3_service, s3_bucket, request):
    """The real server process is stopped (SIGSTOP) mid-upload: clear error, resume after."""
    if getattr(s3_service, "pid", None) is None:
        pytest.skip("needs the local S3 backend (a server process this test may stop)")
    host, port = host_port(s3_service.url)
    proxy = FaultProxy(host, port)
    request.addfinalizer(proxy.stop)
    client = S3Client(
        replace(
            s3_service.settings(s3_bucket),
            endpoint_url=proxy.url,
            read_timeout=1.0,
            connect_timeout=1.0,
            retry=RetryPolicy(max_attempts=2, base_delay=0.05, max_delay=0.1),
            multipart_threshold=5 * MB,
            part_size=5 * MB,
            max_concurrency=1,
        )
    )
    store = make_store(cfg, client)
    prev_state = training_state(cfg, steps=1)
    prev = store.save(prev_state, epoch=1)
    big = training_state(cfg, steps=2, extra_mb=20)
    stopped = []

    def stop_server() -> None:
        os.kill(s3_service.pid, signal.SIGSTOP)
        stopped.append(proxy.forwarded_up)

    # Counted bytes, not a polling thread: the server stops 7 MB into the 20 MB upload (its
    # second 5 MB part), every time.
    proxy.on_bytes(7 * MB, stop_server)
    try:
        with pytest.raises(CheckpointError, match="saving checkpoint .* failed; `latest` still"):
            store.save(big, epoch=2)
    finally:
        os.kill(s3_service.pid, signal.SIGCONT)
    assert stopped, "the upload never reached 7 MB"
    direct = make_store(cfg, s3_service.client(s3_bucket, ensure_bucket=False))
    assert direct.latest() == prev
    assert_same(direct.load(), prev_state)


def test_wrong_credentials_clear_auth_error(s3_service, s3_bucket):
    if not s3_service.authenticates:
        pytest.skip("the local S3 service runs with storage.local.authentication=false")
    from harness.storage.s3 import Credentials

    settings = replace(s3_service.settings(s3_bucket), credentials=Credentials("nobody", "wrong"))
    with pytest.raises(StorageAuthError, match="authentication failed"):
        S3Client(settings).head("anything")


def test_checkpoints_cli_list_show_delete(cfg, s3_client, s3_env):
    store = make_store(cfg, s3_client)
    keys = [store.save(training_state(cfg, steps=i + 1), epoch=i + 1) for i in range(2)]
    ov = [f"{k}={v}" for k, v in _overrides(cfg).items()]
    r = harness("checkpoints", "list", *ov, env={**s3_env, "DVC_NO_ANALYTICS": "1"}, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("2 checkpoint(s)")
    assert lines[1].startswith(keys[0]) and lines[2].startswith(keys[1])
    assert lines[2].endswith("<- latest")
    r = harness("checkpoints", "show", *ov, env={**s3_env, "DVC_NO_ANALYTICS": "1"}, timeout=120)
    assert r.returncode == 0 and f"key: {keys[1]}" in r.stdout and "epoch: 2" in r.stdout
    r = harness(
        "checkpoints", "delete", keys[1], *ov, env={**s3_env, "DVC_NO_ANALYTICS": "1"}, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert store.list() == [keys[0]] and store.latest() == keys[0]
    r = harness(
        "checkpoints", "delete", keys[1], *ov, env={**s3_env, "DVC_NO_ANALYTICS": "1"}, timeout=120
    )
    assert r.returncode != 0
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "not found" in err[0] and keys[1] in err[0]
    assert s3_env["AWS_SECRET_ACCESS_KEY"] not in r.stdout + r.stderr


def test_local_service_lifecycle_leaves_no_process(tmp_path):
    """start is idempotent, stop is safe twice and leaves no server process behind."""
    from harness.services.s3 import LocalS3Service

    cfg = compose([f"paths.work_dir={tmp_path}"])
    svc = LocalS3Service(cfg.storage, tmp_path)
    svc.start()
    pid, url = svc.pid, svc.url
    svc.start()
    assert svc.pid == pid and svc.ready()
    assert svc.client("lifecycle").list_keys("") == []
    env = svc.env()
    assert env["S3_ENDPOINT_URL"] == url and env["AWS_SECRET_ACCESS_KEY"]
    svc.stop()
    svc.stop()
    assert not svc.ready()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_checkpoints_serve_writes_private_env_and_stops(tmp_path):
    """`harness checkpoints serve` runs S3 until SIGTERM; the env file is 0600; nothing is left."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "checkpoints", "serve", f"paths.work_dir={tmp_path}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    env_file = tmp_path / "s3.env"
    try:
        deadline = time.monotonic() + 60
        while not env_file.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert env_file.exists(), proc.stdout.read() if proc.poll() is not None else "no env file"
        assert env_file.stat().st_mode & 0o077 == 0
        values = dict(
            line.removeprefix("export ").split("=", 1) for line in env_file.read_text().splitlines()
        )
        r = harness("checkpoints", "list", env={**values, "DVC_NO_ANALYTICS": "1"}, timeout=120)
        assert r.returncode == 0 and r.stdout.startswith("0 checkpoint(s)"), r.stderr
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert values["AWS_SECRET_ACCESS_KEY"] not in out  # the secret is never printed
    port = values["S3_ENDPOINT_URL"].rsplit(":", 1)[1]
    left = subprocess.run(["pgrep", "-f", f"moto.server .*-p {port}"], capture_output=True)
    assert left.returncode == 1, left.stdout
