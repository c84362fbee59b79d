"""The deployment files' server settings, run for real with the same servers outside containers.

No Docker engine exists on the build machines, but the Triton release of the image (2.51 =
24.10) and nginx do: the compose file's Triton flags and the container's nginx config are run
here with them. With `--backend docker` the compose stack itself is started and probed.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from harness.config import compose
from harness.paths import resolve
from harness.services import LocalProcess
from harness.services import docker as dk
from harness.services import free_port, http_ok, wait_until

pytestmark = pytest.mark.integration

CFG = compose()
RAW = dk.load_compose(resolve(CFG.stack.compose_file))
CONTAINER_ROOT = "/usr/share/nginx/html"  # the nginx image's root, used by the `files` service

BROKEN_MODEL = """
name: "broken"
platform: "tensorrt_plan"
max_batch_size: 8
input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 4 ] } ]
instance_group [ { kind: KIND_GPU } ]
"""


def tritonserver() -> tuple[Path, dict[str, str]]:
    """The tritonserver binary of nvidia-pytriton and the environment it needs."""
    import pytriton  # a dependency of the project: an ImportError fails, never skips

    pkg = Path(pytriton.__file__).parent
    binary = pkg / "tritonserver" / "bin" / "tritonserver"
    libs = pkg.parent / "nvidia_pytriton.libs"
    if not binary.is_file():
        pytest.skip(f"no tritonserver binary at {binary}")
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (str(libs), env.get("LD_LIBRARY_PATH", "")) if p
    )
    env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
    return binary, env


def compose_triton_argv(repo: Path, ports: dict[int, int]) -> list[str]:
    """The triton service's command from docker-compose.yml, on this machine's paths/ports."""
    binary, _ = tritonserver()
    argv = [str(binary)]
    for arg in RAW["services"]["triton"]["command"][1:]:
        key, _, value = arg.partition("=")
        if key == "--model-repository":
            value = str(repo)
        elif key in ("--http-port", "--grpc-port", "--metrics-port"):
            value = str(ports[int(value)])
        argv.append(f"{key}={value}" if value else key)
    backends = binary.parent.parent / "backends"
    return [*argv, f"--backend-directory={backends}"]


def test_compose_triton_flags_keep_serving_when_a_model_fails(tmp_path: Path) -> None:
    """With the compose flags, a model that cannot load leaves the server ready (and says so)."""
    _, env = tritonserver()
    repo = tmp_path / "repo"
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "config.pbtxt").write_text(BROKEN_MODEL)
    ports = {p: free_port() for p in (8000, 8001, 8002)}
    base = f"http://127.0.0.1:{ports[8000]}"
    server = LocalProcess(
        "triton-compose-flags",
        compose_triton_argv(repo, ports),
        url=base,
        ready_check=lambda: http_ok(base + "/v2/health/ready"),
        log_path=tmp_path / "triton.log",
        env=env,
        startup_timeout=60,
    )
    with server:
        assert http_ok(base + "/v2/health/live")
        # The healthcheck URL of the compose file answers 200 ...
        assert http_ok(base + "/v2/health/ready")
        # ... while the failing model is reported unavailable, not silently absent.
        req = urllib.request.Request(base + "/v2/repository/index", data=b"{}", method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 (loopback)
            index = resp.read().decode()
        assert '"broken"' in index and "UNAVAILABLE" in index
        assert not http_ok(base + "/v2/models/broken/ready")


def test_without_those_flags_a_failing_model_stops_triton(tmp_path: Path) -> None:
    """The oracle for the test above: Triton's defaults exit on the same repository."""
    binary, env = tritonserver()
    repo = tmp_path / "repo"
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "config.pbtxt").write_text(BROKEN_MODEL)
    http = free_port()
    argv = [
        str(binary),
        f"--model-repository={repo}",
        f"--http-port={http}",
        f"--grpc-port={free_port()}",
        f"--metrics-port={free_port()}",
        "--allow-gpu-metrics=false",
        f"--backend-directory={binary.parent.parent / 'backends'}",
    ]
    server = LocalProcess(
        "triton-defaults",
        argv,
        url=f"http://127.0.0.1:{http}",
        ready_check=lambda: http_ok(f"http://127.0.0.1:{http}/v2/health/ready"),
        log_path=tmp_path / "triton.log",
        env=env,
        startup_timeout=60,
    )
    with pytest.raises(dk.ServiceError, match="exited with code"):
        server.start()
    server.stop()


