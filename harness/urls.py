"""Addresses as users type them: `http://host:port`, `host:port`, a gRPC `host:port`."""

from __future__ import annotations

from urllib.parse import urlsplit

from harness.errors import HarnessError


def host_port(url: str, default_port: int = 80) -> tuple[str, int]:
    """(host, port) of `http://host:port/...` or `host:port`; a clear error when it is neither."""
    text = url.strip()
    parts = urlsplit(text if "://" in text else f"//{text}")
    if parts.scheme not in ("", "http", "https"):
        raise HarnessError(f"'{url}' is not an http(s) URL or host:port")
    try:
        port = parts.port
    except ValueError as exc:
        raise HarnessError(f"'{url}' has an invalid port") from exc
    if not parts.hostname:
        raise HarnessError(f"'{url}' names no host")
    if port is None and "://" not in text:  # the same rule as base_url: a bare word is a typo
        raise HarnessError(f"'{url}' is not an http(s) URL or host:port (no port given)")
    if port is None:
        port = 443 if parts.scheme == "https" else default_port
    return parts.hostname, port


def base_url(url: str, file: str | None = None) -> str:
    """`http(s)://host:port[/path]` of a URL or `host:port`: no query, fragment, `/file` or '/'."""
    text = url.strip()
    bare = "://" not in text
    parts = urlsplit(f"http://{text}" if bare else text)
    bad = HarnessError(f"not an http(s) URL or host:port: {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise bad from None
    # A bare word is a typo more often than a host on port 80: without a scheme, a port is needed.
    if parts.scheme not in ("http", "https") or not parts.hostname or (bare and port is None):
        raise bad
    path = parts.path
    if file and path.endswith("/" + file):  # the URL of a file in the folder, e.g. a manifest
        path = path[: -len(file)]
    return f"{parts.scheme}://{parts.netloc}{path}".rstrip("/")


def grpc_address(url: str) -> str:
    """`host:port` from a gRPC URL given with or without a scheme."""
    return url.strip().split("://", 1)[-1].rstrip("/")
