"""Security probes of a file server. Each returns its findings, one line each: none = passed.

No probe writes to or deletes from the server. Write methods go only to a random name in a random
folder that cannot exist, with a precondition (`If-Match`) no resource can meet, and the probe then
checks that nothing appeared; see docs/files.md, "Verify any file server", for the reasoning.
Only `symlink_escape` changes anything, and only in the local --pool folder, undone afterwards.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from harness.verify.files import NoAnswer, RawResponse, Target, Unprobeable

# Files outside any web root that every Linux host has, and what their content looks like.
# /etc/hostname has no recognisable shape (any word), so it is not among them.
OUTSIDE: dict[str, re.Pattern[bytes]] = {
    "etc/passwd": re.compile(rb"(?m)^root:[^:\n]*:0:0:"),
    "etc/group": re.compile(rb"(?m)^root:[^:\n]*:0:"),
    "proc/self/status": re.compile(rb"(?m)^Tgid:\s*\d+$"),
    "proc/version": re.compile(rb"^Linux version \d"),
}


def _slashes(sep: str) -> Callable[[int, str], str]:
    return lambda depth, path: (".." + sep) * depth + path.replace("/", sep)


# Encoded forms of `../`: name -> (depth, path outside) -> request target below a folder.
TRAVERSAL_FORMS: dict[str, Callable[[int, str], str]] = {
    "../": _slashes("/"),
    "%2e%2e/": lambda d, p: "%2e%2e/" * d + p,
    ".%2e/": lambda d, p: ".%2e/" * d + p,
    "..%2f": _slashes("%2f"),
    "%2e%2e%2f": lambda d, p: "%2e%2e%2f" * d + p.replace("/", "%2f"),
    "double-encoded %252e%252e%252f": lambda d, p: "%252e%252e%252f" * d + p.replace("/", "%252f"),
    "..%252f": _slashes("%252f"),
    "..\\": _slashes("\\"),
    "..%5c": _slashes("%5c"),
    "..%255c": _slashes("%255c"),
    "overlong UTF-8 %c0%ae%c0%ae/": lambda d, p: "%c0%ae%c0%ae/" * d + p,
    "....//": lambda d, p: "....//" * d + p,
    "..;/": lambda d, p: "..;/" * d + p,
}


def _leak(resp: RawResponse | NoAnswer) -> str | None:
    """The outside file whose content `resp` carries, if any."""
    if isinstance(resp, NoAnswer) or not resp.body:
        return None
    for path, sig in OUTSIDE.items():
        if sig.search(resp.body):
            return "/" + path
    return None


def _leaks(
    probes: list[tuple[str, str]], answers: list[RawResponse | NoAnswer], n_forms: int
) -> list[str]:
    """One finding: which forms leaked what, with the first leaking request as the example."""
    forms: dict[str, str] = {}
    example = ""
    for (form, target), resp in zip(probes, answers):
        leaked = _leak(resp)
        if leaked:
            forms.setdefault(form, leaked)
            example = example or f"GET {_short(target, 60)}"
    if not forms:
        return []
    what = ", ".join(sorted(set(forms.values())))
    return [
        f"{what} served through {len(forms)} of {n_forms} forms: {', '.join(forms)} ({example})"
    ]


def traversal(t: Target) -> list[str]:
    """`../` in its encoded forms, from the root and from a folder: nothing outside is served."""
    depth = int(t.cfg["traversal_depth"])
    starts = ["/"] + ([f"{t.url_path(t.folders[0])}/"] if t.folders else [])
    probes = [
        (form, start + make(depth, path))
        for form, make in TRAVERSAL_FORMS.items()
        for start in starts
        for path in OUTSIDE
    ]
    return _leaks(probes, t.get_many([p for _, p in probes]), len(TRAVERSAL_FORMS))


def absolute_paths(t: Target) -> list[str]:
    """Absolute paths as request targets (`//etc/passwd`, `/%2fetc`, absolute-form URLs)."""
    host = t.url.split("://", 1)[1].split("/", 1)[0]
    forms = {
        "/": lambda p: "/" + p,
        "//": lambda p: "//" + p,
        "///": lambda p: "///" + p,
        "/%2f": lambda p: "/%2f" + p.replace("/", "%2f"),
        "/proc/self/root/": lambda p: "/proc/self/root/" + p,
        "absolute-form http://host/": lambda p: f"http://{host}/{p}",
        "absolute-form http://host//": lambda p: f"http://{host}//{p}",
        "absolute-form http://host/../": lambda p: f"http://{host}/" + "../" * 8 + p,
        "file:///": lambda p: "file:///" + p,
    }
    probes = [(form, make(path)) for form, make in forms.items() for path in OUTSIDE]
    return _leaks(probes, t.get_many([p for _, p in probes]), len(forms))


def _pool_hidden(t: Target) -> list[str]:
    """Hidden names really present in the probed folders of the local pool (files inside too)."""
    if t.pool is None:
        return []
    out: list[str] = []
    for folder in ["", *t.folders]:
        try:
            names = sorted(os.listdir(t.pool / folder))
        except OSError:
            continue
        for name in names:
            if not name.startswith("."):
                continue
            rel = f"{folder}/{name}" if folder else name
            full = t.pool / rel
            if full.is_dir() and not full.is_symlink():
                out.append(rel + "/")
                inside = sorted(p.name for p in full.iterdir() if p.is_file())
                out += [f"{rel}/{n}" for n in inside[:3]]
            else:
                out.append(rel)
    return out[: int(t.cfg["max_pool_hidden"])]


def hidden_files(t: Target) -> list[str]:
    """Common hidden names (.git/config, .env, ...) in the root and the manifest's folders."""
    names = list(t.cfg["hidden_names"])
    rels = [f"{folder}/{n}" if folder else n for folder in ["", *t.folders] for n in names]
    rels += _pool_hidden(t)
    # A hidden name the manifest lists is meant to be served.
    rels = [r for r in dict.fromkeys(rels) if r not in t.manifest_paths]
    targets = [t.url_path(r) for r in rels]
    # The leading dot percent-encoded: a rule matching the raw URL would miss it.
    targets += ["/" + r.replace(".", "%2e", 1) for r in names]
    found = []
    for target, resp in zip(targets, t.get_many(targets)):
        if t.served(resp):
            assert isinstance(resp, RawResponse)
            found.append(f"GET {_short(target)} served {len(resp.body)} bytes")
    return found


