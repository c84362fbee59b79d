"""Unit tests of the storage layer: settings, retry policy, error mapping, naming, DVC config.

No S3 server here; the one network test talks to a closed local port (connection refused).
"""

from __future__ import annotations

import copy
import logging
import time

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError
from omegaconf import OmegaConf

from harness.config import compose
from harness.errors import ServiceError
from harness.paths import ROOT
from harness.services import free_port
from harness.services.s3 import ExternalS3Service, LocalS3Service, make_s3_service
from harness.storage.checkpoints import CheckpointError, S3CheckpointStore, _diff
from harness.storage.s3 import (
    Credentials,
    RetryPolicy,
    S3Client,
    S3Settings,
    StorageError,
    StorageUnavailable,
    client_from_config,
    is_transient,
)


@pytest.fixture(scope="module")
def base():
    """The composed default config, once per module (Hydra composition is the slow part)."""
    return compose([])


def _with(cfg, **dotted):
    """A copy of `cfg` with dotted keys (a__b -> a.b) replaced."""
    out = copy.deepcopy(cfg)
    for key, value in dotted.items():
        OmegaConf.update(out, key.replace("__", "."), value, merge=False)
    return out


def _client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PutObject",
    )


def test_retry_policy_is_exponential_and_capped():
    p = RetryPolicy(max_attempts=6, base_delay=0.1, max_delay=0.5)
    assert [p.delay(n) for n in range(1, 6)] == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])


def test_transient_classification():
    assert is_transient(EndpointConnectionError(endpoint_url="http://x"))
    assert is_transient(ConnectionClosedError(endpoint_url="http://x"))
    assert is_transient(_client_error("SlowDown", 503))
    assert is_transient(_client_error("InternalError", 500))
    assert not is_transient(_client_error("AccessDenied", 403))
    assert not is_transient(_client_error("NoSuchKey", 404))
    assert not is_transient(ValueError("x"))


def test_settings_from_config_and_validation(monkeypatch, base):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")
    cfg = _with(
        base, storage__endpoint_url="http://127.0.0.1:9", storage__multipart__part_size_mb=8
    )
    s = S3Settings.from_config(cfg.storage)
    assert s.endpoint_url == "http://127.0.0.1:9"
    assert s.part_size == 8 * 1024 * 1024
    assert s.credentials.access_key_id == "AKIDEXAMPLE"
    assert "s3cr3t-value" not in repr(s) and "s3cr3t-value" not in repr(s.credentials)
    with pytest.raises(StorageError, match="part_size_mb"):
        S3Settings.from_config(_with(base, storage__multipart__part_size_mb=1).storage)
    with pytest.raises(StorageError, match="3 characters"):
        S3Settings.from_config(_with(base, storage__bucket="ab").storage)


def test_no_endpoint_is_a_clear_error(monkeypatch, base):
    monkeypatch.delenv("S3_ENDPOINT_URL", raising=False)
    with pytest.raises(StorageError, match="no S3 endpoint: set S3_ENDPOINT_URL"):
        client_from_config(base)


def test_unreachable_server_bounded_retries_no_secret_in_logs(caplog):
    """A refused connection is retried exactly max_attempts times with backoff, then fails."""
    port = free_port()  # nothing listens here
    creds = Credentials("AKIDEXAMPLE", "very-secret-value")
    settings = S3Settings(
        endpoint_url=f"http://127.0.0.1:{port}",
        bucket="harness",
        credentials=creds,
        connect_timeout=1.0,
        read_timeout=1.0,
        retry=RetryPolicy(max_attempts=3, base_delay=0.05, max_delay=0.1),
    )
    client = S3Client(settings)
    caplog.set_level(logging.DEBUG)
    t0 = time.monotonic()
    with pytest.raises(StorageUnavailable) as info:
        client.put_bytes("k", b"x", {})
    elapsed = time.monotonic() - t0
    assert client.attempts == 3
    assert elapsed >= 0.05 + 0.1 - 0.01  # both backoff sleeps happened
    msg = str(info.value)
    assert f"127.0.0.1:{port}" in msg and "after 3 attempts" in msg and "s3://harness/k" in msg
    assert "very-secret-value" not in caplog.text + msg
    ours = [r for r in caplog.records if r.name == "harness.storage.s3"]
    assert sum("retry" in r.getMessage() for r in ours) == 2


