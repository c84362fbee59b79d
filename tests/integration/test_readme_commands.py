"""The README's commands run here as written, but for the server addresses: `triton:8000`,
`mlserver:8080`, `files:8080`, `minio:9000` and `/srv/pool` are mapped onto servers this test
starts. The commands it does not run are listed with the reason in tests/readme.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.files.verify import MANIFEST
from harness.paths import ROOT
from harness.services.fileserver import LocalFileServer
from harness.serving.golden import load_golden
from harness.verify.inference import write_golden
from tests import readme

pytestmark = pytest.mark.integration

RUN = [c for c in readme.commands() if readme.not_run_reason(c) is None]
BUDGET_S = 180  # each command, on 2 shared cores


def _addr(url: str) -> str:
    return url.split("://", 1)[-1].rstrip("/")


@pytest.fixture(scope="module")
def stage(tmp_path_factory, oip_server, s3_service, files_cfg):
    """The folder the commands run in and the address map onto servers started here."""
    from harness.files.pool import PoolSpec, build_pool

    cwd = tmp_path_factory.mktemp("readme")
    g = load_golden()
    shutil.copyfile(g.model_path, cwd / "model.onnx")
    write_golden(cwd / "golden.npz", {"images": g.images}, {"logits": g.logits})
    (cwd / "model_repository").symlink_to(ROOT / "model_repository")
    pool = build_pool(cwd / "pool", PoolSpec(count=40, seed=3))
    shutil.copyfile(pool / MANIFEST, cwd / MANIFEST)
    s3_service.client("checkpoints")  # the README's bucket
    triton, mlserver = oip_server("triton"), oip_server("mlserver")
    with LocalFileServer(pool, files_cfg.files.server) as files:
        hosts = {
            "triton:8000": _addr(triton.url),
            "triton:8001": triton.grpc_url,
            "mlserver:8080": _addr(mlserver.url),
            "files:8080": _addr(files.url),
            "minio:9000": _addr(s3_service.url),
            "/srv/pool": str(pool),
        }
        env = {**os.environ, **s3_service.env()}
        env.pop("MLFLOW_TRACKING_URI", None)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        yield cwd, hosts, env


@pytest.mark.parametrize("command", RUN)
def test_readme_command_runs_as_written(command, stage):
    cwd, hosts, env = stage
    words = readme.argv(command, hosts)
    assert not any(h in " ".join(words) for h in ("triton:", "mlserver:", "files:", "minio:"))
    program = {"harness": [sys.executable, "-m", "harness"], "pytest": [sys.executable, "-m",
               "pytest", "-p", "no:cacheprovider"]}[words[0]]  # fmt: skip
    proc = subprocess.run(
        [*program, *words[1:]], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=BUDGET_S,
    )  # fmt: skip
    assert proc.returncode == 0, f"{command}\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}"
    for name in ("verify.md", "conformance.xml"):
        if name in words:
            assert (Path(cwd) / name).stat().st_size > 0
