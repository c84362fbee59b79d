"""DVC round trip on the local S3 service, in a temporary copy of the repository.

push -> delete the local copies (and DVC's cache) -> pull -> same sha256 -> training runs on the
pulled data; a missing file is fetched through DVC's Python API. The worktree is never touched:
everything happens in a fresh git repository holding a copy of the working tree.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from harness.paths import ROOT

pytestmark = pytest.mark.integration


def _sha_tree(paths: list[Path]) -> dict[str, str]:
    out = {}
    for p in paths:
        files = sorted(p.rglob("*")) if p.is_dir() else [p]
        for f in files:
            if f.is_file():
                out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def _copy_repo(dst: Path) -> None:
    """The working tree as git sees it (tracked + untracked, minus ignored) in a new git repo."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        src = ROOT / name.decode()
        if src.is_file():
            (dst / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / name.decode())
    git = ["git", "-c", "user.email=test@example.invalid", "-c", "user.name=test"]
    subprocess.run(["git", "init", "-q"], cwd=dst, check=True)
    subprocess.run(["git", "add", "-A"], cwd=dst, check=True)
    subprocess.run([*git, "commit", "-qm", "copy"], cwd=dst, check=True)


def _run(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    full = {**os.environ, **env, "PYTHONPATH": str(repo), "DVC_NO_ANALYTICS": "1"}
    full.pop("HARNESS_ROOT", None)
    full.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=repo,
        env=full,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"{args}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_dvc_push_delete_pull_train(tmp_path, s3_env, s3_bucket, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    _copy_repo(repo)
    remote = [f"storage.bucket={s3_bucket}", f"storage.dvc.prefix=dvc-{uuid.uuid4().hex[:8]}"]

    from harness.config import compose
    from harness.data import dvc
    from harness.data.loader import prepare
    from harness.export.onnx import export_onnx
    from harness.models.cnn import build_model

    data = repo / "data" / "digits"
    onnx = repo / "model_repository" / "mnist-onnx" / "1" / "model.onnx"
    # in-process (same code as `harness data prepare` / `harness export`), to save start-ups
    cfg = compose([f"data.dir={data}"])
    prepare(cfg)
    export_onnx(cfg, build_model(cfg.model), path=str(onnx))  # a real exported model.onnx
    assert onnx.is_file() and len(list(data.iterdir())) >= 6
    before = _sha_tree([data, onnx])

    out = _run(repo, s3_env, "data", "push", *remote).stdout
    assert "pushed" in out
    dvcfiles = [repo / "data" / "digits.dvc", onnx.with_name("model.onnx.dvc")]
    assert all(f.is_file() for f in dvcfiles)

    # .dvc files are for git, the data is not
    def ignored(path: Path) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=repo).returncode == 0

    assert not any(ignored(f) for f in dvcfiles)
    assert ignored(data / "train-images-idx3-ubyte") and ignored(onnx)
    # the committed data/digits.dvc names exactly the data a clean machine prepares
    same = subprocess.run(["git", "diff", "--quiet", "--", "data/digits.dvc"], cwd=repo)
    assert same.returncode == 0, "data/digits.dvc changed: the prepared data is not reproducible"

    shutil.rmtree(data)
    onnx.unlink()
    shutil.rmtree(repo / ".dvc" / "cache", ignore_errors=True)
    _run(repo, s3_env, "data", "pull", *remote)
    assert _sha_tree([data, onnx]) == before

    proc = _run(
        repo,
        s3_env,
        "train",
        "train.epochs=1",
        "train.batch_size=128",
        "model.channels=4",
        "model.hidden=16",
        "train.progress=false",
        "logging.enabled=false",
        "checkpoint.store=none",
    )
    assert "test accuracy" in proc.stdout
    assert "building the digits data set" not in proc.stderr  # it trained on the pulled files
    assert _sha_tree([data]) == {k: v for k, v in before.items() if "/data/digits/" in k}

    # a missing file is fetched through DVC's Python API (what train/infer do)
    for k, v in s3_env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("HARNESS_ROOT", str(repo))
    victim = data / "t10k-labels-idx1-ubyte"
    victim.unlink()
    shutil.rmtree(repo / ".dvc" / "cache", ignore_errors=True)
    assert dvc.fetch_if_tracked(compose(remote), victim) is True
    assert _sha_tree([victim]) == {str(victim): before[str(victim)]}
