"""`harness stack` and the compose helpers: what works without a Docker engine, for real."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.commands.stack import stack_env
from harness.config import compose
from harness.paths import resolve
from harness.services import docker as dk
from harness.services.base import docker_available

CFG = compose()
NO_ENGINE = not docker_available()


@pytest.mark.skipif(not NO_ENGINE, reason="a Docker engine answers here")
@pytest.mark.parametrize("action", ["up", "down", "status"])
def test_stack_without_engine_is_one_clear_line(action: str, capsys) -> None:  # noqa: ANN001
    """No engine: a non-zero exit and one line naming the problem, no traceback."""
    assert main(["stack", action]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("harness: error: stack: no Docker engine answers at ")


def test_stack_check_passes_on_this_checkout(capsys) -> None:  # noqa: ANN001
    """`harness stack check` validates every deployment file offline and finds nothing."""
    rc = main(["stack", "check"])
    out = capsys.readouterr().out
    assert rc == 0, out
    for name in ("compose schema", "compose policy", "workflow schema"):
        assert f"ok    {name}" in out


def test_stack_check_fails_on_a_broken_compose_file(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """A compose file with a floating tag makes `stack check` fail and name the service."""
    text = resolve(CFG.stack.compose_file).read_text()
    bad = tmp_path / "docker-compose.yml"
    bad.write_text(text.replace("nginx:1.27.4-alpine", "nginx:latest"))
    rc = main(["stack", "check", f"stack.compose_file={bad}"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "FAIL  compose policy" in out and "'files'" in out and "latest" in out


def test_stack_env_comes_from_configs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ports, paths and bucket go to compose as HARNESS_* variables; the environment wins."""
    monkeypatch.delenv("HARNESS_TRITON_HTTP_PORT", raising=False)
    env = stack_env(compose(["stack.ports.triton.http.default=18000", "++storage.bucket=bkt"]))
    assert env["HARNESS_TRITON_HTTP_PORT"] == "18000"
    assert env["HARNESS_S3_BUCKET"] == "bkt"
    assert Path(env["HARNESS_MODEL_REPOSITORY"]) == resolve(CFG.paths.model_repository)
    monkeypatch.setenv("HARNESS_TRITON_HTTP_PORT", "28000")
    assert stack_env(CFG)["HARNESS_TRITON_HTTP_PORT"] == "28000"


@pytest.mark.parametrize(
    "text,env,expected",
    [
        ("${A:-d}", {}, "d"),
        ("${A:-d}", {"A": ""}, "d"),
        ("${A-d}", {"A": ""}, ""),
        ("${A-d}", {"A": "x"}, "x"),
        ("${A}", {}, ""),
        ("$A/b", {"A": "x"}, "x/b"),
        ("$$A", {"A": "x"}, "$A"),
        ("a$${B}c", {}, "a${B}c"),
        ("http://${U:-u}:${P:-p}@h", {"P": "s"}, "http://u:s@h"),
    ],
)
def test_interpolate(text: str, env: dict[str, str], expected: str) -> None:
    """The compose interpolation rules the policy checks rely on."""
    assert dk.interpolate(text, env) == expected


def test_interpolate_required_variable() -> None:
    """`${VAR:?message}` without VAR is an error naming it."""
    with pytest.raises(dk.ServiceError, match="TOKEN"):
        dk.interpolate("${TOKEN:?set it}", {})


@pytest.mark.parametrize(
    "ports,expected",
    [
        (["8000:8000"], {8000: 8000}),
        (["127.0.0.1:9000:9000/tcp"], {9000: 9000}),
        (["5000"], {5000: None}),
        ([{"target": 80, "published": "8080"}], {80: 8080}),
        ([{"target": 80}], {80: None}),
    ],
)
def test_published_ports(ports: list, expected: dict) -> None:
    """Short and long port syntaxes: container port -> host port."""
    assert dk.published_ports({"ports": ports}) == expected


