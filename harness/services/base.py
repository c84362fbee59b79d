"""The Service protocol and its building blocks: managed local processes and external URLs.

Every backend (local process, Docker container, external URL) of every service (Triton, S3,
MLflow, file server) has the same shape, so fixtures and commands never care which one runs.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from harness.errors import ServiceError

if TYPE_CHECKING:  # the spec's module builds on this one
    from harness.services.docker import ContainerSpec

log = logging.getLogger(__name__)


@runtime_checkable
class Service(Protocol):
    """start/ready/url/stop: the one shape every backend of every service has."""

    name: str

    def start(self) -> None:
        """Start (idempotent) and block until healthy; raise ServiceError with the log tail."""

    def ready(self) -> bool:
        """True when the service answers its health check."""

    @property
    def url(self) -> str:
        """Base URL of the running service."""

    def stop(self) -> None:
        """Stop; always safe to call, leaves no process behind."""


@contextlib.contextmanager
def running(service: Service) -> Iterator[Service]:
    """Start `service`, hand it out, stop it however the block ends (any backend)."""
    service.start()
    try:
        yield service
    finally:
        service.stop()


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free a moment ago on `host`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def http_ok(url: str, timeout: float = 2.0, expect: Sequence[int] = (200,)) -> bool:
    """True when GET `url` answers with one of the `expect` status codes."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (local URLs)
            return resp.status in expect
    except urllib.error.HTTPError as exc:
        return exc.code in expect
    except (OSError, ValueError):
        return False


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    interval: float = 0.2,
    abort: Callable[[], str | None] | None = None,
) -> bool:
    """Poll `predicate` until true or `timeout`; `abort` returning a reason stops early."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if abort is not None and abort() is not None:
            return False
        time.sleep(interval)
    return predicate()


def docker_available(timeout: float = 3.0) -> bool:
    """True when a Docker engine answers a ping (the docker backends need one)."""
    try:
        import docker  # shipped with testcontainers

        client = docker.from_env(timeout=int(timeout))
        client.ping()
        client.close()
        return True
    except Exception:
        return False


# Words that mark a log line as the reason a service failed (the one heuristic every backend
# uses: local processes, containers, the compose CLI).
ERROR_WORDS = ("error", "failed", "fatal", "exception", "unable", "invalid", "cannot", "unhealthy")


def last_line(text: str) -> str:
    """The last non-blank line of `text`, stripped ('' when there is none)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def error_lines(text: str, limit: int = 5, *, or_last: bool = False) -> str:
    """The last `limit` lines of `text` that look like errors, joined by '; '.

    With `or_last`, the last non-blank line stands in when no line has an error word (compose's
    stderr often states the reason without one); '' when `text` is blank.
    """
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    hits = [ln for ln in lines if any(w in ln.lower() for w in ERROR_WORDS)]
    if not hits and or_last and lines:
        hits = lines[-1:]
    return "; ".join(hits[-limit:]) if limit > 0 else ""


class ContainerService:
    """One container with the Service shape: start, wait until healthy, stop.

    Every docker backend (Triton, S3, MLflow, file server) is one of these. A subclass returns
    its compose service as a `harness.services.docker.ContainerSpec` from `spec()` (so images,
    commands and mounts come from docker-compose.yml) and says what answers when it is healthy in
    `healthy(url)`: the one wait strategy. `port` is the container port behind `url`. Without a
    Docker engine `start()` raises a one-line ServiceError; a container that exits or never
    becomes healthy is removed and its error lines make the message, its log the `detail`.
    """

    name = "container"
    port = 80
    startup_timeout = 60.0
    poll_interval = 0.5
    log_lines = 400  # log tail kept in ServiceError.detail

    def __init__(self) -> None:
        self._container: Any = None
        self._url = ""

    @property
    def url(self) -> str:
        """Base URL of the container's mapped port (valid after start)."""
        if not self._url:
            raise ServiceError(f"{self.name} is not started")
        return self._url

    def spec(self) -> ContainerSpec:
        """The compose service this backend runs, as plain data (needs no engine)."""
        raise NotImplementedError

    def build(self) -> Any:
        """The testcontainers container to run, configured but not started."""
        return self.spec().testcontainer()

    def healthy(self, url: str) -> bool:
        """True when the service at `url` answers its health check."""
        raise NotImplementedError

    @property
    def container_host(self) -> str:
        """The host the container's mapped ports are reached on (valid after start)."""
        if self._container is None:
            raise ServiceError(f"{self.name} is not started")
        return str(self._container.get_container_host_ip())

    def mapped_port(self, container_port: int) -> int:
        """The host port `container_port` is mapped to (valid after start)."""
        if self._container is None:
            raise ServiceError(f"{self.name} is not started")
        return int(self._container.get_exposed_port(container_port))

    def start(self) -> None:
        """Run the container and wait until healthy; ServiceError (container removed) if not."""
        if self._container is not None:
            return
        if not docker_available():
            raise ServiceError(f"{self.name}: no Docker engine answers")
        container = self.build()
        image = getattr(container, "image", "?")
        try:
            container.start()
        except Exception as exc:  # noqa: BLE001 - docker raises many types
            raise ServiceError(
                f"{self.name}: cannot start {image}: {last_line(str(exc)) or type(exc).__name__}"
            ) from exc
        self._container = container
        self._url = f"http://{self.container_host}:{self.mapped_port(self.port)}"
        if not wait_until(
            self.ready, self.startup_timeout, interval=self.poll_interval, abort=self._exited
        ):
            url = self._url
            reason = self._exited() or f"not healthy at {url} after {self.startup_timeout:.0f}s"
            logs = self.log_tail(self.log_lines)
            errors = error_lines(logs)
            self.stop()
            msg = f"{self.name}: {image} {reason}"
            raise ServiceError(f"{msg}: {errors}" if errors else msg, detail=logs)

    def _exited(self) -> str | None:
        """Why the container is no longer running ('exited with code N'), None while it runs."""
        container = self._container
        if container is None:
            return None
        try:
            wrapped = container.get_wrapped_container()
            wrapped.reload()
        except Exception:  # noqa: BLE001 - an unanswered inspect is no verdict
            return None
        if wrapped.status not in ("exited", "dead"):
            return None
        code = (wrapped.attrs.get("State") or {}).get("ExitCode", "?")
        return f"exited with code {code}"

    def log_tail(self, lines: int = 30) -> str:
        """The container's last `lines` log lines, stdout then stderr ('' when not running)."""
        if self._container is None:
            return ""
        try:
            out, err = self._container.get_logs()
        except Exception:  # noqa: BLE001 - a removed container has no logs
            return ""
        text = (out or b"").decode(errors="replace") + (err or b"").decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def ready(self) -> bool:
        """True when started and healthy."""
        return bool(self._url) and self.healthy(self._url)

    def stop(self) -> None:
        """Stop and remove the container; safe to call twice."""
        container, self._container = self._container, None
        self._url = ""
        if container is not None:
            container.stop()

    def __enter__(self) -> ContainerService:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


