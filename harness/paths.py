"""Where things live: the project root, the configs, the fixtures, and path resolution.

In a source checkout (or an editable install) the root is the repository and `configs/` there
is the single source of truth. Installed from a wheel, the package carries copies of `configs/`
and `fixtures/` (made at build time, see setup.py) under `harness/_defaults/`, and relative
paths (work folder, reports) are taken from the current directory, where the user runs it.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULTS_DIR = PACKAGE_DIR / "_defaults"


def is_checkout(path: Path) -> bool:
    """True for the project's source tree (configs/ next to pyproject.toml)."""
    return (path / "configs" / "config.yaml").is_file() and (path / "pyproject.toml").is_file()


_SOURCE = PACKAGE_DIR.parent
CHECKOUT = is_checkout(_SOURCE)
ROOT = Path(os.environ.get("HARNESS_ROOT") or (_SOURCE if CHECKOUT else Path.cwd()))
CONFIG_DIR = Path(
    os.environ.get("HARNESS_CONFIG_DIR")
    or (_SOURCE / "configs" if CHECKOUT else DEFAULTS_DIR / "configs")
)
FIXTURES_DIR = _SOURCE / "fixtures" if CHECKOUT else DEFAULTS_DIR / "fixtures"


def resolve(path: str | os.PathLike[str]) -> Path:
    """Resolve a config path: absolute stays, relative is taken from the project root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else ROOT / p