def test_container_nginx_config_serves_the_pool_read_only(tmp_path: Path) -> None:
    """The `files` container's nginx config, run by this machine's nginx on a test pool."""
    nginx = "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    if nginx is None:
        pytest.skip("nginx is not installed (Debian nginx-light)")
    root = OmegaConf.select(CFG, "files.server.nginx.container_root", default=CONTAINER_ROOT)
    port = free_port()
    # A world-readable pool: without a `user` line the workers run as nobody, as in the image.
    # (pytest's own tmp dirs are 0700, so the pool lives in a fresh world-readable temp dir.)
    pool = Path(tempfile.mkdtemp(prefix="harness-pool-"))
    try:
        pool.chmod(0o755)
        (pool / "a").mkdir(mode=0o755)
        files = {"SHA256SUMS": "0  a/x.txt\n", "a/x.txt": "hello pool\n"}
        for rel, text in files.items():
            (pool / rel).write_text(text)
            (pool / rel).chmod(0o644)
        (tmp_path / "secret.txt").write_text("outside")
        text = resolve(CFG.stack.nginx_conf).read_text()
        container_port = int(RAW["services"]["files"]["ports"][0].rsplit(":", 1)[1])
        text = text.replace("/tmp/", f"{tmp_path}/").replace(f'"{root}"', f'"{pool}"')
        text = text.replace(f"listen {container_port} ", f"listen 127.0.0.1:{port} ")
        conf = tmp_path / "nginx.conf"
        conf.write_text(text)
        base = f"http://127.0.0.1:{port}"
        # The compose healthcheck probes /SHA256SUMS: the same URL decides readiness here.
        server = LocalProcess(
            "nginx-container-conf",
            [nginx, "-c", str(conf), "-p", f"{tmp_path}/"],
            url=base,
            ready_check=lambda: http_ok(base + "/SHA256SUMS"),
            log_path=tmp_path / "nginx.log",
            startup_timeout=20,
        )
        with server:
            with urllib.request.urlopen(base + "/a/x.txt", timeout=5) as resp:  # noqa: S310
                assert resp.read() == b"hello pool\n"
            assert http_ok(base + "/a/", expect=(403, 404))  # no listing
            assert http_ok(base + "/../secret.txt", expect=(400, 403, 404))
            req = urllib.request.Request(base + "/a/x.txt", data=b"x", method="PUT")
            try:
                urllib.request.urlopen(req, timeout=5)  # noqa: S310
                status = 200
            except urllib.error.HTTPError as exc:
                status = exc.code
            assert status in (403, 405)  # read-only
    finally:
        shutil.rmtree(pool, ignore_errors=True)


@pytest.fixture(scope="module")
def compose_stack(pytestconfig: pytest.Config):  # noqa: ANN201
    """The whole compose stack (`--backend docker` only), started with `harness stack up`."""
    if pytestconfig.getoption("--backend") != "docker":
        pytest.skip("the compose stack runs with --backend docker")
    problem = dk.engine_problem()
    if problem:
        pytest.skip(problem)
    from harness.commands.stack import stack_env

    stack = dk.ComposeStack(
        resolve(CFG.stack.compose_file), project=str(CFG.stack.project), env=stack_env(CFG)
    )
    running = {r.get("Service") for r in stack.ps() if r.get("State") == "running"}
    started = not {"triton", "minio", "mlflow", "files"} <= running
    if started:
        stack.up(
            wait_timeout=float(CFG.stack.up_timeout_s),
            pull_timeout=float(CFG.stack.pull_timeout_s),
        )
    yield stack
    if started:
        stack.down(volumes=True)


@pytest.mark.docker
@pytest.mark.parametrize(
    "service,port,path",
    [
        ("triton", 8000, "/v2/health/ready"),
        ("minio", 9000, "/minio/health/live"),
        ("mlflow", 5000, "/health"),
        ("files", 8080, "/SHA256SUMS"),
    ],
)
def test_compose_stack_answers(
    compose_stack, service: str, port: int, path: str
) -> None:  # noqa: ANN001
    """Every service of the running stack answers on its published port."""
    host_port = compose_stack.port(service, port)
    assert wait_until(lambda: http_ok(f"http://127.0.0.1:{host_port}{path}"), timeout=60)


@pytest.mark.docker
def test_compose_stack_created_the_bucket(compose_stack) -> None:  # noqa: ANN001
    """The one-shot minio-init job created the configured bucket."""
    from minio import Minio

    port = compose_stack.port("minio", 9000)
    client = Minio(
        f"127.0.0.1:{port}",
        access_key=os.environ.get("AWS_ACCESS_KEY_ID", "minioadmin"),
        secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "minioadmin"),
        secure=False,
    )
    bucket = compose_stack.env.get("HARNESS_S3_BUCKET", "harness")
    assert client.bucket_exists(bucket)
