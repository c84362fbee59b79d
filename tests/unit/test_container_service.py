"""The container lifecycle shared by every docker backend (Triton, S3, MLflow, file server).

No Docker engine runs here, so the engine is replaced by a stand-in whose "container" is a real
HTTP server on a free local port: start, health polling, URL, failure clean-up (log attached)
and stop are the base class's own code paths. What each backend would run (image, command,
ports, mounts) is checked on its ContainerSpec, built from docker-compose.yml without starting
anything. The docker integration tests run the real images where an engine is.
"""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest

from harness.config import compose
from harness.errors import HarnessError, ServiceError
from harness.paths import resolve
from harness.services import base
from harness.services import docker as dk
from harness.services.base import ContainerService, http_ok
from harness.services.fileserver import DockerFileServer, file_server
from harness.services.mlflow import DockerTrackingServer, tracking_service
from harness.services.s3 import DockerS3Service, make_s3_service
from harness.services.triton import DockerTriton, make_triton

CFG = compose()
NO_ENGINE = not base.docker_available()
LOG = b"I1202 starting\nE1202 model 'm' failed to load: bad file\nW1202 still waiting\n"


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200 if self.path in ("/health", "/v2/health/ready") else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class _StandInContainer:
    """A testcontainers-like object whose container is a local HTTP server."""

    image = "stand-in:1"
    exposed = {80: 0}  # container port -> offset from the server's port

    def __init__(self, fail_start: bool = False, exit_code: int | None = None) -> None:
        self.fail_start = fail_start
        self.server: http.server.HTTPServer | None = None
        self.stopped = False
        # Like docker's Container: status and attrs, refreshed by reload().
        self.status = "running" if exit_code is None else "exited"
        self.attrs = {"State": {"ExitCode": exit_code}}

    def start(self) -> _StandInContainer:
        if self.fail_start:
            raise RuntimeError("pull access denied for stand-in")
        self.server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def get_container_host_ip(self) -> str:
        return "127.0.0.1"

    def get_exposed_port(self, port: int) -> int:
        assert port in self.exposed
        assert self.server is not None
        return self.server.server_address[1] + self.exposed[port]

    def get_wrapped_container(self) -> _StandInContainer:
        return self

    def reload(self) -> None:
        pass

    def get_logs(self) -> tuple[bytes, bytes]:
        return LOG, b"E1202 fatal: stand-in gives up\n"

    def stop(self) -> None:
        self.stopped = True
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


class _Service(ContainerService):
    name = "stand-in"
    startup_timeout = 2.0

    def __init__(self, container: _StandInContainer, path: str = "/health") -> None:
        super().__init__()
        self.container, self.path, self.builds = container, path, 0

    def build(self) -> _StandInContainer:
        self.builds += 1
        return self.container

    def healthy(self, url: str) -> bool:
        return http_ok(url + self.path)


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "docker_available", lambda timeout=3.0: True)


def test_start_waits_until_healthy_and_stop_removes(engine: None) -> None:
    svc = _Service(_StandInContainer())
    assert not svc.ready()
    svc.start()
    svc.start()  # idempotent: one container
    assert svc.builds == 1 and svc.ready()
    assert http_ok(svc.url + "/health")
    svc.stop()
    svc.stop()
    assert svc.container.stopped and not svc.ready()
    with pytest.raises(ServiceError, match="stand-in is not started"):
        svc.url


def test_unhealthy_container_is_removed_with_a_one_line_error(engine: None) -> None:
    svc = _Service(_StandInContainer(), path="/never")
    with pytest.raises(ServiceError) as err:
        svc.start()
    assert "stand-in: stand-in:1 not healthy at http://127.0.0.1:" in str(err.value)
    # The container's error lines make the message, its whole log the detail.
    assert str(err.value).endswith(
        "after 2s: E1202 model 'm' failed to load: bad file; E1202 fatal: stand-in gives up"
    )
    assert "\n" not in str(err.value)
    assert err.value.detail is not None and "W1202 still waiting" in err.value.detail
    assert svc.container.stopped and not svc.ready()


