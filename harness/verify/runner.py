"""Run one kind of conformance checks through pytest and summarise them one line per check.

`harness verify KIND` and the integration tier call `run_checks`; a user's CI may instead run
`pytest --pyargs harness.conformance --verify-...` directly, which executes the same modules.
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Sequence
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

KINDS = ("inference", "embeddings", "files", "s3")
PACKAGE_DIR = Path(__file__).resolve().parent.parent / "conformance"


@dataclass
class CheckResult:
    """One check's outcome: passed, failed or skipped, with a one-line reason."""

    name: str
    outcome: str
    message: str = ""
    seconds: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunResult:
    """Every check of one run, in the order they ran."""

    kind: str
    target: str
    checks: list[CheckResult]
    seconds: float
    exit_code: int

    @property
    def failed(self) -> list[CheckResult]:
        """The failed checks."""
        return [c for c in self.checks if c.outcome == "failed"]

    @property
    def ok(self) -> bool:
        """True when every check ran and none failed."""
        return self.exit_code == 0 and not self.failed and bool(self.checks)

    def counts(self) -> dict[str, int]:
        """passed/failed/skipped counts."""
        out = {"passed": 0, "failed": 0, "skipped": 0}
        for c in self.checks:
            out[c.outcome] = out.get(c.outcome, 0) + 1
        return out

    def metrics(self) -> dict[str, Any]:
        """All measurements the checks recorded, by name."""
        merged: dict[str, Any] = {}
        for c in self.checks:
            merged.update(c.metrics)
        return merged


def one_line(text: str, limit: int = 400) -> str:
    """The first meaningful line of a failure text, without pytest's decorations."""
    for line in str(text).strip().splitlines():
        line = line.strip()
        if line.startswith("E "):
            line = line[2:].strip()
        if line.startswith(("Failed: ", "AssertionError: ")):
            line = line.split(": ", 1)[1]
        if line and not line.startswith(("Traceback", "def ", "@", ">")):
            return line[:limit]
    return ""


def check_name(nodeid: str) -> str:
    """`test_outputs_match[seeded]` from a node id, without the module and the `test_` prefix."""
    name = nodeid.split("::")[-1]
    return name[5:] if name.startswith("test_") else name


class _Collector:
    """pytest plugin object that records each test's outcome as a CheckResult."""

    def __init__(self) -> None:
        self.results: dict[str, CheckResult] = {}
        self.order: list[str] = []

    def _result(self, nodeid: str) -> CheckResult:
        if nodeid not in self.results:
            self.results[nodeid] = CheckResult(check_name(nodeid), "passed")
            self.order.append(nodeid)
        return self.results[nodeid]

    def pytest_runtest_logreport(self, report: Any) -> None:
        res = self._result(report.nodeid)
        res.seconds += float(report.duration)
        for key, value in report.user_properties:
            if str(key).startswith("metric:"):
                res.metrics[str(key)[7:]] = value
        if report.skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
            res.outcome, res.message = "skipped", str(reason).removeprefix("Skipped: ")
        elif report.failed:
            res.outcome = "failed"
            msg = getattr(report.longrepr, "reprcrash", None)
            res.message = one_line(msg.message if msg else str(report.longrepr))
            if report.when != "call" and res.message:
                res.message = f"({report.when}) {res.message}"

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            res = self._result(report.nodeid or "collection")
            res.outcome, res.message = "failed", one_line(str(report.longrepr))

    def checks(self) -> list[CheckResult]:
        return [self.results[n] for n in self.order]


def run_checks(
    kind: str,
    options: dict[str, Any],
    *,
    target: str = "",
    select: str | None = None,
    extra_args: Sequence[str] = (),
    quiet: bool = True,
) -> RunResult:
    """Run harness.conformance.test_<kind> with --verify-* `options`; return every outcome."""
    import pytest

    if kind not in KINDS:
        raise HarnessError(f"unknown kind of checks '{kind}' (choose {', '.join(KINDS)})")
    args = [
        "-c",
        str(PACKAGE_DIR / "pytest.ini"),
        "--rootdir",
        str(PACKAGE_DIR),
        "-q",
        "--no-header",
        "-p",
        "no:cacheprovider",
        str(PACKAGE_DIR / f"test_{kind}.py"),
    ]
    for name, value in options.items():
        if value is not None and value is not False:
            args.append(f"--{name}={value}")
    if select:
        args += ["-k", select]
    args += list(extra_args)
    collector = _Collector()
    start = time.perf_counter()
    out = io.StringIO()
    if quiet:
        with redirect_stdout(out):
            code = pytest.main(args, plugins=[collector])
    else:
        code = pytest.main(args, plugins=[collector])
    result = RunResult(kind, target, collector.checks(), time.perf_counter() - start, int(code))
    if int(code) in (2, 3, 4) and not result.failed:
        tail = out.getvalue().strip().splitlines()[-5:]
        raise HarnessError(
            f"the {kind} checks could not run (pytest exit {int(code)}): " + " | ".join(tail)
        )
    return result


def print_summary(result: RunResult, stream: Any = None) -> None:
    """One line per check (failures name what differs), then the counts and the time taken."""
    stream = stream or sys.stdout
    print(f"harness verify {result.kind}: {result.target}", file=stream)
    for c in result.checks:
        mark = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}.get(c.outcome, c.outcome)
        tail = f": {c.message}" if c.message and c.outcome != "passed" else ""
        print(f"  {mark} {c.name}{tail}", file=stream)
    n = result.counts()
    print(
        f"{n['passed']} passed, {n['failed']} failed, {n['skipped']} skipped "
        f"in {result.seconds:.1f}s",
        file=stream,
    )
