"""The Markdown report of one `harness verify` run: every check, then the measurements."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

from harness.io import atomic_open
from harness.verify.runner import RunResult

_MARK = {"passed": "pass", "failed": "**FAIL**", "skipped": "skip"}


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render(result: RunResult) -> str:
    """Markdown text of a run."""
    n = result.counts()
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# harness verify {result.kind}",
        "",
        f"- target: `{result.target}`",
        f"- when: {when}; took {result.seconds:.1f} s",
        f"- result: **{'PASS' if result.ok else 'FAIL'}**: {n['passed']} passed, "
        f"{n['failed']} failed, {n['skipped']} skipped",
        "",
        "| check | result | detail |",
        "|---|---|---|",
    ]
    for c in result.checks:
        lines.append(
            f"| {_cell(c.name)} | {_MARK.get(c.outcome, c.outcome)} | {_cell(c.message)} |"
        )
    metrics = result.metrics()
    if metrics:
        lines += ["", "## Measurements", "", "| what | value |", "|---|---:|"]
        for key, value in metrics.items():
            shown = f"{value:,.3f}" if isinstance(value, float) else str(value)
            lines.append(f"| {_cell(key)} | {shown} |")
    return "\n".join(lines) + "\n"


def write(result: RunResult, path: str | Path) -> Path:
    """Write the report atomically (no partial file on failure)."""
    path = Path(path)
    with atomic_open(path) as fh:
        fh.write(render(result))
    return path
