"""FileServer: a read-only pool over HTTP with the common start/ready/url/stop shape.

Backends: local (nginx when installed, else the uvicorn/Starlette fallback; both a LocalProcess
on a free port), docker (docker-compose.yml's `files` service via testcontainers; needs an
engine), external (a URL).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.errors import HarnessError, ServiceError
from harness.files import nginx as nginx_conf
from harness.files.pool import MANIFEST
from harness.paths import resolve
from harness.services.base import (
    ContainerService,
    ExternalService,
    LocalProcess,
    free_port,
    http_ok,
    last_line,
)
from harness.services.docker import ContainerSpec, container_spec

IMPLS = ("auto", "nginx", "python")
# A running pool server answers its manifest 200, or 404 when the folder has none yet.
_HEALTHY = (200, 404)


def choose_impl(impl: str, binary: str = "nginx") -> str:
    """Resolve `auto` to nginx when installed, else python; a missing nginx is an error."""
    if impl not in IMPLS:
        raise HarnessError(f"unknown file server implementation {impl!r}; pick one of {IMPLS}")
    have = nginx_conf.nginx_binary(binary) is not None
    if impl == "auto":
        return "nginx" if have else "python"
    if impl == "nginx" and not have:
        raise HarnessError("nginx is not installed (Debian: apt-get install nginx-light)")
    return impl


def _host_for_url(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


class LocalFileServer:
    """nginx or the Python fallback as a managed child process serving `root`."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        scfg: Mapping[str, Any],
        *,
        impl: str | None = None,
        host: str | None = None,
        port: int | None = None,
        wrap: Sequence[str] = (),
        ready_check: Callable[[str], bool] | None = None,
    ) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise HarnessError(f"{root} is not a folder")
        self.scfg = scfg
        self.impl = choose_impl(impl or scfg["impl"], scfg["nginx"]["binary"])
        self.name = f"files-{self.impl}"
        self.host = host or scfg["host"]
        self.port = int(port if port is not None else scfg["port"]) or free_port(
            "127.0.0.1" if wrap else self.host
        )
        self.wrap = list(wrap)  # e.g. ["ip", "netns", "exec", NS]: run inside another host
        base = f"http://{_host_for_url(self.host)}:{self.port}"
        check = ready_check or (lambda url: http_ok(url, expect=_HEALTHY))
        self.runtime = resolve(scfg["runtime_dir"]) / f"{self.impl}-{self.port}"
        self.runtime.mkdir(parents=True, exist_ok=True)
        self._proc = LocalProcess(
            self.name,
            self.wrap + self._argv(),
            url=base,
            ready_check=lambda: check(f"{base}/{MANIFEST}"),
            log_path=self.runtime / "server.log",
            cwd=Path(__file__).resolve().parents[2],
            startup_timeout=float(scfg["startup_timeout"]),
            stop_timeout=float(scfg["stop_timeout"]),
        )

    def _argv(self) -> list[str]:
        if self.impl == "nginx":
            ncfg = self.scfg["nginx"]
            nginx_conf.prepare_runtime(self.runtime)
            listen = f"{_host_for_url(self.host)}:{self.port}"
            conf = self.runtime / "nginx.conf"
            conf.write_text(nginx_conf.render(self.root, listen, self.runtime, ncfg))
            binary = nginx_conf.nginx_binary(ncfg["binary"])
            # -e: the start-up error log, before the config's error_log is read.
            return [
                str(binary),
                "-c",
                str(conf),
                "-p",
                str(self.runtime),
                "-e",
                str(self.runtime / "error.log"),
            ]
        p = self.scfg["python"]
        return [
            sys.executable,
            "-m",
            "harness.files.app",
            "--root",
            str(self.root),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--backlog",
            str(p["backlog"]),
            "--keepalive",
            str(p["keepalive"]),
            "--max-header-bytes",
            str(p["max_header_bytes"]),
            "--small-file-bytes",
            str(p["small_file_bytes"]),
            "--workers",
            str(p["workers"]),
            "--max-ranges",
            str(self.scfg["nginx"]["max_ranges"]),  # one limit for both servers
        ]

    @property
    def url(self) -> str:
        """Base URL (no trailing slash)."""
        return self._proc.url

    @property
    def pid(self) -> int | None:
        """PID of the server process."""
        return self._proc.pid

    def running(self) -> bool:
        """True while the server process is alive."""
        return self._proc.running()

    def start(self) -> None:
        """Start and wait until the server answers; nginx errors come back in one line."""
        try:
            self._proc.start()
        except ServiceError as exc:
            log = self.runtime / "error.log"
            extra = ""
            if log.exists():
                # Every line of nginx's error log is a complaint: the newest is the reason.
                last = last_line(log.read_text(errors="replace"))
                extra = f": {last}" if last else ""
            raise ServiceError(f"{exc}{extra}", detail=exc.detail) from exc

    def ready(self) -> bool:
        """True when the server answers."""
        return self._proc.ready()

    def stop(self) -> None:
        """Stop the server (its whole process group)."""
        self._proc.stop()

    def wait(self) -> int | None:
        """Block until the server exits; return its exit code."""
        proc = self._proc.proc
        return proc.wait() if proc is not None else None

    def __enter__(self) -> LocalFileServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class DockerFileServer(ContainerService):
    """docker-compose.yml's `files` service: nginx serving `root` read-only, generated config."""

    name = "files-docker"
    compose_service = "files"

    def __init__(self, root: str | os.PathLike[str], scfg: Mapping[str, Any]) -> None:
        super().__init__()
        self.root = Path(root).resolve()
        self.scfg = scfg
        self.port = int(scfg["nginx"]["container_port"])
        self.startup_timeout = float(scfg["startup_timeout"])
        self.conf = resolve(scfg["runtime_dir"]) / "docker" / "nginx.conf"

    def spec(self) -> ContainerSpec:
        """Compose's `files` with `root` and this config's container rendering mounted."""
        ncfg = self.scfg["nginx"]
        spec = container_spec(self.compose_service).require_ports(self.port)
        command = spec.command or []
        if "-c" not in command[:-1]:
            raise ServiceError(
                f"compose service {self.compose_service!r} runs {command}, not `nginx -c CONF`"
            )
        conf_target = command[command.index("-c") + 1]
        return spec.bind(str(ncfg["container_root"]), self.root).bind(conf_target, self.conf)

    def build(self) -> Any:
        """The container, after writing the container rendering of the nginx config."""
        self.conf.parent.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(nginx_conf.render_container(self.scfg["nginx"]))
        return super().build()

    def healthy(self, url: str) -> bool:
        """True when the manifest answers."""
        return http_ok(f"{url}/{MANIFEST}", expect=_HEALTHY)


