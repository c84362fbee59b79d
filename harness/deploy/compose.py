"""Policy of the compose file: pinned images, health checks, published ports, mounts, and its
agreement with configs/ (offline: no Docker needed). Each check returns one line per problem."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from harness.config import plain
from harness.errors import HarnessError
from harness.paths import resolve
from harness.services.docker import (
    image_problem,
    interpolate_tree,
    load_compose,
    published_ports,
)
from harness.services.triton_config import TritonServerConfig, merge_flags


def _seconds(value: Any) -> float:
    """A compose duration ("1m30s", "500ms", "10s", 10) in seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    total, num = 0.0, ""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6}
    s = str(value).strip()
    i = 0
    while i < len(s):
        c = s[i]
        if c.isdigit() or c == ".":
            num += c
            i += 1
            continue
        unit = s[i : i + 2] if s[i : i + 2] in ("ms", "us") else c
        total += float(num or 0) * units[unit]
        num = ""
        i += len(unit)
    return total + (float(num) if num else 0.0)


def _one_shot(svc: Mapping[str, Any]) -> bool:
    return str(svc.get("restart", "no")) == "no" and "healthcheck" not in svc


def _bind_mounts(svc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Volumes of a service in long form: {type, source, target, read_only}."""
    out = []
    for v in svc.get("volumes", []) or []:
        if isinstance(v, dict):
            out.append(v)
            continue
        parts = str(v).split(":")
        mode = parts[2] if len(parts) > 2 else ""
        out.append(
            {
                "type": "bind" if parts[0].startswith((".", "/", "~")) else "volume",
                "source": parts[0],
                "target": parts[1] if len(parts) > 1 else parts[0],
                "read_only": "ro" in mode.split(","),
            }
        )
    return out


def compose_problems(cfg: DictConfig, path: str | os.PathLike[str] | None = None) -> list[str]:
    """Policy of the compose file: pinned images, health checks, published ports, mounts."""
    p = Path(path) if path is not None else resolve(cfg.stack.compose_file)
    raw = load_compose(p)
    services: dict[str, Any] = raw["services"]
    # Interpolated with an empty environment: the defaults a plain `docker compose up` uses.
    resolved = interpolate_tree(services, {})
    floating = list(cfg.stack.check.floating_tags)
    max_interval = float(cfg.stack.check.max_healthcheck_interval_s)
    problems: list[str] = []
    named_volumes = set((raw.get("volumes") or {}).keys())

    for name, svc in resolved.items():
        where = f"{p.name}: service {name!r}"
        prob = image_problem(svc.get("image"), floating)
        if svc.get("build") and not svc.get("image"):
            prob = "is built locally, not a pinned image"
        if prob:
            problems.append(f"{where}: {prob}")
        hc = svc.get("healthcheck")
        if hc is None:
            adopters = [
                other
                for other, osvc in resolved.items()
                if isinstance(osvc.get("depends_on"), dict)
                and (osvc["depends_on"].get(name) or {}).get("condition")
                == "service_completed_successfully"
            ]
            if not _one_shot(svc):
                problems.append(f"{where}: no healthcheck")
            elif not adopters:
                # `up --wait` counts an exited container nobody waits for as a failure.
                problems.append(
                    f"{where}: one-shot service that no service depends on with "
                    "condition service_completed_successfully"
                )
        elif hc.get("disable") or not hc.get("test") or hc.get("test") == ["NONE"]:
            problems.append(f"{where}: healthcheck disabled or empty")
        elif _seconds(hc.get("interval", "30s")) > max_interval:
            problems.append(f"{where}: healthcheck interval {hc['interval']} > {max_interval:g}s")
        deps = svc.get("depends_on") or {}
        for dep in deps if isinstance(deps, (list, dict)) else []:
            if dep not in resolved:
                problems.append(f"{where}: depends_on unknown service {dep!r}")
        for vol in _bind_mounts(svc):
            if vol.get("type") == "volume" and vol.get("source") not in named_volumes:
                problems.append(f"{where}: volume {vol.get('source')!r} is not declared")

    # The ports the tests and docker backends use: published under the configured variable.
    for svc_name, ports in plain(cfg, "stack.ports", {}).items():
        where = f"{p.name}: service {svc_name!r}"
        if svc_name not in services:
            problems.append(f"{where}: missing (configs/stack ports name it)")
            continue
        default_map = published_ports(resolved[svc_name])
        for label, spec in ports.items():
            target, var, default = int(spec["container"]), spec["env"], int(spec["default"])
            if default_map.get(target) != default:
                problems.append(
                    f"{where}: {label} port {target} not published on host port {default} "
                    f"(published: {default_map.get(target, 'no')})"
                )
                continue
            moved = published_ports(interpolate_tree(services[svc_name], {var: "1"}))
            if moved.get(target) != 1:
                problems.append(f"{where}: {label} port {target} does not follow ${{{var}}}")

    if raw.get("name") != cfg.stack.project:
        # `harness stack` passes -p stack.project; plain `docker compose` uses the file's name.
        problems.append(f"{p.name}: project name {raw.get('name')!r} != stack.project")
    problems += _consistency_problems(cfg, p.name, resolved)
    return problems


def _consistency_problems(cfg: DictConfig, fname: str, svcs: Mapping[str, Any]) -> list[str]:
    """Compose agrees with the services' configs where both name a thing (bucket, root, ports).

    Images are not among them: docker-compose.yml is the only place that names one, and the
    docker backends run compose's services (harness.services.docker.container_spec).
    """
    problems: list[str] = []
    bucket = plain(cfg, "storage.bucket")
    init_env = svcs.get("minio-init", {}).get("environment") or {}
    if bucket and isinstance(init_env, dict) and init_env.get("HARNESS_S3_BUCKET") != bucket:
        problems.append(
            f"{fname}: minio-init creates bucket {init_env.get('HARNESS_S3_BUCKET')!r}, "
            f"storage.bucket is {bucket!r}"
        )
    triton = svcs.get("triton", {})
    mount = plain(cfg, "triton.docker.repository_mount", "/models")
    repo = [v for v in _bind_mounts(triton) if v.get("target") == mount]
    if triton and not repo:
        problems.append(f"{fname}: triton does not mount the model repository at {mount}")
    for v in repo:
        if not v.get("read_only"):
            problems.append(f"{fname}: triton mounts the model repository writable")
        if Path(str(v.get("source"))).resolve() != resolve(cfg.paths.model_repository).resolve():
            src = v.get("source")
            problems.append(f"{fname}: triton mounts {src}, not paths.model_repository")
        cmd = " ".join(map(str, triton.get("command") or []))
        if f"--model-repository={mount}" not in cmd:
            problems.append(f"{fname}: triton command does not serve --model-repository={mount}")
    if triton:
        # The docker backend adds the typed triton.server flags to this command: they must agree.
        try:
            flags = TritonServerConfig.from_config(cfg.triton.server).flags()
            merge_flags([str(a) for a in triton.get("command") or []], flags, f"{fname} triton")
        except HarnessError as exc:
            problems.append(str(exc))
    files = svcs.get("files", {})
    root = plain(cfg, "files.server.nginx.container_root", "/usr/share/nginx/html")
    pool = [v for v in _bind_mounts(files) if v.get("target") == root]
    if files and (not pool or not all(v.get("read_only") for v in pool)):
        problems.append(f"{fname}: files does not mount the pool read-only at {root}")
    listen = plain(cfg, "files.server.nginx.container_port")
    published = plain(cfg, "stack.ports.files.http.container")
    if files and listen and published and int(listen) != int(published):
        problems.append(
            f"{fname}: nginx listens on {listen} (files.server.nginx.container_port), "
            f"compose publishes container port {published}"
        )
    s3_port = plain(cfg, "storage.docker.port")
    s3_published = plain(cfg, "stack.ports.minio.s3.container")
    if s3_port and s3_published and int(s3_port) != int(s3_published):
        problems.append(
            f"{fname}: the S3 docker backend uses container port {s3_port} (storage.docker.port), "
            f"compose publishes {s3_published}"
        )
    return problems