def test_exited_container_stops_the_wait_and_says_so(engine: None) -> None:
    svc = _Service(_StandInContainer(exit_code=3), path="/never")
    svc.startup_timeout = 30.0  # the exit, not the timeout, must end the wait
    with pytest.raises(ServiceError, match=r"stand-in:1 exited with code 3: E1202 model") as err:
        svc.start()
    assert "I1202 starting" in (err.value.detail or "")
    assert svc.container.stopped


def test_container_that_cannot_start_names_the_image(engine: None) -> None:
    svc = _Service(_StandInContainer(fail_start=True))
    with pytest.raises(ServiceError, match="stand-in: cannot start stand-in:1: pull access denied"):
        svc.start()
    assert not svc.ready()


def test_no_engine_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "docker_available", lambda timeout=3.0: False)
    svc = _Service(_StandInContainer())
    with pytest.raises(ServiceError, match="stand-in: no Docker engine answers"):
        svc.start()
    assert svc.builds == 0


# ------------------------------------------------------- what each docker backend would run


def compose_service(name: str) -> dict:
    """The service as written in docker-compose.yml (before interpolation)."""
    return dk.load_compose(resolve(CFG.stack.compose_file))["services"][name]


def test_docker_triton_runs_the_compose_service_with_the_typed_flags(tmp_path: Path) -> None:
    """Image, ports, shm, ulimits and command from compose; repository bound; typed flags added."""
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "config.pbtxt").write_text('name: "m"')
    server = make_triton(CFG, "docker", tmp_path)
    assert isinstance(server, DockerTriton) and isinstance(server, ContainerService)
    spec = server.spec()
    assert spec.image == compose_service("triton")["image"]
    assert spec.ports == [8000, 8001, 8002] and server.port == 8000
    assert spec.binds == [(str(tmp_path.resolve()), "/models", "ro")]
    assert spec.shm_size == "1g" and ("memlock", -1, -1) in spec.ulimits
    compose_cmd = [str(a) for a in compose_service("triton")["command"]]
    assert spec.command[: len(compose_cmd)] == compose_cmd  # compose's placement first
    assert spec.command[len(compose_cmd) :] == [
        "--log-verbose=0",
        "--model-control-mode=explicit",
        "--load-model=m",
        "--http-thread-count=1",
    ]  # --allow-gpu-metrics=false: compose already says so
    only = make_triton(CFG, "docker", tmp_path, models=["other"]).spec()
    assert only.command[-2] == "--load-model=other"


class _TritonStandIn(_StandInContainer):
    exposed = {8000: 0, 8001: 1, 8002: 2}


class _StandInTriton(DockerTriton):
    """The real DockerTriton (start, port mapping, readiness) on the stand-in engine."""

    def build(self) -> _StandInContainer:
        self.built = _TritonStandIn()
        return self.built


def test_docker_triton_maps_its_three_ports(engine: None, tmp_path: Path) -> None:
    server = _StandInTriton(CFG, tmp_path, models=["m"])
    with server:
        http = server.built.server.server_address[1]
        assert server.url == f"http://127.0.0.1:{http}" and server.ready()
        assert server.grpc_url == f"127.0.0.1:{http + 1}"
        assert server.metrics_url == f"http://127.0.0.1:{http + 2}/metrics"
        assert server.models == ["m"] and "triton (docker) ready" in server.describe()[0]
        assert server.log_tail(1) == "E1202 fatal: stand-in gives up"
    assert server.built.stopped and not server.ready()


def test_docker_triton_refuses_a_flag_compose_contradicts(tmp_path: Path) -> None:
    cfg = compose(["triton.server.allow_gpu_metrics=true"])
    with pytest.raises(HarnessError, match="has --allow-gpu-metrics=false, triton.server renders"):
        make_triton(cfg, "docker", tmp_path, models=["m"]).spec()