def file_server(
    backend: str,
    root: str | os.PathLike[str] | None,
    scfg: Mapping[str, Any],
    *,
    url: str | None = None,
    impl: str | None = None,
) -> LocalFileServer | DockerFileServer | ExternalService:
    """The FileServer for a backend: local (default), docker, or external (needs `url`)."""
    if backend == "external":
        if not url:
            raise HarnessError("the external file server needs its URL (--files-url)")
        return ExternalService("files-external", url, health_path=f"/{MANIFEST}")
    if root is None:
        raise HarnessError(f"the {backend} file server needs a pool folder")
    if backend == "docker":
        return DockerFileServer(root, scfg)
    if backend == "local":
        return LocalFileServer(root, scfg, impl=impl)
    raise HarnessError(f"unknown backend {backend!r}")


def netns_ready_check(namespace: str) -> Callable[[str], bool]:
    """A health check that runs inside network namespace `namespace` (for wrapped servers)."""

    def check(url: str) -> bool:
        code = (
            "import urllib.request,urllib.error,sys\n"
            "try:\n"
            f"    urllib.request.urlopen({url!r}, timeout=2)\n"
            "except urllib.error.HTTPError as e:\n"
            "    sys.exit(0 if e.code == 404 else 1)\n"
            "except Exception:\n"
            "    sys.exit(1)\n"
        )
        argv = ["ip", "netns", "exec", namespace, sys.executable, "-c", code]
        return subprocess.run(argv, capture_output=True, timeout=10).returncode == 0

    return check
