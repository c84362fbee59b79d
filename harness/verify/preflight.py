"""Before any check runs: is the target there at all? An unreachable one is one line, exit 2."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.urls import host_port


def reachable(url: str, timeout: float = 5.0) -> None:
    """Open (and close) a TCP connection to `url`, or raise a one-line HarnessError."""
    host, port = host_port(url)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise HarnessError(f"cannot reach {url} ({host}:{port}): {reason}") from exc


def _file(path: Any, what: str) -> None:
    if path and not str(path).startswith(("http://", "https://")) and not Path(path).is_file():
        raise HarnessError(f"{what} '{path}' does not exist or is not a file")


def check(kind: str, options: dict[str, Any]) -> None:
    """Fail fast, in one line, on a missing reference file or an unreachable endpoint."""
    if kind == "inference":
        for name, what in (
            ("verify-onnx", "ONNX file"),
            ("verify-golden", "golden file"),
            ("verify-config", "config"),
            ("verify-targets", "targets file"),
        ):
            _file(options.get(name), what)
        if options.get("verify-url"):
            reachable(options["verify-url"])
    elif kind == "embeddings":
        _file(options.get("verify-sentences"), "sentences file")
        reachable(options["verify-embeddings-url"])
    elif kind == "files":
        _file(options.get("verify-manifest"), "manifest")
        reachable(options["verify-files-url"])
        from harness.verify.files import open_target

        # A manifest that is not one (an HTML page, binary junk) is one line here, not a
        # setup error repeated by every check.
        open_target(
            options["verify-files-url"], options.get("verify-manifest"), options.get("verify-pool")
        )
    elif kind == "s3":
        from harness.verify import s3

        reachable(options["verify-s3-endpoint"])
        s3.preflight(options["verify-s3-endpoint"], options["verify-s3-bucket"], *s3.configs())
