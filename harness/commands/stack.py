"""`harness stack up|down|status|check|nginx-conf`: the docker compose stack and its checks.

up/down/status wrap `docker compose` with the settings of configs/ (ports, bucket, model
repository, file pool, nginx config) and need a Docker engine: without one they stop with one
line saying so. `check` validates every deployment file offline and needs nothing running.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from harness.commands.args import add_overrides
from harness.config import compose
from harness.errors import HarnessError
from harness.io import atomic_open
from harness.paths import resolve

ACTIONS = ("up", "down", "status", "check", "nginx-conf")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the stack actions and their options."""
    parser.add_argument(
        "action",
        choices=ACTIONS,
        help="up: start and wait until healthy; down: stop and remove; status: what runs; "
        "check: validate deployment files offline; nginx-conf: re-render deploy/nginx/files.conf",
    )
    parser.add_argument("--gpu", action="store_true", help="up: add the GPU Triton (profile gpu)")
    parser.add_argument(
        "--services",
        type=lambda text: [s for s in text.split(",") if s],
        metavar="A,B",
        default=[],
        help="up: only these services (comma-separated), e.g. minio,mlflow",
    )
    parser.add_argument("--volumes", action="store_true", help="down: also delete named volumes")
    add_overrides(parser)


def stack_env(cfg: DictConfig) -> dict[str, str]:
    """The HARNESS_* variables docker-compose.yml reads, from configs/ (the environment wins)."""
    env: dict[str, str] = {}
    for ports in cfg.stack.ports.values():
        for spec in ports.values():
            env[str(spec.env)] = str(spec.default)
    env["HARNESS_MODEL_REPOSITORY"] = str(resolve(cfg.paths.model_repository))
    env["HARNESS_FILES_POOL"] = str(resolve(cfg.stack.files_pool))
    env["HARNESS_FILES_NGINX_CONF"] = str(resolve(cfg.stack.nginx_conf))
    bucket = OmegaConf.select(cfg, "storage.bucket")
    if bucket:
        env["HARNESS_S3_BUCKET"] = str(bucket)
    return {k: os.environ.get(k, v) for k, v in env.items()}


def render_nginx_conf(cfg: DictConfig) -> str:
    """The file server's nginx config rendered for the container."""
    # The template is part of this package: a failing import is breakage, never a quiet skip.
    from harness.files import nginx

    return str(nginx.render_container(cfg.files.server.nginx))


def _stack(cfg: DictConfig, gpu: bool = False, env: dict[str, str] | None = None):  # noqa: ANN202
    from harness.services.docker import ComposeStack

    return ComposeStack(
        file=resolve(cfg.stack.compose_file),
        project=str(cfg.stack.project),
        env=env or stack_env(cfg),
        profiles=[str(cfg.stack.gpu_profile)] if gpu else [],
        timeout=float(cfg.stack.command_timeout_s),
    )


def _require_engine(cfg: DictConfig) -> None:
    from harness.services.docker import compose_cli, engine_problem

    problem = engine_problem(float(cfg.stack.docker_ping_timeout_s))
    if problem:
        raise HarnessError(f"stack: {problem}")
    compose_cli()  # raises a one-line error when no compose CLI exists


def preflight(cfg: DictConfig, services: list[str]) -> dict[str, str]:
    """Check what the chosen services mount, render the nginx config; the compose environment."""
    from harness.services.docker import load_compose

    env = stack_env(cfg)
    known = set(load_compose(resolve(cfg.stack.compose_file))["services"])
    unknown = sorted(set(services) - known)
    if unknown:
        raise HarnessError(
            f"stack: no service {', '.join(unknown)} (have: {', '.join(sorted(known))})"
        )
    wanted = set(services) or known
    if wanted & {"triton", "triton-gpu"}:
        repo = Path(env["HARNESS_MODEL_REPOSITORY"])
        if not any(repo.glob("*/config.pbtxt")):
            raise HarnessError(f"stack: no model in {repo} (no */config.pbtxt)")
    if "files" in wanted:
        pool = Path(env["HARNESS_FILES_POOL"])
        if not (pool / "SHA256SUMS").is_file():
            raise HarnessError(
                f"stack: {pool} has no SHA256SUMS: build the pool first "
                f"(`harness files build {pool}`) or leave `files` out (--services triton,mlflow)"
            )
        if "HARNESS_FILES_NGINX_CONF" not in os.environ:
            rendered = render_nginx_conf(cfg)
            out = resolve(cfg.stack.rendered_nginx_conf)
            with atomic_open(out, "w") as fh:
                fh.write(rendered)
            env["HARNESS_FILES_NGINX_CONF"] = str(out)
    return env


