"""The container lifecycle shared by the docker backends (S3, MLflow, file server).

No Docker engine runs here, so the engine is replaced by a stand-in whose "container" is a real
HTTP server on a free local port: start, health polling, URL, failure clean-up and stop are the
base class's own code paths. The docker integration tests run the real images where an engine is.
"""

from __future__ import annotations

import http.server
import threading

import pytest

from harness.errors import ServiceError
from harness.services import base
from harness.services.base import ContainerService, http_ok


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class _StandInContainer:
    """A testcontainers-like object whose container is a local HTTP server."""

    image = "stand-in:1"

    def __init__(self, fail_start: bool = False) -> None:
        self.fail_start = fail_start
        self.server: http.server.HTTPServer | None = None
        self.stopped = False

    def start(self) -> _StandInContainer:
        if self.fail_start:
            raise RuntimeError("pull access denied for stand-in")
        self.server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def get_container_host_ip(self) -> str:
        return "127.0.0.1"

    def get_exposed_port(self, port: int) -> int:
        assert port == 80
        assert self.server is not None
        return self.server.server_address[1]

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
    assert "\n" not in str(err.value)
    assert svc.container.stopped and not svc.ready()


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