def directory_listing(t: Target) -> list[str]:
    """The root and the manifest's folders: no answer may list the files in them."""
    probes = [("", "/")]
    for folder in t.folders:
        probes += [(folder, f"{t.url_path(folder)}/"), (folder, t.url_path(folder))]
    answers = t.get_many([p for _, p in probes])
    found = []
    for (folder, target), resp in zip(probes, answers):
        if isinstance(resp, NoAnswer) or resp.status != 200:
            continue
        hits = t.listed(resp.body, folder)
        # Two names (or the only one) rule out a page that happens to mention one word.
        if hits and len(hits) >= min(2, len(t.children(folder))):
            found.append(f"GET {_short(target)} lists {len(hits)} names ({', '.join(hits[:3])})")
    return found


WRITE_METHODS = ("PUT", "POST", "PATCH", "DELETE", "MKCOL", "PROPPATCH")
# Request headers that make a compliant server refuse before acting: no resource has this ETag.
NO_MATCH = {"If-Match": '"harness-verify-no-such-etag"'}
_WRITE_WORDS = set(WRITE_METHODS) | {"COPY", "MOVE", "LOCK", "UNLOCK"}


def methods(t: Target) -> list[str]:
    """Only GET/HEAD: write methods refused (on a name that cannot exist), no WebDAV, no TRACE."""
    folder = f"/harness-verify-{t.token}-dir"
    name = f"{folder}/probe.txt"
    top = f"/harness-verify-{t.token}.txt"
    found = []
    accepted = []
    for method in WRITE_METHODS:
        for target in (name, top) if method != "MKCOL" else (f"{folder}/",):
            try:
                resp = t.get(target, method, NO_MATCH)
            except NoAnswer:
                continue  # closing on it is a refusal too
            if 200 <= resp.status < 300:
                accepted.append(f"{method} {target} {resp.status}")
                break
    if accepted:
        found.append("write methods accepted: " + ", ".join(accepted))
    # Nothing may have appeared, whatever the answers said.
    for target in (name, top, f"{folder}/", folder):
        try:
            resp = t.get(target, "GET")
        except NoAnswer:
            continue
        absent_status = t.absent.status if t.absent is not None else None
        if t.served(resp) or (resp.status in (200, 204) and resp.status != absent_status):
            found.append(f"{target} exists after the probes (created by a write method?)")
    try:
        resp = t.get("/", "TRACE", {"X-Harness-Trace": t.token})
        if 200 <= resp.status < 300 and t.token.encode() in resp.body:
            found.append(f"TRACE / echoes the request ({resp.status})")
    except NoAnswer:
        pass
    for target in ("*", "/"):
        try:
            resp = t.get(target, "OPTIONS")
        except NoAnswer:
            continue
        if not 200 <= resp.status < 300:
            continue
        allowed = {
            w.strip().upper()
            for h in ("allow", "public")
            for w in resp.headers.get(h, "").split(",")
        }
        writes = sorted(allowed & _WRITE_WORDS)
        if writes or "dav" in resp.headers:
            what = ", ".join(writes) or f"DAV {resp.headers['dav']}"
            found.append(f"OPTIONS {target} offers {what}")
    try:
        resp = t.get("/", "PROPFIND", {"Depth": "1"})
        if resp.status == 207 or (200 <= resp.status < 300 and b"multistatus" in resp.body):
            found.append(f"PROPFIND / answered {resp.status} (WebDAV listing)")
    except NoAnswer:
        pass
    return found


