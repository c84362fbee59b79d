"""Run the harness CLI in a subprocess, as a user would."""

from __future__ import annotations

import contextlib
import io
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO

from harness.paths import ROOT


def ctrl_c_as_from_a_terminal() -> None:
    """Popen preexec_fn: SIGINT at its default disposition, as in a terminal's foreground job.

    A runner started in the background (`nohup make test &`) passes SIGINT on as ignored, and
    Python then installs no Ctrl-C handler at all: a Ctrl-C test would test the launch instead.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def child_env(extra: dict[str, str] | None = None, drop: Sequence[str] = ()) -> dict[str, str]:
    """os.environ for a child: the repository importable, no MLFLOW_TRACKING_URI nor `drop`."""
    env = dict(os.environ)
    for name in ("MLFLOW_TRACKING_URI", *drop):
        env.pop(name, None)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


def harness(*args: str, timeout: float = 300, env: dict[str, str] | None = None):
    """`python -m harness ARGS` from the repository root; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=ROOT,
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """Assert exit 0, showing stderr otherwise."""
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return proc


def lines_until(
    stream: IO, done: Callable[[str], bool], timeout: float, what: str = "output"
) -> list[str]:
    """Lines read from `stream` up to and including the first for which `done` is true.

    A reader thread does the blocking reads, so a child that never prints the line (or never
    closes its output) fails the test after `timeout` seconds instead of hanging it. The thread
    stops at that line or at end of file (the caller kills the child on failure).
    """
    found: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for raw in iter(stream.readline, "" if isinstance(stream, io.TextIOBase) else b""):
            line = raw if isinstance(raw, str) else raw.decode(errors="replace")
            found.put(line)
            if done(line):
                return
        found.put(None)  # end of file before the line

    threading.Thread(target=read, daemon=True).start()
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = found.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no {what} line within {timeout:.0f} s:\n{''.join(lines)}")
        if line is None:
            raise AssertionError(f"{what} ended before the expected line:\n{''.join(lines)}")
        lines.append(line)
        if done(line):
            return lines


def conformance_pytest(
    *options: str, cwd: str | os.PathLike[str], env: dict[str, str] | None = None, timeout=300
):
    """`pytest --pyargs harness.conformance OPTIONS` from `cwd`, as in a user's own CI."""
    argv = [sys.executable, "-m", "pytest", "--pyargs", "harness.conformance"]
    return subprocess.run(
        [*argv, "-p", "no:cacheprovider", "-q", *options],
        cwd=cwd,
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass
class Serving:
    """A running `harness serve` child, what it printed up to its Ctrl-C line, its HTTP URL."""

    proc: subprocess.Popen
    text: str
    http: str

    def interrupt(self, timeout: float) -> str:
        """Ctrl-C, as a user stops it: the rest of its output, after a clean exit 0."""
        self.proc.send_signal(signal.SIGINT)
        rest = self.proc.communicate(timeout=timeout)[0]
        assert self.proc.returncode == 0, rest
        return rest


@contextlib.contextmanager
def harness_serve(
    *args: str,
    timeout: float,
    env: dict[str, str] | None = None,
    drop: Sequence[str] = (),
    cwd: str | os.PathLike[str] | None = None,
) -> Iterator[Serving]:
    """`python -m harness serve ARGS` until it prints its URLs; killed if still running after."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "serve", *args],
        cwd=cwd,
        env=child_env(env, drop),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=ctrl_c_as_from_a_terminal,
    )
    try:
        lines = lines_until(proc.stdout, lambda ln: "Ctrl-C" in ln, timeout=timeout, what="serve")
        text = "".join(lines)
        http = re.search(r"HTTP\s+(http://\S+)", text)
        assert http, f"serve printed no HTTP URL:\n{text}"
        yield Serving(proc, text, http.group(1))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
