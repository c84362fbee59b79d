"""A TCP proxy in front of a real server that injects network faults on command.

Tests put it between a client and a real S3 server to play transient connection failures (the
next N connections are reset), a server that vanishes mid-upload (all connections cut after N
more request bytes, new ones reset until `restore()`), and a server that is down (`go_down`).
It lives in the package because `harness verify s3` ships it: its checkpoint check cuts a real
upload through it.
Nothing is simulated above TCP: the client and the server speak real HTTP to each other.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable

_CHUNK = 64 * 1024


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), like a crashed peer."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class FaultProxy:
    """Forward 127.0.0.1:<port> to `target`; drop, cut or refuse connections when told to."""

    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, 0))
        self._listener.listen(64)
        self._listener.settimeout(0.1)  # accept() wakes up to notice stop()
        self.host, self.port = self._listener.getsockname()
        self._down = False
        self._drop_next = 0
        self._cut_budget: int | None = None
        self._trigger: tuple[int, Callable[[], None]] | None = None
        self._conns: set[socket.socket] = set()
        self.accepted = 0
        self.dropped = 0
        self.forwarded_up = 0
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True, name="faultproxy")
        self._thread.start()

    @property
    def url(self) -> str:
        """http:// URL of the proxy."""
        return f"http://{self.host}:{self.port}"

    # -- controls -----------------------------------------------------------------------------
    def drop_next(self, n: int) -> None:
        """Reset the next `n` connections right after accepting them (transient failures)."""
        with self._lock:
            self._drop_next = n

    def cut_after(self, nbytes: int) -> None:
        """After `nbytes` more client->server bytes, cut every connection and go down."""
        with self._lock:
            self._cut_budget = nbytes

    def on_bytes(self, nbytes: int, action: Callable[[], None]) -> None:
        """Run `action` once after `nbytes` more client->server bytes, before the rest passes.

        Counted bytes, not a clock: e.g. stop the real server process exactly mid-upload.
        """
        with self._lock:
            self._trigger = (nbytes, action)

    def go_down(self) -> None:
        """Cut every open connection and reset new ones until `restore()`."""
        with self._lock:
            self._down = True
            conns, self._conns = list(self._conns), set()
        for c in conns:
            _reset(c)

    def restore(self) -> None:
        """Forward normally again."""
        with self._lock:
            self._down = False
            self._drop_next = 0
            self._cut_budget = None
            self._trigger = None

    def stop(self) -> None:
        """Stop accepting and close everything."""
        self._stopped.set()
        self.go_down()
        try:
            self._listener.close()
        except OSError:
            pass
        self._thread.join(timeout=5)

    # -- plumbing -----------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            with self._lock:
                self.accepted += 1
                drop = self._down or self._drop_next > 0
                if self._drop_next > 0:
                    self._drop_next -= 1
                if drop:
                    self.dropped += 1
            if drop:
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                # go_down() may have run while we connected upstream: it never saw this pair.
                late = self._down
                if not late:
                    self._conns.update((client, upstream))
            if late:
                _reset(client)
                _reset(upstream)
                continue
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, upward: bool) -> None:
        try:
            while True:
                data = src.recv(_CHUNK)
                if not data or self._down:
                    break  # down: nothing more passes, in either direction
                if upward:
                    fire, rest = None, b""
                    with self._lock:
                        budget = self._cut_budget
                        if budget is not None:
                            data = data[: max(0, budget)]
                            self._cut_budget = budget - len(data)
                        if self._trigger is not None:
                            left, action = self._trigger
                            if len(data) >= left:
                                data, rest, fire = data[:left], data[left:], action
                                self._trigger = None
                            else:
                                self._trigger = (left - len(data), action)
                        self.forwarded_up += len(data) + len(rest)
                    if data:
                        dst.sendall(data)
                    if fire is not None:
                        fire()
                        if rest:
                            dst.sendall(rest)
                    if (
                        budget is not None
                        and self._cut_budget is not None
                        and self._cut_budget <= 0
                    ):
                        self.go_down()
                        return
                else:
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