def test_checkpoint_names_are_normalised():
    class _C:
        bucket = "b"

        def uri(self, key):
            return f"s3://b/{key}"

    store = S3CheckpointStore(_C(), "checkpoints/m/", keep_last=2)
    name = "20260101T000000000000Z-epoch0001.ckpt"
    assert store.object_key(name) == f"checkpoints/m/{name}"
    assert store.object_key(f"checkpoints/m/{name}") == f"checkpoints/m/{name}"
    assert store.object_key(f"s3://b/checkpoints/m/{name}") == f"checkpoints/m/{name}"
    for bad in ("", "latest", "other/prefix/x.ckpt"):
        with pytest.raises(CheckpointError):
            store.object_key(bad)
    assert store._new_name(7).endswith("-epoch0007.ckpt")


def test_config_diff_names_the_changed_keys():
    old = {"channels": 8, "hidden": 128}
    new = {"channels": 16, "hidden": 128}
    assert _diff(old, new, "model") == ["model.channels=8 in the checkpoint, 16 now"]
    assert _diff(old, old, "model") == []


def test_incompatible_config_message(base):
    class _C:
        bucket = "b"

    cfg = _with(base, model__channels=16)
    store = S3CheckpointStore(_C(), "p", expected={"model": OmegaConf.to_container(cfg.model)})
    saved = OmegaConf.to_container(_with(base, model__channels=8), resolve=True)
    with pytest.raises(CheckpointError, match=r"s3://b/p/x .*incompatible.*model.channels=8"):
        store.check_compatible({"config": saved}, "s3://b/p/x")
    store.check_compatible({"config": OmegaConf.to_container(cfg, resolve=True)}, "s3://b/p/x")


def test_service_backend_choice(monkeypatch, tmp_path, base):
    monkeypatch.setenv("PATH", str(tmp_path))  # no minio binary on PATH
    cfg = _with(base, paths__work_dir=str(tmp_path))
    svc = make_s3_service(cfg, "local")
    assert isinstance(svc, LocalS3Service) and svc.kind == "moto"
    with pytest.raises(ServiceError, match="no `minio` binary"):
        make_s3_service(_with(base, storage__local__server="minio"), "local")
    monkeypatch.delenv("S3_ENDPOINT_URL", raising=False)
    with pytest.raises(ServiceError, match="S3_ENDPOINT_URL"):
        make_s3_service(cfg, "external")
    ext = make_s3_service(cfg, "external", "http://127.0.0.1:9/")
    assert isinstance(ext, ExternalS3Service) and ext.url == "http://127.0.0.1:9"
    with pytest.raises(ServiceError, match="expected local, docker or external"):
        make_s3_service(cfg, "ftp")


def test_dvc_project_is_configured(base):
    """.dvc/config is committed with the S3 default remote; no endpoint or secret in it."""
    text = (ROOT / ".dvc" / "config").read_text()
    cfg = base
    assert f"remote = {cfg.storage.dvc.remote}" in text
    assert f"url = s3://{cfg.storage.bucket}/{cfg.storage.dvc.prefix}" in text
    assert "endpointurl" not in text and "secret" not in text


def test_dvc_remote_config_from_env(monkeypatch, base):
    from harness.data import dvc

    monkeypatch.delenv("S3_ENDPOINT_URL", raising=False)
    assert dvc.remote_config(base) is None
    monkeypatch.setenv("S3_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    conf = dvc.remote_config(_with(base, storage__bucket="bkt"))
    assert conf["endpointurl"] == "http://127.0.0.1:9"
    assert conf["url"] == "s3://bkt/dvcstore" and conf["access_key_id"] == "AKIDEXAMPLE"


def test_fetch_if_tracked_untracked_path(tmp_path, base):
    from harness.data import dvc

    assert dvc.fetch_if_tracked(base, tmp_path / "nope") is False
    f = tmp_path / "here"
    f.write_text("x")
    assert dvc.fetch_if_tracked(base, f) is True


def test_serialize_hashes_while_writing():
    """The overlapped sha256 equals hashlib's over the final bytes; torch.load reads them back."""
    import hashlib
    import io

    import torch

    from harness.storage.checkpoint_format import serialize

    state = {"model": {"w": torch.arange(300000, dtype=torch.float32)}, "epoch": 3}
    data, digest = serialize(state)
    assert digest == hashlib.sha256(data).hexdigest()
    back = torch.load(io.BytesIO(data), weights_only=False)
    assert torch.equal(back["model"]["w"], state["model"]["w"]) and back["epoch"] == 3
    buf = io.BytesIO()
    torch.save(state, buf)
    assert len(buf.getvalue()) == len(data)  # the same format as a plain torch.save
