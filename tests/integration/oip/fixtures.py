"""pytest fixtures: real OIP servers (correct and deliberately faulty) serving `mnist-onnx`.

Register with `pytest_plugins = ["tests.integration.oip.fixtures"]` in a conftest, then:

    def test_x(oip_server):
        server = oip_server("mlserver")                  # correct, started, cached per session
        bad = oip_server(FAULTY["swapped_rows"], "swapped_rows")

Servers are started on first request, shared for the session (one per (kind, fault)), restarted
when found dead (e.g. after `dies_on_bad_input` did its job), and all stopped at session end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.integration.oip.launchers import FAULTS_BY_KIND, OipServer, make_server

CORRECT = ["triton", "pytriton", "mlserver", "kserve"]
# The server each fault is deployed on (one where the fault is really reachable).
FAULTY = {
    "wrong_weights": "pytriton",
    "swapped_rows": "pytriton",
    "wrong_dtype": "mlserver",
    "dies_on_bad_input": "kserve",
    "slow": "kserve",
}
assert all(fault in FAULTS_BY_KIND[kind] for fault, kind in FAULTY.items())

OipServerFactory = Callable[..., OipServer]


@pytest.fixture(scope="session")
def oip_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OipServerFactory]:
    """Factory `oip_server(kind, fault=None) -> OipServer`, started and ready (session cache)."""
    servers: dict[tuple[str, str | None], OipServer] = {}

    def get(kind: str, fault: str | None = None) -> OipServer:
        key = (kind, fault)
        server = servers.get(key)
        if server is None:
            label = f"oip-{kind}" + (f"-{fault}" if fault else "")
            server = make_server(kind, fault, work_dir=tmp_path_factory.mktemp(label))
            servers[key] = server
        if not server.ready():
            # First use, or it died (dies_on_bad_input): (re)start on fresh ports.
            server.stop()
            server.start()
        return server

    yield get
    # In parallel: PyTriton alone takes ~4 s to shut down.
    with ThreadPoolExecutor(max_workers=max(1, len(servers))) as pool:
        list(pool.map(lambda server: server.stop(), servers.values()))
