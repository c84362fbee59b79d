"""Files against JSON schemas (check-jsonschema) and GitHub workflows through actionlint.

Offline: each check returns one line per problem (empty: fine)."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from harness.paths import ROOT


def _tool(name: str) -> str | None:
    """A console script from PATH or from this interpreter's bin (the venv's dev extras)."""
    found = shutil.which(name)
    if found:
        return found
    cand = Path(sys.executable).parent / name
    return str(cand) if cand.is_file() and os.access(cand, os.X_OK) else None


def schema_problems(schema: str, files: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Validate files against a check-jsonschema built-in schema (vendored: no network)."""
    # In-process (the same click command the CLI and the pre-commit hook run): a subprocess per
    # call would cost an interpreter start and the jsonschema imports each time.
    from check_jsonschema import main as cli

    buf = io.StringIO()
    args = ["--builtin-schema", schema, *map(str, files)]
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        try:
            rc = cli.main(args, standalone_mode=False)
        except SystemExit as exc:
            rc = exc.code
        except Exception as exc:  # a file that is not YAML/JSON at all, say
            print(f"{type(exc).__name__}: {exc}")
            rc = 1
    if not rc:
        return []
    lines = [ln.strip() for ln in buf.getvalue().splitlines() if ln.strip()]
    errors = [ln for ln in lines if "::" in ln] or lines[-3:]
    return [f"{schema}: {ln}" for ln in errors]


def actionlint_problems(files: Sequence[str | os.PathLike[str]]) -> list[str] | None:
    """actionlint's findings on the workflows; None when actionlint is not installed."""
    exe = _tool("actionlint")
    if exe is None:
        return None
    proc = subprocess.run(
        [exe, "-oneline", "-no-color", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    if proc.returncode == 0:
        return []
    lines = [ln.strip() for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    return [f"actionlint: {ln}" for ln in lines] or [f"actionlint: exit {proc.returncode}"]
