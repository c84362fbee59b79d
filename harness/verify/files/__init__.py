"""Verify any HTTP file server: the manifest's hashes plus security probes (`harness verify files`).

`open_target` loads the settings (configs/verify/default.yaml, `files:`) and the manifest once;
`check_hashes` and the probes in `harness.verify.files.probes` all take the resulting Target.
The checks are run by harness/conformance/test_files.py (pytest), one test per check.
"""

from __future__ import annotations

import html
import secrets
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import quote

from harness.errors import HarnessError
from harness.files.pool import MANIFEST, parse_manifest
from harness.files.verify import MISMATCH, MISSING, OK, Verifier, VerifyReport
from harness.urls import base_url
from harness.verify.files.raw import NoAnswer, RawResponse, request

__all__ = [
    "NoAnswer",
    "RawResponse",
    "Target",
    "Unprobeable",
    "check_hashes",
    "hashes_message",
    "load_manifest",
    "open_target",
    "request",
    "settings",
]


class Unprobeable(Exception):
    """A probe cannot say anything about this server (the check is skipped with this reason)."""


def settings() -> dict[str, Any]:
    """The `files:` section of configs/verify/default.yaml as a plain dict."""
    from omegaconf import OmegaConf

    from harness.config import compose

    section = compose().verify.files
    return OmegaConf.to_container(section, resolve=True)  # type: ignore[return-value]


def _manifest_bytes(where: str, timeout: float) -> bytes:
    if where.startswith(("http://", "https://")):
        import logging

        import httpx

        logging.getLogger("httpx").setLevel(logging.WARNING)  # it logs every request at INFO
        try:
            r = httpx.get(where, timeout=timeout, trust_env=False, follow_redirects=True)
        except httpx.HTTPError as exc:
            raise HarnessError(f"cannot fetch the manifest {where}: {type(exc).__name__}") from None
        if r.status_code != 200:
            raise HarnessError(f"cannot fetch the manifest {where}: HTTP {r.status_code}")
        return r.content
    try:
        return Path(where).read_bytes()
    except OSError as exc:
        raise HarnessError(f"cannot read the manifest {where}: {exc.strerror or exc}") from None


def load_manifest(
    url: str, source: str | None = None, timeout: float = 10.0
) -> list[tuple[str, str]]:
    """(sha256, path) entries of `source` (a file or URL; default <url>/SHA256SUMS), or one line."""
    where = source or f"{base_url(url, MANIFEST)}/{MANIFEST}"
    data = _manifest_bytes(where, timeout)
    not_one = f"{where} is not a sha256sum manifest"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise HarnessError(f"{not_one} (binary data, not UTF-8 text)") from None
    if "\x00" in text:
        raise HarnessError(f"{not_one} (binary data: NUL bytes)")
    try:
        entries = parse_manifest(text)
    except HarnessError as exc:
        raise HarnessError(f"{not_one}: {exc}") from None
    if not entries:
        raise HarnessError(f"the manifest {where} lists no files")
    return entries


