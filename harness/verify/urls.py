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
    if port is None:
        port = 443 if parts.scheme == "https" else default_port
    return parts.hostname, port


def base_url(url: str) -> str:
    """`http://host:port` from `host:port` or a URL (no trailing slash)."""
    text = url.strip().rstrip("/")
    return text if "://" in text else f"http://{text}"


def grpc_address(url: str) -> str:
    """`host:port` from a gRPC URL given with or without a scheme."""
    return url.strip().split("://", 1)[-1].rstrip("/")
