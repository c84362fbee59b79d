"""The CLI: every registered command explains itself; errors are one line and non-zero."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.cli import COMMANDS, main


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=120
    )


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: harness " + command)
    assert len(out.splitlines()) > 3


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: harness" in capsys.readouterr().out


def test_unknown_command_is_rejected() -> None:
    res = run_cli("no-such-command")
    assert res.returncode != 0
    assert "invalid choice" in res.stderr


def test_bad_override_is_one_line_and_nonzero() -> None:
    res = run_cli("demo", "--only", "kernels", "no_such_group.key=1")
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("harness: error: invalid configuration override")
    assert "Traceback" not in res.stderr


def test_unknown_demo_step_is_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--only", "nonsense"]) == 2
    assert "unknown demo step(s): nonsense" in capsys.readouterr().err
