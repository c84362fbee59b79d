"""The Triton Inference Server as a service: local binary, Docker container, or external URL.

All three backends have one shape: start (blocks until `/v2/health/ready`), ready, `url` (HTTP),
`grpc_url`, `metrics_url`, `log_tail`, stop. `make_triton(cfg, backend, repository, models)` is
the one factory commands, fixtures and other issues (embeddings) use.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from omegaconf import DictConfig

from harness.errors import HarnessError, ServiceError
from harness.paths import resolve
from harness.services.base import ContainerService, LocalProcess, http_ok, last_line, wait_until
from harness.services.docker import ContainerSpec, container_spec
from harness.services.triton_config import TritonServerConfig, merge_flags
from harness.urls import host_port

log = logging.getLogger(__name__)
BACKENDS = ("local", "docker", "external")


class TritonServer:
    """Common interface of the three backends (subclasses fill in start/stop)."""

    name = "triton"
    backend = "?"

    def __init__(self, host: str, http_port: int, grpc_port: int, metrics_port: int | None):
        self.host = host
        self.http_port = http_port
        self.grpc_port = grpc_port
        self.metrics_port = metrics_port
        self.models: list[str] = []
        self.skipped: dict[str, str] = {}  # model -> why this host cannot serve it
        self.ready_path = "/v2/health/ready"

    @property
    def url(self) -> str:
        """HTTP base URL (http://host:port)."""
        return f"http://{self.http_address}"

    @property
    def http_address(self) -> str:
        """host:port of the HTTP endpoint (what tritonclient.http and perf_analyzer take)."""
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        """host:port of the gRPC endpoint."""
        return f"{self.host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str | None:
        """Prometheus metrics URL, when the backend exposes it."""
        return (
            None if self.metrics_port is None else f"http://{self.host}:{self.metrics_port}/metrics"
        )

    def address(self, protocol: str) -> str:
        """host:port for `protocol` ('http' or 'grpc')."""
        return self.grpc_url if protocol == "grpc" else self.http_address

    def ready(self) -> bool:
        """True when the server reports ready (all loaded models ready)."""
        return http_ok(self.url + self.ready_path)

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server log ('' when the backend has none)."""
        return ""

    def describe(self) -> list[str]:
        """Human-readable lines: backend, URLs, models."""
        return [
            f"triton ({self.backend}) ready",
            f"  HTTP    {self.url}",
            f"  gRPC    {self.grpc_url}",
            f"  metrics {self.metrics_url or '-'}",
            f"  models  {', '.join(self.models) or '-'}",
        ] + [f"  skipped {name}: {why}" for name, why in self.skipped.items()]

    def start(self) -> None:  # pragma: no cover - overridden
        """Start and wait until ready."""
        raise NotImplementedError

    def stop(self) -> None:  # pragma: no cover - overridden
        """Stop; always safe."""
        raise NotImplementedError

    def __enter__(self) -> TritonServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------------------- local
def pytriton_dir() -> Path:
    """The tritonserver tree shipped by the nvidia-pytriton wheel."""
    try:
        import pytriton
    except ImportError as exc:
        raise ServiceError("nvidia-pytriton is not installed (it ships tritonserver)") from exc
    return Path(pytriton.__file__).resolve().parent / "tritonserver"


def tritonserver_binary() -> Path:
    """Path of the real tritonserver binary."""
    exe = pytriton_dir() / "bin" / "tritonserver"
    if not exe.is_file():
        raise ServiceError(f"tritonserver binary not found at {exe}")
    return exe


def python_backend_dir(root: Path, stub_version: str) -> Path:
    """A backend directory (root/python) with the python backend and this interpreter's stub."""
    tree = pytriton_dir()
    stub = tree / "python_backend_stubs" / stub_version / "triton_python_backend_stub"
    if not stub.is_file():
        raise ServiceError(f"no python backend stub for Python {stub_version} at {stub}")
    target = root / "python"
    if (target / "triton_python_backend_stub").is_file():
        return root
    tmp = Path(tempfile.mkdtemp(prefix=".python.", dir=root))
    for item in (tree / "backends" / "python").iterdir():
        if item.is_file():
            shutil.copy2(item, tmp / item.name)
    shutil.copy2(stub, tmp / stub.name)
    try:
        os.replace(tmp, target)  # atomic: parallel starters never see a half-built folder
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def triton_env() -> dict[str, str]:
    """Environment for tritonserver and its python stubs (see ENVIRONMENT.md)."""
    env = dict(os.environ)
    libs = pytriton_dir().parent.parent / "nvidia_pytriton.libs"
    # The interpreter's LIBDIR first, or the stub may load the system libpython and crash.
    ld = [str(libs), sysconfig.get_config_var("LIBDIR") or ""]
    if env.get("LD_LIBRARY_PATH"):
        ld.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = ":".join(p for p in ld if p)
    # The stub takes sys.prefix from the first python3 on PATH: make it this venv's.
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """`n` distinct ports that were free a moment ago (sockets held together, then released)."""
    socks = []
    try:
        for _ in range(n):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            socks.append(sock)
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def child_processes(parent: int) -> list[tuple[int, list[str]]]:
    """(pid, argv) of the live (non-zombie) children of `parent`, read from /proc."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if fields[0] != "Z" and int(fields[1]) == parent:
            out.append((int(entry.name), [a.decode(errors="replace") for a in argv if a]))
    return out


def process_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (a zombie runs nothing; init reaps it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


class LocalTriton(TritonServer):
    """The real tritonserver 2.51 binary serving a materialized copy of the repository."""

    backend = "local"

    def __init__(
        self,
        cfg: DictConfig,
        repository: Path,
        models: Sequence[str] | None = None,
        work_dir: Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        server = cfg.triton.server
        super().__init__(server.host, 0, 0, 0)
        self.cfg = cfg
        self.repository = Path(repository)
        self.wanted = None if models is None else list(models)
        base = resolve(cfg.paths.work_dir) / "triton"
        self.work_dir = Path(work_dir) if work_dir else base / f"run-{uuid.uuid4().hex[:8]}"
        self.backends_root = base / "backends"
        typed = TritonServerConfig.from_config(server)
        # Built (and checked) once; start() fills in where this server runs.
        self.server_config = replace(
            typed, address=self.host, extra_args=(*typed.extra_args, *map(str, extra_args))
        )
        self.ready_path = server.ready_path
        self.process: LocalProcess | None = None

    @property
    def served_repository(self) -> Path:
        """The materialized repository the server actually reads."""
        return self.work_dir / "repository"

    def start(self) -> None:
        """Materialize, start tritonserver on free ports, wait until ready."""
        if self.process is not None and self.process.running():
            return
        from harness.serving.materialize import materialize

        server = self.cfg.triton.server
        repo = self.served_repository
        if repo.exists():
            shutil.rmtree(repo)
        skipped: dict[str, str] = {}
        self.models = materialize(self.repository, repo, self.wanted, skipped)
        self.skipped = skipped
        if not self.models:
            why = "; ".join(f"{k}: {v}" for k, v in skipped.items()) or "it holds no model"
            raise ServiceError(f"nothing in {self.repository} can be served locally ({why})")
        self.backends_root.mkdir(parents=True, exist_ok=True)
        backend_dir = python_backend_dir(self.backends_root, str(server.python_stub_version))
        attempts = max(1, int(server.start_attempts))
        for attempt in range(1, attempts + 1):
            try:
                self._start_once(repo, backend_dir)
                return
            except ServiceError as exc:
                # Free ports are only free until someone else binds them (parallel jobs).
                if "already in use" not in str(exc) or attempt == attempts:
                    raise
                log.warning("tritonserver: port taken meanwhile, retrying on new ports")

    def _start_once(self, repo: Path, backend_dir: Path) -> None:
        server = self.cfg.triton.server
        self.http_port, self.grpc_port, self.metrics_port = free_ports(3, self.host)
        config = replace(
            self.server_config,
            model_repository=str(repo),
            backend_directory=str(backend_dir),
            http_port=self.http_port,
            grpc_port=self.grpc_port,
            metrics_port=self.metrics_port,
            models=(
                tuple(self.models) if self.server_config.model_control_mode == "explicit" else ()
            ),
        )
        argv = config.to_argv(str(tritonserver_binary()))
        self.process = LocalProcess(
            "tritonserver",
            argv,
            url=self.url,
            ready_check=lambda: http_ok(self.url + self.ready_path),
            log_path=self.work_dir / "tritonserver.log",
            env=triton_env(),
            cwd=self.work_dir,
            startup_timeout=float(server.startup_timeout_s),
            stop_timeout=float(server.stop_timeout_s),
        )
        try:
            self.process.start()
        except ServiceError as exc:
            log_text = self.process.log_tail(400)
            if "Usage: tritonserver" in log_text:
                # An argument error prints the whole usage text; its last line is the reason.
                raise ServiceError(
                    f"tritonserver refused its arguments: {last_line(log_text)}"
                ) from exc
            raise

    def ready(self) -> bool:
        """True when the process lives and the server reports ready."""
        return self.process is not None and self.process.ready()

    @property
    def pid(self) -> int | None:
        """PID (and process-group id) of tritonserver."""
        return self.process.pid if self.process else None

    @property
    def log_path(self) -> Path:
        """The server log file."""
        return self.work_dir / "tritonserver.log"

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server log."""
        return self.process.log_tail(lines) if self.process else ""

    def stub_processes(self) -> dict[str, int]:
        """{model instance name: pid} of the python-backend stubs the server runs right now."""
        if self.pid is None:
            return {}
        out = {}
        for pid, argv in child_processes(self.pid):
            if argv and argv[0].endswith("triton_python_backend_stub") and len(argv) > 2:
                out[argv[-2]] = pid  # argv: stub model.py shm ... <instance name> <kind>
        return out

    def stop(self) -> None:
        """Stop the server's whole process group (server and python stubs)."""
        process = self.process
        if process is None:
            return
        proc = process.proc
        if proc is not None and proc.poll() is None:
            # SIGTERM the server alone first: it unloads models and reaps its python stubs;
            # signalling the whole group at once would orphan stubs mid-shutdown.
            try:
                os.kill(proc.pid, signal.SIGTERM)
                proc.wait(timeout=process.stop_timeout)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        process.stop()  # then the group: SIGTERM/SIGKILL whatever is left
        # The materialized copy is only links and generated files; the log stays for debugging.
        shutil.rmtree(self.served_repository, ignore_errors=True)


# -------------------------------------------------------------------------------------- docker
class DockerTriton(ContainerService, TritonServer):
    """NVIDIA's tritonserver image as docker-compose.yml's `triton` service runs it.

    Image, command, shm size and ulimits come from the compose file; the canonical repository is
    mounted read-only where compose mounts it (`triton.docker.repository_mount`), host ports are
    random, and the typed `triton.server` config adds its flags to compose's command.
    """

    backend = "docker"
    name = "triton (docker)"
    compose_service = "triton"

    def __init__(self, cfg: DictConfig, repository: Path, models: Sequence[str] | None = None):
        ContainerService.__init__(self)
        TritonServer.__init__(self, "127.0.0.1", 0, 0, 0)
        self.cfg = cfg
        self.repository = Path(repository).resolve()
        self.wanted = None if models is None else list(models)
        server = cfg.triton.server
        self.ready_path = server.ready_path
        self.server_config = TritonServerConfig.from_config(server)
        ports = cfg.stack.ports.triton
        # The container ports compose publishes: HTTP (behind `url`), gRPC, metrics.
        self.container_ports = tuple(int(ports[k].container) for k in ("http", "grpc", "metrics"))
        self.port = self.container_ports[0]
        self.startup_timeout = float(server.startup_timeout_s)

    def _models(self) -> list[str]:
        from harness.serving.repository import list_models

        return self.wanted or list_models(self.repository)

    def spec(self) -> ContainerSpec:
        """Compose's `triton` service with this repository mounted and the typed flags added."""
        compose_file = resolve(self.cfg.stack.compose_file)
        spec = container_spec(self.compose_service, compose_file).require_ports(
            *self.container_ports
        )
        spec = spec.bind(str(self.cfg.triton.docker.repository_mount), self.repository)
        typed = self.server_config
        if typed.model_control_mode == "explicit":
            typed = replace(typed, models=tuple(self._models()))
        command = merge_flags(
            spec.command or [],
            typed.flags(),
            f"{compose_file.name} service {self.compose_service!r}",
        )
        return replace(spec, command=command)

    def healthy(self, url: str) -> bool:
        """True when the server reports ready (all loaded models ready)."""
        return http_ok(url + self.ready_path)

    def start(self) -> None:
        """Run the container, wait until ready; ServiceError with its log on failure."""
        if self._container is not None:
            return
        self.models = self._models()
        ContainerService.start(self)
        self.host = self.container_host
        self.http_port, self.grpc_port, self.metrics_port = (
            self.mapped_port(p) for p in self.container_ports
        )


# ------------------------------------------------------------------------------------ external
class ExternalTriton(TritonServer):
    """A server somebody else runs (a remote deployment): only checked, never started/stopped."""

    backend = "external"

    def __init__(
        self,
        http_url: str,
        grpc_url: str | None,
        models: Sequence[str] | None = None,
        *,
        grpc_port: int = 8001,
        ready_timeout_s: float = 10.0,
    ):
        host, port = host_port(http_url)
        if grpc_url:
            self._grpc_host, grpc_port = host_port(grpc_url)
        else:  # the same host, on the gRPC port the deployment is configured with
            self._grpc_host = host
        super().__init__(host, port, int(grpc_port), None)
        self.models = list(models or [])
        self.ready_timeout_s = float(ready_timeout_s)

    @property
    def grpc_url(self) -> str:
        """host:port of the gRPC endpoint."""
        return f"{self._grpc_host}:{self.grpc_port}"

    def start(self) -> None:
        """Fail clearly when the server does not answer ready."""
        if not wait_until(self.ready, timeout=self.ready_timeout_s, interval=0.5):
            raise ServiceError(
                f"external Triton at {self.url} is not ready ({self.ready_path}) after "
                f"{self.ready_timeout_s:.0f}s"
            )

    def stop(self) -> None:
        """Nothing to stop: somebody else owns the server."""


# ------------------------------------------------------------------------------------- factory
def make_triton(
    cfg: DictConfig,
    backend: str | None = None,
    repository: str | Path | None = None,
    models: Sequence[str] | None = None,
    *,
    http_url: str | None = None,
    grpc_url: str | None = None,
    work_dir: str | Path | None = None,
    extra_args: Sequence[str] = (),
) -> TritonServer:
    """A TritonServer for `backend` (local | docker | external) serving `repository`'s `models`.

    local: materializes `repository` (default cfg.triton.repository) into `work_dir`/repository
    and runs the embedded tritonserver on free ports. docker: mounts `repository` unchanged.
    external: `http_url`/`grpc_url` (default cfg.triton.external.*). Call start()/stop() or use it
    as a context manager.
    """
    backend = backend or cfg.triton.backend
    repo = resolve(repository if repository is not None else cfg.triton.repository)
    if backend == "local":
        return LocalTriton(cfg, repo, models, Path(work_dir) if work_dir else None, extra_args)
    if backend == "docker":
        return DockerTriton(cfg, repo, models)
    if backend == "external":
        http = http_url or cfg.triton.external.http_url
        if not http:
            raise HarnessError("the external backend needs --triton-url (or HARNESS_TRITON_URL)")
        ext = cfg.triton.external
        return ExternalTriton(
            http,
            grpc_url or ext.grpc_url,
            models,
            grpc_port=int(ext.default_grpc_port),
            ready_timeout_s=float(ext.ready_timeout_s),
        )
    raise HarnessError(f"unknown Triton backend '{backend}' (choose from {', '.join(BACKENDS)})")
