"""Pure parts of `harness verify files`: answer parsing, manifest loading, listing detection."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.verify.files import Target, load_manifest, settings
from harness.verify.files.probes import OUTSIDE, TRAVERSAL_FORMS
from harness.verify.files.raw import NoAnswer, _dechunk, _parse

DIGEST = "a" * 64


def test_parse_answers_and_chunked_bodies() -> None:
    resp = _parse(b"HTTP/1.1 200 OK\r\nAllow: GET\r\nallow: HEAD\r\n\r\nbody", "GET", False)
    assert resp.status == 200 and resp.body == b"body" and resp.headers["allow"] == "GET, HEAD"
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    assert _parse(chunked, "GET", False).body == b"abcde"
    assert _dechunk(b"zz\r\nnot chunked") == b""
    for junk in (b"", b"SSH-2.0-OpenSSH\r\n", b"HTTP/1.1 abc\r\n\r\n"):
        with pytest.raises(NoAnswer):
            _parse(junk, "GET", False)


@pytest.mark.parametrize(
    "content, words",
    [
        (b"<!DOCTYPE html>\n<html></html>\n", "is not a sha256sum manifest: SHA256SUMS line 1"),
        (bytes(range(256)), "binary data, not UTF-8"),
        (b"x\x00y\n", "NUL bytes"),
        (b"\n\n", "lists no files"),
    ],
)
def test_a_manifest_that_is_not_one_is_one_line(tmp_path: Path, content: bytes, words: str) -> None:
    path = tmp_path / "m"
    path.write_bytes(content)
    with pytest.raises(HarnessError, match=words) as err:
        load_manifest("http://127.0.0.1:1", str(path))
    assert "\n" not in str(err.value)


def test_manifest_folders_children_and_listing_detection(tmp_path: Path) -> None:
    path = tmp_path / "m"
    path.write_text(f"{DIGEST}  top.txt\n{DIGEST}  a/b/x y.txt\n{DIGEST}  a/c.txt\n")
    entries = load_manifest("http://127.0.0.1:1", str(path))
    t = Target("http://127.0.0.1:1", entries, settings())
    assert t.folders == ["a", "a/b"] and t.children("") == ["a", "top.txt"]
    assert t.children("a") == ["b", "c.txt"]
    assert t.listed(b'<a href="b/">b/</a> <a href="c.txt">c.txt</a>', "a") == ["b", "c.txt"]
    assert t.listed(b"x%20y.txt", "a/b") == ["x y.txt"]  # URL-escaped name
    assert t.url_path("a/b/x y.txt") == "/a/b/x%20y.txt"


def test_every_traversal_form_reaches_the_outside_files() -> None:
    # Decoded the way a naive server would, each form must climb out and name the file.
    for name, make in TRAVERSAL_FORMS.items():
        target = make(3, "etc/passwd")
        assert target.count("etc") == 1 and len(target) > len("etc/passwd") + 6, name
    assert OUTSIDE["etc/passwd"].search(b"daemon:x:1:1\nroot:x:0:0:root:/root:/bin/bash\n")
    assert not OUTSIDE["etc/passwd"].search(b"<html>root of the pool</html>")
