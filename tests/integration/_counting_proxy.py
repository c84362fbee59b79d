"""An HTTP reverse proxy that relays exactly N responses, then runs a hook (stop the server).

Makes "the server went away mid-run" deterministic: the verifier sees exactly N answers, the
hook runs once the N-th has been relayed, and every later request gets its connection closed
without an answer (what a stopped server's client sees), whatever the timing of the machine.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


class CountingProxy:
    """Relay GET/HEAD to `upstream` for the first `limit` requests; then `on_limit()`, once."""

    def __init__(self, upstream: str, limit: int, on_limit: Callable[[], None]) -> None:
        self.upstream = urlsplit(upstream)
        self.limit = limit
        self.on_limit = on_limit
        self.admitted = 0  # requests given a slot (never more than limit)
        self.relayed = 0  # responses relayed in full
        self.refused = 0  # requests answered by a closed connection
        self.lock = threading.Lock()
        self.limit_reached = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Base URL of the proxy."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> CountingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _admit(self) -> bool:
        with self.lock:
            if self.admitted >= self.limit:
                self.refused += 1
                return False
            self.admitted += 1
            return True

    def _done(self) -> None:
        with self.lock:
            self.relayed += 1
            last = self.relayed == self.limit
        if last:  # after the N-th full response, never before: the count is exact
            self.on_limit()
            self.limit_reached.set()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _relay(self, method: str) -> None:
                if not proxy._admit():
                    proxy.limit_reached.wait(30)  # the server is (being) stopped: no answer
                    self.close_connection = True
                    return
                up = http.client.HTTPConnection(
                    proxy.upstream.hostname, proxy.upstream.port, timeout=30
                )
                try:
                    up.request(method, self.path, headers={"Accept-Encoding": "identity"})
                    resp = up.getresponse()
                    body = resp.read()
                finally:
                    up.close()
                self.send_response(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in HOP_BY_HOP | {"content-length"}:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if method == "GET":
                    self.wfile.write(body)
                self.wfile.flush()
                proxy._done()

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self._relay("GET")

            def do_HEAD(self) -> None:  # noqa: N802
                self._relay("HEAD")

        return Handler
