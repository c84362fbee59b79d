"""Render the nginx config (template in this package) for a local run or for a container."""

from __future__ import annotations

import os
import pwd
import re
import shutil
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

TEMPLATE = "nginx.conf.tmpl"


_TUNING_KEYS = (
    "worker_processes",
    "worker_connections",
    "keepalive_timeout",
    "keepalive_requests",
    "max_header_size",
    "max_ranges",
    "backlog",
    "error_log_level",
)


def nginx_binary(name: str = "nginx") -> str | None:
    """Path of the nginx executable (PATH, then /usr/sbin where Debian puts it), or None."""
    found = shutil.which(name)
    if found:
        return found
    for d in ("/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin"):
        cand = Path(d) / name
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    return None


def _substitute(**values: object) -> str:
    """Fill the {{name}} placeholders of the template; nginx's own $variables stay untouched."""
    text = resources.files("harness.files").joinpath(TEMPLATE).read_text(encoding="utf-8")

    def value(m: re.Match[str]) -> str:
        return str(values[m.group(1)])

    return re.sub(r"\{\{(\w+)\}\}", value, text)


def _quote(value: str | os.PathLike[str]) -> str:
    """Quote a path for nginx; characters that would break the config are refused."""
    s = str(value)
    if any(c in s for c in '"\\;{}\n\r$'):
        raise HarnessError(f"path {s!r} has characters nginx configs cannot hold safely")
    return f'"{s}"'


def render(
    root: str | os.PathLike[str],
    listen: str,
    runtime_dir: str | os.PathLike[str],
    ncfg: Mapping[str, Any],
) -> str:
    """nginx.conf serving `root` read-only on `listen` with pid/temp/logs under `runtime_dir`."""
    runtime = Path(runtime_dir)
    root_q = _quote(Path(root).resolve())
    user_line = ""
    if os.geteuid() == 0:
        # A root master would switch workers to `nobody`, who may not read a private pool
        # (pytest's tmp dirs are 0700): run workers as the pool's owner instead.
        user = ncfg.get("user") or pwd.getpwuid(Path(root).stat().st_uid).pw_name
        user_line = f"user {user};"
    access = _quote(runtime / "access.log") if ncfg["access_log"] else "off"
    return _substitute(
        **_tuning(ncfg),
        pid_path=_quote(runtime / "nginx.pid"),
        error_log=_quote(runtime / "error.log"),
        temp_dir=_quote(runtime / "temp").strip('"'),  # a prefix of several paths: no quotes
        access_log=access,
        user_line=user_line,
        listen=listen,
        root=root_q,
    )


def _tuning(ncfg: Mapping[str, Any]) -> dict[str, Any]:
    """The settings both renderings take from the config unchanged."""
    return {key: ncfg[key] for key in _TUNING_KEYS}


def render_container(ncfg: Mapping[str, Any]) -> str:
    """nginx.conf for the official nginx image: pool mounted read-only at container_root."""
    access = "/dev/stdout" if ncfg["access_log"] else "off"
    return _substitute(
        **_tuning(ncfg),
        pid_path="/tmp/nginx.pid",
        error_log="/dev/stderr",
        temp_dir="/tmp",
        access_log=access,
        user_line="",
        listen=str(ncfg["container_port"]),
        root=_quote(ncfg["container_root"]),
    )


def prepare_runtime(runtime_dir: str | os.PathLike[str]) -> Path:
    """Create the prefix/temp folders nginx writes to (it will not create them itself)."""
    runtime = Path(runtime_dir)
    for sub in ("temp/client_body", "temp/proxy", "temp/fastcgi", "temp/uwsgi", "temp/scgi"):
        (runtime / sub).mkdir(parents=True, exist_ok=True)
    return runtime
