"""harness.urls: the address forms users type are accepted or refused the same way everywhere."""

from __future__ import annotations

import pytest

from harness.errors import HarnessError
from harness.urls import base_url, grpc_address, host_port

ACCEPTED = {
    "http://h:8000": ("h", 8000, "http://h:8000"),
    "h:8000": ("h", 8000, "http://h:8000"),
    " https://h/ ": ("h", 443, "https://h"),
    "http://h/v2": ("h", 80, "http://h/v2"),
}
REFUSED = ["triton", "ftp://h:21", "http://h:99999", "h:port", "http://:80"]


@pytest.mark.parametrize("url", ACCEPTED)
def test_accepted_forms_agree(url: str) -> None:
    host, port, base = ACCEPTED[url]
    assert host_port(url) == (host, port)
    assert base_url(url) == base


@pytest.mark.parametrize("url", REFUSED)
def test_refused_forms_are_refused_by_both(url: str) -> None:
    # The reachability pre-check (host_port) must not pass an address base_url then refuses.
    for parse in (host_port, base_url):
        with pytest.raises(HarnessError) as err:
            parse(url)
        assert url in str(err.value), f"{parse.__name__}: the message names no address"


def test_grpc_address_drops_scheme_and_slash() -> None:
    assert grpc_address("grpc://h:8001/") == "h:8001"
    assert grpc_address("h:8001") == "h:8001"
