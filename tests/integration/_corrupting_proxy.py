"""An HTTP reverse proxy in front of a real S3 server that damages large response bodies.

It forwards every request unchanged (the Host header too, so SigV4 signatures still verify at
the server) and, for GET answers of at least `min_body` bytes, flips one byte in the middle
(`corrupt`) or drops the second half and shortens Content-Length to match (`truncate`: a body that
looks complete). Small answers (XML listings, errors, the checkpoint pointer) pass untouched, so
the S3 protocol keeps working and only integrity checks can notice. Test tree only.
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

MODES = ("corrupt", "truncate")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "proxy-connection"}


def damage(body: bytes, mode: str) -> bytes:
    """The body with one byte flipped in the middle, or its first half only."""
    mid = len(body) // 2
    if mode == "corrupt":
        return body[:mid] + bytes([body[mid] ^ 0xFF]) + body[mid + 1 :]
    return body[:mid]


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """A client cut off mid-request (the fault proxy does that) is not worth a traceback."""


class CorruptingProxy:
    """Listen on 127.0.0.1:<free port>; forward to `upstream`; damage big GET bodies."""

    def __init__(self, upstream: str, mode: str, min_body: int, timeout: float = 60.0) -> None:
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: expected one of {MODES}")
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.mode, self.min_body, self.timeout = mode, min_body, timeout
        self.damaged = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, and 100-continue answered for uploads

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=proxy.timeout)
                try:
                    conn.putrequest(
                        self.command, self.path, skip_host=True, skip_accept_encoding=True
                    )
                    for k, v in self.headers.items():
                        if k.lower() not in _HOP_BY_HOP:
                            conn.putheader(k, v)
                    conn.endheaders(body)
                    resp = conn.getresponse()
                    data = resp.read()
                    headers = resp.getheaders()
                finally:
                    conn.close()
                big = len(data) >= proxy.min_body
                if self.command == "GET" and resp.status in (200, 206) and big:
                    data = damage(data, proxy.mode)
                    proxy.damaged += 1
                self.send_response_only(resp.status, resp.reason)
                for k, v in headers:
                    if k.lower() in _HOP_BY_HOP:
                        continue
                    if k.lower() == "content-length" and self.command != "HEAD":
                        continue  # a HEAD keeps the object's length; a body gets its own
                    self.send_header(k, v)
                if self.command != "HEAD":
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = forward

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """http:// URL of the proxy."""
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> CorruptingProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