def _sample_file(t: Target) -> tuple[str, int]:
    """The largest of the first `sample_files` manifest files (by HEAD), and its size."""
    n = int(t.cfg["range"]["sample_files"])
    rels = [rel for _, rel in t.entries[:n]]
    sizes = []
    for rel, resp in zip(rels, t.get_many([t.url_path(r) for r in rels], "HEAD")):
        if isinstance(resp, RawResponse) and resp.status == 200:
            sizes.append((int(resp.headers.get("content-length", "0") or 0), rel))
    if not sizes:
        raise Unprobeable(f"none of the first {n} manifest files is served (HEAD)")
    size, rel = max(sizes)
    return rel, size


def range_cases(size: int, rcfg: dict) -> dict[str, str]:
    """Abusive Range header values for a file of `size` bytes: name -> header value."""
    return {
        "overlapping": "bytes=" + ",".join(["0-"] * int(rcfg["overlapping"])),
        "many tiny": "bytes=" + ",".join(f"{i}-{i}" for i in range(int(rcfg["tiny"]))),
        "huge header": "bytes=" + ",".join(["0-0"] * int(rcfg["huge_count"])),
        "beyond the end": f"bytes={size + 1000}-",
        "huge start": "bytes=99999999999999999999-",
        "huge number": "bytes=0-" + "9" * 9000,
        "inverted": "bytes=5-1",
        "malformed": "bytes=abc",
        "negative": "bytes=--1",
    }


# Cases where a 206 is wrong: the range cannot be satisfied or is not a range at all.
_NO_206 = {"beyond the end", "huge start", "inverted", "malformed", "negative"}


def _alive(t: Target, rel: str, size: int, after: str) -> list[str]:
    try:
        resp = t.get(t.url_path(rel))
    except NoAnswer as exc:
        return [f"the server stopped answering after the {after} ({exc})"]
    if resp.status != 200 or (size and len(resp.body) != size):
        return [f"after the {after}, GET {rel} answered {resp.status} with {len(resp.body)} bytes"]
    return []