@dataclass
class Target:
    """One file server under test: base URL, manifest entries, settings, local pool if any."""

    url: str
    entries: list[tuple[str, str]]
    cfg: Mapping[str, Any]
    pool: Path | None = None
    token: str = field(default_factory=lambda: secrets.token_hex(6))

    def get(
        self,
        target: str,
        method: str = "GET",
        headers: dict[str, str] | list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> RawResponse:
        """One raw request (target sent verbatim); NoAnswer when nothing came back."""
        return request(
            self.url,
            target,
            method,
            headers,
            body=body,
            timeout=float(self.cfg["timeout_s"]),
            max_body=int(self.cfg["max_body_bytes"]),
        )

    def get_many(self, targets: Sequence[str], method: str = "GET") -> list[RawResponse | NoAnswer]:
        """The same request to many targets, `jobs` at a time; each answer or its NoAnswer."""

        def one(t: str) -> RawResponse | NoAnswer:
            try:
                return self.get(t, method)
            except NoAnswer as exc:
                return exc

        with ThreadPoolExecutor(max_workers=int(self.cfg["jobs"])) as pool:
            return list(pool.map(one, targets))

    @staticmethod
    def url_path(rel: str) -> str:
        """Request target of a manifest path (each segment percent-encoded)."""
        return "/" + quote(rel, safe="/")

    @cached_property
    def absent(self) -> RawResponse | None:
        """The answer for a name that cannot exist: the server's 'not found' page, any code."""
        try:
            return self.get(f"/harness-verify-absent-{self.token}.txt")
        except NoAnswer:
            return None

    def served(self, resp: RawResponse | NoAnswer) -> bool:
        """True for a 200 with a body that is not the server's page for any absent name."""
        if isinstance(resp, NoAnswer) or resp.status != 200 or not resp.body:
            return False
        base = self.absent
        return not (base is not None and base.status == 200 and base.body == resp.body)

    @cached_property
    def folders(self) -> list[str]:
        """Folders of the manifest (shallowest first), at most `max_folders`."""
        found: set[str] = set()
        for _, rel in self.entries:
            parts = rel.split("/")[:-1]
            found.update("/".join(parts[: i + 1]) for i in range(len(parts)))
        ordered = sorted(found, key=lambda f: (f.count("/"), f))
        return ordered[: int(self.cfg["max_folders"])]

    def children(self, folder: str) -> list[str]:
        """Names directly inside `folder` ('' = the root) according to the manifest."""
        prefix = f"{folder}/" if folder else ""
        names = {
            rel[len(prefix) :].split("/", 1)[0] for _, rel in self.entries if rel.startswith(prefix)
        }
        return sorted(names)

    def listed(self, body: bytes, folder: str) -> list[str]:
        """The manifest's names of `folder` that `body` shows (as text, URL- or HTML-escaped)."""
        text = body.decode("utf-8", errors="replace")
        hits = []
        for name in self.children(folder):
            forms = {name, quote(name), html.escape(name)}
            if any(f in text for f in forms):
                hits.append(name)
        return hits

    @cached_property
    def manifest_paths(self) -> set[str]:
        """Every path the manifest lists."""
        return {rel for _, rel in self.entries}


def open_target(url: str, manifest: str | None = None, pool: str | None = None) -> Target:
    """Settings + manifest for `url`; bad input is a one-line HarnessError."""
    cfg = settings()
    base = base_url(url, MANIFEST)
    entries = load_manifest(base, manifest, float(cfg["timeout_s"]))
    pool_dir = None
    if pool:
        pool_dir = Path(pool).resolve()
        if not pool_dir.is_dir():
            raise HarnessError(f"--pool {pool} is not a folder")
    return Target(base, entries, cfg, pool_dir)


def check_hashes(t: Target) -> VerifyReport:
    """Download every manifest file (concurrently, streamed) and compare its sha256."""
    v = Verifier(
        t.url,
        jobs=int(t.cfg["jobs"]),
        retries=int(t.cfg["retries"]),
        backoff=float(t.cfg["backoff"]),
        timeout=float(t.cfg["timeout_s"]),
        chunk_size=int(t.cfg["chunk_size"]),
    )
    try:
        return v.run(progress=False, entries=t.entries)
    finally:
        v.close()


def hashes_message(report: VerifyReport, limit: int = 12) -> str:
    """One line: the counts, then the exact names of the bad files (by kind)."""
    c = report.counts
    head = (
        f"{report.total - c.get(OK, 0)} of {report.total} files bad "
        f"({c.get(MISMATCH, 0)} mismatch, {c.get(MISSING, 0)} missing, "
        f"{c.get('error', 0)} error)"
    )
    bad = sorted(report.problems, key=lambda r: r.path)
    names = [f"{r.status} {r.path}" for r in bad[:limit]]
    more = f", +{len(bad) - limit} more" if len(bad) > limit else ""
    return f"{head}: {', '.join(names)}{more}"


def first_lines(findings: Iterable[str], limit: int = 4) -> str:
    """Findings joined on one line, the first `limit` of them."""
    items = list(findings)
    more = f"; +{len(items) - limit} more" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more