def _up(cfg: DictConfig, args: argparse.Namespace) -> int:
    _require_engine(cfg)
    services = list(args.services)
    env = preflight(cfg, services)
    stack = _stack(cfg, args.gpu, env)
    print(f"stack: starting {', '.join(services) or 'all services'} (first start pulls images)")
    stack.up(
        services,
        wait_timeout=float(cfg.stack.up_timeout_s),
        pull_timeout=float(cfg.stack.pull_timeout_s),
    )
    for svc, ports in cfg.stack.ports.items():
        if services and svc not in services:
            continue
        for label, spec in ports.items():
            print(f"{svc:8s} {label:8s} http://{cfg.stack.host}:{env[str(spec.env)]}")
    return 0


def _status(cfg: DictConfig) -> int:
    _require_engine(cfg)
    rows = _stack(cfg).ps()
    if not rows:
        print(f"stack {cfg.stack.project}: not running")
        return 1
    for r in rows:
        pubs = sorted(
            {f"{p['PublishedPort']}->{p['TargetPort']}" for p in r.get("Publishers") or [] if p}
            - {"0->0"}
        )
        state = r.get("State", "?")
        health = r.get("Health") or "-"
        print(f"{r.get('Service', '?'):12s} {state:10s} {health:10s} {' '.join(pubs)}")
    unhealthy = [r for r in rows if r.get("Health") not in (None, "", "healthy")]
    return 1 if unhealthy else 0


def _check(cfg: DictConfig) -> int:
    from harness.deploy.compose import compose_problems
    from harness.deploy.model_configs import check_repository, unconfigured_models
    from harness.deploy.workflows import actionlint_problems, schema_problems
    from harness.errors import ServiceError
    from harness.services.docker import ComposeStack, compose_cli

    compose_file = resolve(cfg.stack.compose_file)
    workflows = [resolve(w) for w in cfg.stack.check.workflows]
    results: list[tuple[str, list[str] | None]] = [
        ("compose schema", schema_problems(cfg.stack.check.compose_schema, [compose_file])),
        ("compose policy", compose_problems(cfg, compose_file)),
        ("workflow schema", schema_problems(cfg.stack.check.workflow_schema, workflows)),
        ("actionlint", actionlint_problems(workflows)),
    ]
    try:
        compose_cli()
        ComposeStack(compose_file, project=str(cfg.stack.project)).config()
        results.append(("compose config", []))
    except ServiceError as exc:
        results.append(("compose config", [str(exc)]))
    rendered = render_nginx_conf(cfg)
    committed = resolve(cfg.stack.nginx_conf)
    same = committed.is_file() and committed.read_text(encoding="utf-8") == rendered
    stale = f"{committed} is stale: run `harness stack nginx-conf`"
    results.append(("nginx conf", [] if same else [stale]))
    repo = resolve(cfg.paths.model_repository)
    bare = unconfigured_models(repo)
    results.append(("model folders", [f"{m}: no config.pbtxt" for m in bare]))
    for mc in check_repository(repo, cfg):
        results.append((f"model {mc.name}", mc.problems))
        for note in mc.notes:
            print(f"  note: {mc.name}: {note}")
    bad = 0
    for name, problems in results:
        if problems is None:
            print(f"SKIP  {name} (tool not installed)")
        elif problems:
            bad += 1
            print(f"FAIL  {name}")
            for p in problems:
                print(f"      {p}")
        else:
            print(f"ok    {name}")
    return 1 if bad else 0


def _nginx_conf(cfg: DictConfig) -> int:
    rendered = render_nginx_conf(cfg)
    out = resolve(cfg.stack.nginx_conf)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out, "w") as fh:
        fh.write(rendered)
    print(f"wrote {out}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run one stack action."""
    cfg = compose(args.overrides)
    if args.action == "up":
        return _up(cfg, args)
    if args.action == "down":
        _require_engine(cfg)
        _stack(cfg, gpu=True).down(volumes=args.volumes)
        print(f"stack {cfg.stack.project}: down")
        return 0
    if args.action == "status":
        return _status(cfg)
    if args.action == "check":
        return _check(cfg)
    return _nginx_conf(cfg)
