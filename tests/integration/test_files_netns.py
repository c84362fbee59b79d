"""Another host on another network: server and `harness files verify` in two network namespaces
on two subnets joined by a router namespace; every hash must match."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.files.pool import MANIFEST, PoolSpec, build_pool
from harness.paths import ROOT
from harness.services import free_port, running
from harness.services.fileserver import LocalFileServer, netns_ready_check

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def hosts(files_cfg):
    """Two hosts + router; skipped with the reason when namespaces cannot be made."""
    from harness.files.netns import TwoSubnets, netns_problem

    problem = netns_problem()
    if problem:
        pytest.skip(problem)
    net = TwoSubnets(files_cfg.files.netns.subnet_server, files_cfg.files.netns.subnet_client)
    net.up()
    try:
        yield net
    finally:
        net.down()
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert net.server not in listed and net.client not in listed


@pytest.mark.parametrize("impl", ["nginx", "python"])
def test_verify_from_another_network(impl, hosts, files_cfg, tmp_path: Path) -> None:
    from harness.files.nginx import nginx_binary

    if impl == "nginx" and nginx_binary() is None:
        pytest.skip("nginx is not installed")
    count = 150
    root = build_pool(tmp_path / "pool", PoolSpec(count=count, seed=21))
    # Independent oracle for the manifest itself: coreutils on the server's disk.
    assert subprocess.run(["sha256sum", "-c", "--quiet", MANIFEST], cwd=root).returncode == 0

    # The client really is elsewhere: its route to the server goes through the router.
    route = hosts.run(hosts.client, ["ip", "route", "get", hosts.server_ip]).stdout
    assert f"via {files_cfg.files.netns.subnet_client}.1" in route, route

    port = free_port()
    srv = LocalFileServer(
        root,
        files_cfg.files.server,
        impl=impl,
        host=hosts.server_ip,
        port=port,
        wrap=hosts.exec_prefix(hosts.server),
        ready_check=netns_ready_check(hosts.client),  # healthy = reachable from the client
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with running(srv):
        url = f"http://{hosts.server_ip}:{port}/"
        report = tmp_path / "report.json"
        argv = [sys.executable, "-m", "harness", "files", "verify", url, "--jobs", "4"]
        r = hosts.run(hosts.client, argv + ["--report", str(report)], env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"OK: {count} files, {count} ok, 0 mismatch, 0 missing, 0 errors" in r.stdout
        data = json.loads(report.read_text())
        assert data["ok"] and data["counts"]["ok"] == count and data["base_url"] == url[:-1]
        # Loopback in the client namespace is its own: the server is not there.
        probe = hosts.run(hosts.client, argv[:5] + [f"http://127.0.0.1:{port}/", "--retries", "0"])
        assert probe.returncode != 0
