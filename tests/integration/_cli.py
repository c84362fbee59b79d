"""Run the harness CLI in a subprocess, as a user would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from harness.paths import ROOT


def ctrl_c_as_from_a_terminal() -> None:
    """Popen preexec_fn: SIGINT at its default disposition, as in a terminal's foreground job.

    A runner started in the background (`nohup make test &`) passes SIGINT on as ignored, and
    Python then installs no Ctrl-C handler at all: a Ctrl-C test would test the launch instead.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def harness(*args: str, timeout: float = 300, env: dict[str, str] | None = None):
    """`python -m harness ARGS` from the repository root; returns the CompletedProcess."""
    full_env = dict(os.environ)
    full_env.pop("MLFLOW_TRACKING_URI", None)
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """Assert exit 0, showing stderr otherwise."""
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return proc