def range_abuse(t: Target) -> list[str]:
    """Abusive Range headers: no 5xx, no hang, no amplified 206, no 206 for nonsense."""
    rcfg = t.cfg["range"]
    rel, size = _sample_file(t)
    limit = int(rcfg["amplification"]) * max(size, int(rcfg["amplification_floor_bytes"]))
    found = []
    for what, value in range_cases(size, rcfg).items():
        try:
            resp = t.get(t.url_path(rel), "GET", {"Range": value})
        except NoAnswer as exc:
            if "no answer within" in str(exc):
                found.append(f"{what}: {exc}")
            continue  # a closed connection is a refusal
        if resp.status >= 500:
            found.append(f"{what}: HTTP {resp.status}")
        elif resp.status == 206 and (resp.truncated or len(resp.body) > limit):
            found.append(
                f"{what}: 206 of {len(resp.body):,}{'+' if resp.truncated else ''} bytes "
                f"for a {size:,}-byte file (amplification)"
            )
        elif resp.status == 206 and what in _NO_206:
            found.append(f"{what} ({value[:30]}): 206 for an unsatisfiable range")
    return found + _alive(t, rel, size, "Range probes")


def oversized_headers(t: Target) -> list[str]:
    """Request headers far beyond any sane limit (one huge line, many lines): refused, no hang."""
    total = int(t.cfg["oversized_header_bytes"])
    count = int(t.cfg["many_headers"])
    cases = {
        f"one {total:,}-byte header": [("X-Harness-Pad", "a" * total)],
        f"{count} headers, {total:,} bytes": [
            (f"X-Harness-Pad-{i}", "a" * (total // count)) for i in range(count)
        ],
    }
    rel = t.entries[0][1]
    found = []
    for what, headers in cases.items():
        try:
            resp = t.get(t.url_path(rel), "GET", headers)
        except NoAnswer as exc:
            if "no answer within" in str(exc):
                found.append(f"{what}: {exc}")
            continue  # refused by closing the connection
        if resp.status < 400 or resp.status >= 500:
            found.append(f"{what}: HTTP {resp.status} (should be refused with a 4xx)")
    return found + _alive(t, rel, 0, "oversized headers")


def symlink_escape(t: Target) -> list[str]:
    """Plant symlinks in --pool pointing outside it (a file, a folder); neither may be served."""
    if t.pool is None:
        raise Unprobeable("needs the served folder: give --pool DIR (local servers only)")
    marker = f"harness-verify-outside-{t.token}\n".encode()
    outside = Path(tempfile.mkdtemp(prefix="harness-verify-outside-"))
    stem = f"harness-verify-{t.token}"
    planted = {
        "control": t.pool / f"{stem}-control.txt",
        "file link": t.pool / f"{stem}-link.txt",
        "folder link": t.pool / f"{stem}-dirlink",
    }
    try:
        # Readable by any server user (mkdtemp makes 0700; nginx workers may be another user).
        os.chmod(outside, 0o755)
        (outside / "secret.txt").write_bytes(marker)
        os.chmod(outside / "secret.txt", 0o644)
        try:
            planted["control"].write_bytes(marker)
            os.chmod(planted["control"], 0o644)
            os.symlink(outside / "secret.txt", planted["file link"])
            os.symlink(outside, planted["folder link"])
        except OSError as exc:
            raise Unprobeable(f"cannot plant files in {t.pool}: {exc.strerror or exc}") from None
        control = t.get(f"/{planted['control'].name}")
        if control.status != 200 or control.body != marker:
            return [
                f"--pool {t.pool} does not look like the folder served at {t.url} "
                f"(a file written there answered {control.status})"
            ]
        found = []
        for what, target in (
            ("file link", f"/{planted['file link'].name}"),
            ("folder link", f"/{planted['folder link'].name}/secret.txt"),
        ):
            try:
                resp = t.get(target)
            except NoAnswer:
                continue
            if marker in resp.body:
                found.append(f"a {what} to {outside} was followed (GET {target}: {resp.status})")
        return found
    finally:
        for path in planted.values():
            if path.is_symlink() or path.exists():
                path.unlink()
        shutil.rmtree(outside, ignore_errors=True)


def _short(target: str, limit: int = 72) -> str:
    return target if len(target) <= limit else target[: limit - 3] + "..."


__all__ = [
    "OUTSIDE",
    "TRAVERSAL_FORMS",
    "WRITE_METHODS",
    "absolute_paths",
    "directory_listing",
    "hidden_files",
    "methods",
    "oversized_headers",
    "range_abuse",
    "range_cases",
    "symlink_escape",
    "traversal",
]
