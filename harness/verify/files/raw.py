"""One HTTP/1.1 request sent byte for byte: no client-side normalisation of the request target.

Probes need this: httpx, urllib and curl all collapse `../` and re-encode `%2e` before sending,
which is exactly what a traversal probe must not have done for it.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class RawResponse:
    """Status, lower-cased headers and the (de-chunked, possibly capped) body of one answer."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    truncated: bool = False

    def text(self) -> str:
        """The body as text (undecodable bytes replaced)."""
        return self.body.decode("utf-8", errors="replace")


class NoAnswer(Exception):
    """The server closed, reset or timed out before a complete status line came back."""


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        line, sep, rest = data.partition(b"\r\n")
        if not sep:
            break
        try:
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
        except ValueError:
            break  # not chunked after all: keep what was decoded
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return bytes(out)


def request(
    base_url: str,
    target: str,
    method: str = "GET",
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
    *,
    body: bytes = b"",
    timeout: float = 10.0,
    max_body: int = 1 << 20,
) -> RawResponse:
    """Send `METHOD target HTTP/1.1` to the host of `base_url` exactly as given; read the answer.

    `target` is used verbatim when it does not start with '/' (absolute-form, `*`); otherwise the
    base URL's own path prefix is put in front. Raises NoAnswer when no status line arrives.
    """
    u = urlsplit(base_url)
    prefix = u.path.rstrip("/")
    wire_target = prefix + target if target.startswith("/") else target
    pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    extra = "".join(f"{k}: {v}\r\n" for k, v in pairs)
    length = f"Content-Length: {len(body)}\r\n" if body or method not in ("GET", "HEAD") else ""
    head = (
        f"{method} {wire_target} HTTP/1.1\r\nHost: {u.netloc}\r\nConnection: close\r\n"
        f"{length}{extra}\r\n"
    ).encode("latin-1", errors="replace")
    port = u.port or (443 if u.scheme == "https" else 80)
    chunks: list[bytes] = []
    got = 0
    truncated = False
    try:
        with socket.create_connection((u.hostname, port), timeout=timeout) as sock:
            conn: socket.socket = sock
            if u.scheme == "https":
                conn = ssl.create_default_context().wrap_socket(sock, server_hostname=u.hostname)
            try:
                conn.sendall(head + body)
            except OSError:
                pass  # a server may answer (413/431) and close before reading all we sent
            while data := conn.recv(65536):
                chunks.append(data)
                got += len(data)
                if got > max_body + 65536:
                    truncated = True
                    break
    except TimeoutError as exc:
        if not chunks:
            raise NoAnswer(f"no answer within {timeout:g} s") from exc
        truncated = True
    except OSError as exc:
        if not chunks:
            raise NoAnswer(f"{type(exc).__name__}: {exc.strerror or exc}") from exc
    return _parse(b"".join(chunks), method, truncated)


def _parse(resp: bytes, method: str, truncated: bool) -> RawResponse:
    head, _, body = resp.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split()
    if not resp:
        raise NoAnswer("connection closed without an answer")
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise NoAnswer(f"not an HTTP answer: {lines[0][:60]!r}")
    try:
        status = int(parts[1])
    except ValueError as exc:
        raise NoAnswer(f"not an HTTP status line: {lines[0][:60]!r}") from exc
    hdrs: dict[str, str] = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        key = k.strip().lower()
        # Repeated headers (Allow, Set-Cookie) are joined as HTTP allows for lists.
        hdrs[key] = f"{hdrs[key]}, {v.strip()}" if key in hdrs else v.strip()
    if method == "HEAD":
        body = b""
    elif "chunked" in hdrs.get("transfer-encoding", "").lower():
        body = _dechunk(body)
    return RawResponse(status, hdrs, body, truncated)
