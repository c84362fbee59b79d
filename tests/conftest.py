"""Per-tier test time-outs (pytest-timeout): a hung test fails with its stack, never blocks CI.

The unit tier uses pytest-timeout's own `timeout` ini value; integration and perf tests get the
budgets `timeout_integration` / `timeout_perf` from pyproject.toml as a `timeout` marker, unless
the test sets its own. The budget covers the test's fixtures too (a Triton start, a conversion).
"""

from __future__ import annotations

import pytest

TIERS = ("perf", "integration")  # a perf test that is also marked integration gets perf's budget


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the per-tier budgets read from [tool.pytest.ini_options]."""
    for tier in TIERS:
        parser.addini(f"timeout_{tier}", f"per-test time-out (s) of the {tier} tier", default="0")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give each integration/perf test its tier's budget (0 = pytest-timeout's default)."""
    for item in items:
        if item.get_closest_marker("timeout") is not None:
            continue
        tier = next((t for t in TIERS if item.get_closest_marker(t) is not None), None)
        budget = float(config.getini(f"timeout_{tier}")) if tier else 0.0
        if budget > 0:
            item.add_marker(pytest.mark.timeout(budget))