def test_docker_s3_runs_compose_minio_with_generated_credentials() -> None:
    svc = make_s3_service(CFG, "docker")
    assert isinstance(svc, DockerS3Service)
    spec = svc.spec()
    assert spec.image == compose_service("minio")["image"]
    assert spec.command == ["server", "/data", "--address", ":9000", "--console-address", ":9001"]
    assert svc.port == 9000 and 9000 in spec.ports
    assert spec.tmpfs == ["/data"] and spec.binds == []  # data lives and dies with the container
    creds = svc.credentials
    assert creds is not None and creds.access_key_id.startswith("harness")
    assert spec.environment == {
        "MINIO_ROOT_USER": creds.access_key_id,
        "MINIO_ROOT_PASSWORD": creds.secret_access_key,
    }
    assert creds.access_key_id != "minioadmin"  # never compose's development default


def test_docker_mlflow_runs_the_compose_service() -> None:
    svc = tracking_service(CFG, "docker")
    assert isinstance(svc, DockerTrackingServer)
    spec = svc.spec()
    assert spec.image == compose_service("mlflow")["image"]
    assert spec.command == [str(a) for a in compose_service("mlflow")["command"]]
    assert "--workers=1" in spec.command and svc.port == 5000 and spec.ports == [5000]
    assert spec.environment == {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    assert spec.tmpfs == ["/mlflow"]


def test_docker_file_server_mounts_the_pool_and_the_rendered_config(tmp_path: Path) -> None:
    scfg = CFG.files.server
    svc = file_server("docker", tmp_path, scfg)
    assert isinstance(svc, DockerFileServer)
    spec = svc.spec()
    assert spec.image == compose_service("files")["image"]
    assert spec.command == ["nginx", "-c", "/etc/nginx/nginx.conf"]
    assert svc.port == scfg.nginx.container_port and spec.ports == [svc.port]
    assert sorted(spec.binds) == sorted(
        [
            (str(tmp_path.resolve()), scfg.nginx.container_root, "ro"),
            (str(svc.conf.resolve()), "/etc/nginx/nginx.conf", "ro"),
        ]
    )


def test_a_port_compose_does_not_publish_is_one_line() -> None:
    svc = make_s3_service(compose(["storage.docker.port=9100"]), "docker")
    with pytest.raises(ServiceError) as err:
        svc.spec()
    assert str(err.value) == (
        "compose service 'minio' does not publish container port 9100 (publishes: 9000, 9001)"
    )


def test_a_mount_compose_does_not_declare_is_one_line(tmp_path: Path) -> None:
    cfg = compose(["triton.docker.repository_mount=/repo"])
    with pytest.raises(ServiceError, match="compose service 'triton' mounts nothing at /repo"):
        make_triton(cfg, "docker", tmp_path, models=["m"]).spec()


@pytest.mark.skipif(not NO_ENGINE, reason="a Docker engine answers here")
@pytest.mark.parametrize("backend", ["triton", "s3", "mlflow", "files"])
def test_every_docker_backend_without_engine_is_one_line(backend: str, tmp_path: Path) -> None:
    """The real backends, no stand-in: no engine -> one ServiceError line, nothing left behind."""
    svc = {
        "triton": lambda: make_triton(CFG, "docker", tmp_path, models=["m"]),
        "s3": lambda: make_s3_service(CFG, "docker"),
        "mlflow": lambda: tracking_service(CFG, "docker"),
        "files": lambda: file_server("docker", tmp_path, CFG.files.server),
    }[backend]()
    with pytest.raises(ServiceError) as err:
        svc.start()
    assert str(err.value).endswith(": no Docker engine answers") and "\n" not in str(err.value)
    assert not svc.ready()
    svc.stop()  # always safe