def test_broken_compose_file_is_one_clear_error(tmp_path: Path) -> None:
    """Unreadable or non-YAML compose files raise ServiceError naming the file."""
    with pytest.raises(dk.ServiceError, match="cannot read"):
        dk.load_compose(tmp_path / "missing.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text("services: [\n")
    with pytest.raises(dk.ServiceError, match="not valid YAML"):
        dk.load_compose(bad)


def test_container_spec_mirrors_the_compose_service(tmp_path: Path) -> None:
    """A testcontainers backend built from the spec runs what compose runs."""
    triton = dk.container_spec("triton", env={})
    assert triton.image == image_as_written("triton")
    assert "--model-repository=/models" in triton.command
    assert triton.ports == [8000, 8001, 8002]
    assert triton.binds == [(str(resolve(CFG.paths.model_repository)), "/models", "ro")]
    assert triton.shm_size == "1g" and triton.healthcheck[0] == "CMD"
    assert triton.ulimits == [("memlock", -1, -1), ("stack", 67108864, 67108864)]
    moved = triton.bind("/models", tmp_path)
    assert (
        moved.binds == [(str(tmp_path.resolve()), "/models", "ro")] and moved.image == triton.image
    )
    assert triton.require_ports(8000, 8002) is triton
    mlflow = dk.container_spec("mlflow", env={})
    assert mlflow.tmpfs == ["/mlflow"] and mlflow.binds == []  # named volume -> tmpfs
    minio = dk.container_spec("minio", env={"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"})
    assert minio.environment == {"MINIO_ROOT_USER": "k", "MINIO_ROOT_PASSWORD": "s"}
    files = dk.container_spec("files", env={}, binds={"/usr/share/nginx/html": tmp_path})
    assert (str(tmp_path), "/usr/share/nginx/html", "ro") in files.binds
    init = dk.container_spec("minio-init", env={})
    assert init.entrypoint == ["/bin/sh", "-ec"] and "$HARNESS_S3_BUCKET" in init.command[0]


@pytest.mark.skipif(not NO_ENGINE, reason="a Docker engine answers here")
def test_container_spec_without_engine_is_a_clear_error() -> None:
    """Building the testcontainer needs an engine: without one, one ServiceError line."""
    with pytest.raises(dk.ServiceError, match="minio: no Docker engine"):
        dk.container_spec("minio", env={}).testcontainer()


def image_as_written(service: str) -> str:
    """The image as written in docker-compose.yml."""
    return dk.load_compose(resolve(CFG.stack.compose_file))["services"][service]["image"]


def test_preflight_names_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before any container starts: no models, no pool manifest, unknown service -> one line."""
    from harness.commands.stack import preflight
    from harness.errors import HarnessError

    for var in ("HARNESS_MODEL_REPOSITORY", "HARNESS_FILES_POOL", "HARNESS_FILES_NGINX_CONF"):
        monkeypatch.delenv(var, raising=False)
    repo, pool = tmp_path / "repo", tmp_path / "pool"
    (repo / "m" / "1").mkdir(parents=True)
    pool.mkdir()
    cfg = compose(
        [
            f"paths.model_repository={repo}",
            f"stack.files_pool={pool}",
            f"stack.rendered_nginx_conf={tmp_path / 'nginx.conf'}",
        ]
    )
    with pytest.raises(HarnessError, match="no model in"):
        preflight(cfg, [])
    (repo / "m" / "config.pbtxt").write_text('name: "m"')
    with pytest.raises(HarnessError, match="has no SHA256SUMS"):
        preflight(cfg, [])
    with pytest.raises(HarnessError, match="no service trition"):
        preflight(cfg, ["trition"])
    assert preflight(cfg, ["minio", "mlflow"])["HARNESS_FILES_POOL"] == str(pool)
    (pool / "SHA256SUMS").write_text("")
    env = preflight(cfg, [])
    assert env["HARNESS_MODEL_REPOSITORY"] == str(repo)
