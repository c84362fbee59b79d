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
from pathlib import Path

from omegaconf import DictConfig

from harness.errors import HarnessError, ServiceError
from harness.paths import resolve
from harness.services.base import LocalProcess, docker_available, http_ok, wait_until

log = logging.getLogger(__name__)
BACKENDS = ("local", "docker", "external")


def _strip_scheme(url: str) -> str:
    return url.split("://", 1)[-1].rstrip("/")


def server_flags(server: DictConfig, models: Sequence[str]) -> list[str]:
    """tritonserver flags from `triton.server` that every backend that starts one passes."""
    flags = [
        f"--model-control-mode={server.model_control_mode}",
        f"--http-thread-count={int(server.http_thread_count)}",
    ]
    if server.model_control_mode == "explicit":
        flags += [f"--load-model={m}" for m in models]
    return flags


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
        self.extra_args = list(server.extra_args) + list(extra_args)
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
        argv = [
            str(tritonserver_binary()),
            f"--model-repository={repo}",
            f"--backend-directory={backend_dir}",
            f"--http-address={self.host}",
            f"--grpc-address={self.host}",
            f"--metrics-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-port={self.metrics_port}",
            "--allow-gpu-metrics=false",
            f"--log-verbose={int(server.log_verbose)}",
            *server_flags(server, self.models),
            *self.extra_args,
        ]
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
                last = [ln for ln in log_text.splitlines() if ln.strip()][-1].strip()
                raise ServiceError(f"tritonserver refused its arguments: {last}") from exc
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
class DockerTriton(TritonServer):
    """NVIDIA's official tritonserver image (pinned tag), canonical repository mounted read-only."""

    backend = "docker"

    def __init__(self, cfg: DictConfig, repository: Path, models: Sequence[str] | None = None):
        super().__init__("127.0.0.1", 0, 0, 0)
        self.cfg = cfg
        self.repository = Path(repository).resolve()
        self.wanted = None if models is None else list(models)
        self.container = None
        self.ready_path = cfg.triton.server.ready_path

    def start(self) -> None:
        """Run the container, wait until ready; ServiceError with its log on failure."""
        if self.container is not None:
            return
        if not docker_available():
            raise ServiceError("no Docker engine: the docker backend cannot run on this machine")
        from testcontainers.core.container import DockerContainer

        dk, server = self.cfg.triton.docker, self.cfg.triton.server
        from harness.serving.repository import list_models

        self.models = self.wanted or list_models(self.repository)
        cmd = [
            "tritonserver",
            f"--model-repository={dk.repository_mount}",
            *server_flags(server, self.models),
        ]
        container = (
            DockerContainer(dk.image)
            .with_volume_mapping(str(self.repository), dk.repository_mount, "ro")
            .with_exposed_ports(8000, 8001, 8002)
            .with_kwargs(shm_size=dk.shm_size)
            .with_command(" ".join(cmd))
        )
        self.container = container.start()
        self.host = container.get_container_host_ip()
        self.http_port = int(container.get_exposed_port(8000))
        self.grpc_port = int(container.get_exposed_port(8001))
        self.metrics_port = int(container.get_exposed_port(8002))
        if not wait_until(self.ready, float(server.startup_timeout_s), interval=1.0):
            logs = self.log_tail(200)
            errors = [ln for ln in logs.splitlines() if "error" in ln.lower()][-5:]
            self.stop()
            raise ServiceError(
                f"tritonserver container did not become ready: {'; '.join(errors) or 'no log'}",
                detail=logs,
            )

    def log_tail(self, lines: int = 30) -> str:
        """The container's last log lines."""
        if self.container is None:
            return ""
        out, err = self.container.get_logs()
        text = (out or b"").decode(errors="replace") + (err or b"").decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Remove the container."""
        container, self.container = self.container, None
        if container is not None:
            container.stop()


# ------------------------------------------------------------------------------------ external
class ExternalTriton(TritonServer):
    """A server somebody else runs (a remote deployment): only checked, never started/stopped."""

    backend = "external"

    def __init__(self, http_url: str, grpc_url: str | None, models: Sequence[str] | None = None):
        http = _strip_scheme(http_url)
        host, _, port = http.rpartition(":")
        if not host or not port.isdigit():
            raise HarnessError(
                f"--triton-url must be host:port or http://host:port, got {http_url}"
            )
        grpc_port = 8001
        if grpc_url:
            ghost, _, gport = _strip_scheme(grpc_url).rpartition(":")
            if not gport.isdigit():
                raise HarnessError(f"--triton-grpc-url must be host:port, got {grpc_url}")
            grpc_port = int(gport)
            self._grpc_host = ghost
        else:
            self._grpc_host = host
        super().__init__(host, int(port), grpc_port, None)
        self.models = list(models or [])

    @property
    def grpc_url(self) -> str:
        """host:port of the gRPC endpoint."""
        return f"{self._grpc_host}:{self.grpc_port}"

    def start(self) -> None:
        """Fail clearly when the server does not answer ready."""
        if not wait_until(self.ready, timeout=10.0, interval=0.5):
            raise ServiceError(f"external Triton at {self.url} is not ready ({self.ready_path})")

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
        return ExternalTriton(http, grpc_url or cfg.triton.external.grpc_url, models)
    raise HarnessError(f"unknown Triton backend '{backend}' (choose from {', '.join(BACKENDS)})")
