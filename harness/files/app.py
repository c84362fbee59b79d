"""Python fallback file server: uvicorn + Starlette FileResponse with nginx's security rules.

Used when nginx is not installed. Same behaviour as the generated nginx config: GET/HEAD only,
no listings, hidden paths and any symlink refused, Range/ETag/Last-Modified from Starlette.
Run: `python -m harness.files.app --root DIR --host H --port P`.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from pathlib import Path

from starlette.datastructures import Headers
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.staticfiles import NotModifiedResponse
from starlette.types import Receive, Scope, Send

_ALLOW = {"Allow": "GET, HEAD"}


def _refuse(status: int) -> Response:
    return PlainTextResponse(f"{status}\n", status_code=status)


class SmallFileResponse(FileResponse):
    """FileResponse that reads small whole files in one call instead of three thread hops."""

    def __init__(self, path: str, stat_result: os.stat_result, small: int) -> None:
        super().__init__(path, stat_result=stat_result, media_type="text/plain; charset=utf-8")
        self._small = small

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        st = self.stat_result
        plain_get = scope["method"] == "GET" and not any(k == b"range" for k, _ in scope["headers"])
        if not plain_get or st is None or st.st_size > self._small:
            # HEAD, Range, big files: Starlette's own path (ranges, streaming, disconnects).
            return await super().__call__(scope, receive, send)
        # A whole small file in one read and one send: no thread hops, no per-request task
        # group (uvicorn reports ASGI 2.3, which makes FileResponse spawn one).
        with open(self.path, "rb") as fh:
            body = fh.read(st.st_size + 1)
        if len(body) != st.st_size:
            # Changed since stat: close the connection rather than send a wrong Content-Length.
            raise RuntimeError(f"{self.path} changed while being served")
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})


class PoolApp:
    """ASGI app serving the regular, non-hidden, symlink-free files under `root`."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        small_file_bytes: int = 65536,
        max_ranges: int = 16,
        max_header_bytes: int = 8192,
    ) -> None:
        self.root = os.path.realpath(root)
        if not os.path.isdir(self.root):
            raise NotADirectoryError(f"{root} is not a folder")
        self.small = small_file_bytes
        self.max_ranges = max_ranges
        self.max_header_bytes = max_header_bytes

    def resolve(self, path: str) -> tuple[str, os.stat_result] | None:
        """Map a decoded URL path to (file, stat) or None when it must not be served."""
        if not path.startswith("/") or "\x00" in path or "\\" in path:
            return None
        parts = path[1:].split("/")
        for part in parts:
            # '' catches '//' and trailing slashes (folders), '.'/'..' and hidden names.
            if not part or part.startswith("."):
                return None
        current = self.root
        st = None
        for part in parts:
            current = os.path.join(current, part)
            try:
                st = os.lstat(current)
            except (OSError, ValueError):
                return None
            if stat.S_ISLNK(st.st_mode):  # like nginx `disable_symlinks on`
                return None
        if st is None or not stat.S_ISREG(st.st_mode):
            return None
        return current, st

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request."""
        if scope["type"] != "http":
            return
        if sum(len(k) + len(v) for k, v in scope["headers"]) > self.max_header_bytes:
            # httptools has no header-size limit of its own; nginx refuses these with 400.
            response: Response = _refuse(431)
        elif scope["method"] not in ("GET", "HEAD"):
            response = PlainTextResponse("405\n", status_code=405, headers=_ALLOW)
        else:
            found = self.resolve(scope["path"])
            if found is None:
                response = _refuse(404)
            else:
                full, st = found
                rng = Headers(scope=scope).get("range")
                if rng is not None and rng.count(",") >= self.max_ranges:
                    # Same rule as the nginx config: more ranges than allowed is refused.
                    response = _refuse(416)
                    await response(scope, receive, send)
                    return
                response = SmallFileResponse(full, st, self.small)
                if _not_modified(response.headers, Headers(scope=scope)):
                    response = NotModifiedResponse(response.headers)
        await response(scope, receive, send)


def _not_modified(resp: Headers, req: Headers) -> bool:
    inm = req.get("if-none-match")
    if inm is not None:
        return resp["etag"] in [t.strip().removeprefix("W/") for t in inm.split(",")]
    ims = req.get("if-modified-since")
    return ims is not None and ims == resp["last-modified"]


def make_app() -> PoolApp:
    """App factory for uvicorn (and each of its workers): settings come from the environment."""
    env = os.environ
    return PoolApp(
        env["HARNESS_FILES_ROOT"],
        int(env["HARNESS_FILES_SMALL"]),
        int(env["HARNESS_FILES_MAX_RANGES"]),
        int(env["HARNESS_FILES_MAX_HEADER_BYTES"]),
    )


def main(argv: list[str] | None = None) -> int:
    """Run the fallback server in the foreground."""
    import uvicorn

    p = argparse.ArgumentParser(prog="python -m harness.files.app", description=__doc__)
    p.add_argument("--root", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--backlog", type=int, default=2048)
    p.add_argument("--keepalive", type=float, default=5.0)
    p.add_argument("--max-header-bytes", type=int, default=8192)
    p.add_argument("--small-file-bytes", type=int, default=65536)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--max-ranges", type=int, default=16)
    a = p.parse_args(argv)
    root = Path(a.root)
    if not root.is_dir():
        print(f"error: {root} is not a folder", file=sys.stderr)
        return 2
    # Workers re-import the app by name, so the settings travel in the environment.
    os.environ["HARNESS_FILES_ROOT"] = str(root.resolve())
    os.environ["HARNESS_FILES_SMALL"] = str(a.small_file_bytes)
    os.environ["HARNESS_FILES_MAX_RANGES"] = str(a.max_ranges)
    os.environ["HARNESS_FILES_MAX_HEADER_BYTES"] = str(a.max_header_bytes)
    PoolApp(
        root, a.small_file_bytes, a.max_ranges, a.max_header_bytes
    )  # fail here, once, on a bad root
    uvicorn.run(
        "harness.files.app:make_app",
        factory=True,
        workers=a.workers,
        host=a.host,
        port=a.port,
        backlog=a.backlog,
        timeout_keep_alive=int(a.keepalive),
        h11_max_incomplete_event_size=a.max_header_bytes,
        # httptools/uvloop (uvicorn[standard]) are faster than h11/asyncio; "auto" picks them.
        http="auto",
        loop="auto",
        access_log=False,
        server_header=False,
        log_level="warning",
        lifespan="off",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
