"""File servers the verify tests point `harness verify files` at, besides the project's own."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.files.pool import MANIFEST
from harness.services import free_port, http_ok
from harness.services.base import LocalProcess
from harness.services.fileserver import LocalFileServer

# The project's template made careless the way real configs often are: each pair must match once,
# so a change to the template breaks this loudly instead of silently testing a safe config.
CARELESS = (
    ("autoindex off;", "autoindex on;"),
    ("disable_symlinks on;", "disable_symlinks off;"),
    ("location ~ /\\. {\n            return 404;\n        }", ""),
    # try_files on files only would hide the listing autoindex now makes.
    ("try_files $uri =404;", "try_files $uri $uri/ =404;"),
)


class CarelessNginx(LocalFileServer):
    """nginx from the project's template: listings on, symlinks followed, hidden files served."""

    def __init__(self, root: str | os.PathLike[str], scfg: Mapping[str, Any]) -> None:
        super().__init__(root, scfg, impl="nginx")

    def _argv(self) -> list[str]:
        argv = super()._argv()  # renders runtime/nginx.conf
        conf = self.runtime / "nginx.conf"
        text = conf.read_text()
        for old, new in CARELESS:
            assert text.count(old) == 1, f"template changed: {old!r} not found once"
            text = text.replace(old, new)
        conf.write_text(text)
        return argv


def python_http_server(root: str | os.PathLike[str], log_dir: Path) -> LocalProcess:
    """`python -m http.server` serving `root`: lists folders and follows symlinks out of it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    return LocalProcess(
        "http.server",
        argv + ["--directory", str(root)],
        url=url,
        ready_check=lambda: http_ok(f"{url}/{MANIFEST}"),
        log_path=log_dir / "http.server.log",
        startup_timeout=20,
    )


class NaiveServer:
    """A deliberately broken file server on a real socket (a thread here): every mistake at once.

    It joins the decoded request path onto its root without normalising it (so `../` and
    absolute paths escape), lists folders, serves hidden files and symlinks, answers 201 to any
    write method without writing, echoes TRACE, sends every requested range (amplification) and
    reads headers of any size. Each probe must catch its mistake; only the hash check passes.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        import socket
        import threading

        self.root = str(root)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> NaiveServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def _serve(self) -> None:
        import threading

        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: Any) -> None:
        try:
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    more = conn.recv(65536)
                    if not more:
                        return
                    data += more
                conn.sendall(self._answer(data.split(b"\r\n\r\n", 1)[0].decode("latin-1")))
        except OSError:
            pass

    def _answer(self, head: str) -> bytes:
        from urllib.parse import unquote

        lines = head.split("\r\n")
        method, target = lines[0].split(" ")[:2]
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])
        }
        if method == "TRACE":
            return _http(200, head.encode())
        if method not in ("GET", "HEAD"):
            return _http(201, b"")
        path = os.path.join(self.root, unquote(target.split("?")[0])[1:])
        if os.path.isdir(path):
            body = "".join(f'<a href="{n}">{n}</a>\n' for n in sorted(os.listdir(path))).encode()
            return _http(200, body)
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError:
            return _http(404, b"not found\n")
        rng = headers.get("range", "")
        if rng.startswith("bytes=") and method == "GET":
            parts = []
            for spec in rng[6:].split(","):
                start, _, end = spec.partition("-")
                try:
                    parts.append(data[int(start or 0) : int(end) + 1 if end else None])
                except ValueError:
                    continue
            return _http(206, b"".join(parts))
        return _http(200, b"" if method == "HEAD" else data, len(data))


def _http(status: int, body: bytes, length: int | None = None) -> bytes:
    n = len(body) if length is None else length
    return (
        f"HTTP/1.1 {status} X\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n".encode() + body
    )
