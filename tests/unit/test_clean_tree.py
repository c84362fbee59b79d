"""A run leaves the tree clean: reports go to a git-ignored folder; `make test` checks the tree."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from harness.config import compose
from harness.paths import ROOT, resolve

SCRIPT = ROOT / "scripts" / "tree-state.sh"


def _git(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)


def _report_paths(cfg) -> list[Path]:
    return [
        resolve(cfg.triton.tune.report),
        resolve(cfg.triton.tune.plot),
        resolve(cfg.roofline.output.report),
        resolve(cfg.embed.reports_dir) / "embeddings.md",
        resolve(cfg.kernels.benchmark.report),
    ]


@pytest.fixture
def checkout() -> None:
    if shutil.which("git") is None or _git("rev-parse").returncode != 0:
        pytest.skip("not a git checkout")


def test_reports_go_to_an_ignored_folder_by_default(checkout) -> None:
    cfg = compose(["paths.work_dir=.work"])  # the default, whatever HARNESS_WORK_DIR says
    for path in _report_paths(cfg):
        rel = path.relative_to(ROOT)
        assert _git("check-ignore", "-q", "--no-index", str(rel)).returncode == 0, rel
        assert not _git("ls-files", str(rel)).stdout, f"{rel} is tracked"


def test_make_reports_writes_the_committed_reports(checkout) -> None:
    """`make reports` passes paths.reports_dir=reports: the committed reference files."""
    assert "paths.reports_dir=$(REPORTS)" in (ROOT / "Makefile").read_text()
    cfg = compose(["paths.reports_dir=reports"])
    for path in _report_paths(cfg)[:4]:  # the kernel benchmark table is not a reference report
        assert path.parent == ROOT / "reports"
    tracked = _git("ls-files", "reports").stdout.split()
    assert "reports/triton.md" in tracked and "reports/roofline.md" in tracked


def test_tree_state_sees_new_changed_and_rewritten_files(tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("no git")
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy2(SCRIPT, repo / "scripts" / SCRIPT.name)
    (repo / ".gitignore").write_text(".work/\n")
    (repo / "a.md").write_text("committed\n")
    for args in (
        ["init", "-q"],
        ["add", "."],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"],
    ):
        assert _git(*args, cwd=repo).returncode == 0

    def state() -> str:
        return subprocess.run(
            ["bash", str(repo / "scripts" / SCRIPT.name)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    assert state() == ""
    (repo / ".work").mkdir()
    (repo / ".work" / "report.md").write_text("ignored\n")
    assert state() == ""  # ignored output is fine
    (repo / "a.md").write_text("this machine's numbers\n")
    dirty = state()
    assert dirty.startswith(" M a.md ")
    (repo / "a.md").write_text("other numbers\n")  # already dirty, rewritten: still seen
    assert state() != dirty and state().startswith(" M a.md ")
    (repo / "new.csv").write_text("x\n")
    assert "?? new.csv " in state()