_PR_SET_PDEATHSIG = 1
_live: weakref.WeakSet[LocalProcess] = weakref.WeakSet()


def _die_with_parent() -> None:
    # Runs in the child before exec: the kernel kills it if the harness dies, so no orphans.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


class LocalProcess:
    """A managed child process: own process group, killed with its parent, log in a file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        url: str,
        ready_check: Callable[[], bool],
        log_path: str | os.PathLike[str],
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        startup_timeout: float = 60.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self._url = url
        self._ready_check = ready_check
        self.log_path = Path(log_path)
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the running service."""
        return self._url

    @property
    def pid(self) -> int | None:
        """PID of the child (also its process-group id), or None when not running."""
        return self.proc.pid if self.proc is not None else None

    def running(self) -> bool:
        """True while the child process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def ready(self) -> bool:
        """True when the process is alive and its health check passes."""
        return self.running() and self._ready_check()

    def log_tail(self, lines: int = 30) -> str:
        """The last `lines` lines of the process log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def error_lines(self, lines: int = 5) -> str:
        """The log lines that look like errors (for one-line failure messages)."""
        return error_lines(self.log_tail(400), lines)

    def start(self) -> None:
        """Start the process (idempotent) and wait until its health check passes."""
        if self.running():
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log.info("starting %s: %s", self.name, " ".join(self.argv))
        with open(self.log_path, "ab") as log_fh:
            try:
                self.proc = subprocess.Popen(
                    self.argv,
                    stdout=log_fh,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=self.env,
                    cwd=self.cwd,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,
                )
            except OSError as exc:
                raise ServiceError(f"{self.name}: cannot run {self.argv[0]}: {exc}") from exc
        _live.add(self)

        def exited() -> str | None:
            code = self.proc.poll() if self.proc else None
            return None if code is None else f"exited with code {code}"

        if not wait_until(self._ready_check, self.startup_timeout, abort=exited):
            reason = exited() or f"not healthy after {self.startup_timeout:.0f}s"
            errors = self.error_lines()
            tail = self.log_tail()
            self.stop()
            msg = f"{self.name} failed to start ({reason})"
            if errors:
                msg += f": {errors}"
            raise ServiceError(f"{msg} [log: {self.log_path}]", detail=tail)
        log.info("%s ready at %s", self.name, self.url)

    def stop(self) -> None:
        """SIGTERM the whole process group, SIGKILL it after `stop_timeout`; always safe."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            pgid = os.getpgid(proc.pid)
        except ProcessLookupError:
            pgid = None
        if proc.poll() is None and pgid is not None:
            _signal_group(pgid, signal.SIGTERM)
            try:
                proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                pass
        if pgid is not None:
            # Children of the service (workers, stubs) may outlive the leader: kill the group.
            _signal_group(pgid, signal.SIGKILL)
        try:
            proc.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s (pid %s) did not exit", self.name, proc.pid)
        _live.discard(self)

    def __enter__(self) -> LocalProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@atexit.register
def _stop_all() -> None:
    for svc in list(_live):
        svc.stop()


class ExternalService:
    """A service somebody else runs: we only check its health at the URL we were given."""

    def __init__(
        self,
        name: str,
        url: str,
        health_path: str = "/",
        expect: Sequence[int] = (200,),
        timeout: float = 10.0,
    ) -> None:
        self.name = name
        self.timeout = timeout
        self._url = url.rstrip("/")
        self.health_path = health_path
        self.expect = tuple(expect)

    @property
    def url(self) -> str:
        """Base URL of the external service."""
        return self._url

    def ready(self) -> bool:
        """True when the health endpoint answers."""
        return http_ok(self._url + self.health_path, expect=self.expect)

    def start(self) -> None:
        """Nothing to start: fail clearly if the service does not answer."""
        if not wait_until(self.ready, timeout=self.timeout, interval=0.5):
            raise ServiceError(f"{self.name}: no answer at {self._url}{self.health_path}")

    def stop(self) -> None:
        """Nothing to stop: somebody else owns the process."""

    def __enter__(self) -> ExternalService:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
