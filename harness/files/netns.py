"""Two test hosts on two subnets joined by a router, made of Linux network namespaces.

server host (S) --veth-- router (R, ip_forward) --veth-- client host (C). Only addresses of these
self-made namespaces are used. Needs CAP_NET_ADMIN (root); names are unique per run and
`down()` always removes everything (also at interpreter exit).
"""

from __future__ import annotations

import atexit
import secrets
import shutil
import subprocess
from collections.abc import Sequence

from harness.errors import HarnessError


def _ip(*args: str) -> None:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=15)
    if r.returncode != 0:
        raise HarnessError(f"ip {' '.join(args)}: {r.stderr.strip() or r.returncode}")


def netns_problem() -> str | None:
    """Why namespaces cannot be made here (None when they can): tried for real."""
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    probe = f"h7probe-{secrets.token_hex(3)}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return f"cannot create network namespaces (needs CAP_NET_ADMIN): {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


class TwoSubnets:
    """Server and client namespaces on different subnets, routed through a router namespace."""

    def __init__(self, subnet_server: str = "10.231.1", subnet_client: str = "10.231.2") -> None:
        rid = secrets.token_hex(3)
        self.server, self.router, self.client = (f"h7{k}-{rid}" for k in ("srv", "rtr", "cli"))
        # veth names live briefly in the root namespace: unique and <= 15 characters.
        self.links = {k: f"h7{k}{rid}" for k in ("s", "rs", "c", "rc")}
        self.subnet_server, self.subnet_client = subnet_server, subnet_client
        self.server_ip = f"{subnet_server}.2"
        self.client_ip = f"{subnet_client}.2"
        self._made: list[str] = []

    def exec_prefix(self, namespace: str) -> list[str]:
        """argv prefix that runs a command inside `namespace`."""
        return ["ip", "netns", "exec", namespace]

    def up(self) -> TwoSubnets:
        """Create namespaces, links, addresses and routes; undo everything on failure."""
        atexit.register(self.down)
        try:
            for ns in (self.server, self.router, self.client):
                _ip("netns", "add", ns)
                self._made.append(ns)
            L = self.links
            self._pair(L["s"], self.server, f"{self.subnet_server}.2", L["rs"], "1")
            self._pair(L["c"], self.client, f"{self.subnet_client}.2", L["rc"], "1")
            for ns in (self.server, self.router, self.client):
                _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", self.server, "route", "add", "default", "via", f"{self.subnet_server}.1")
            _ip("-n", self.client, "route", "add", "default", "via", f"{self.subnet_client}.1")
            r = self.run(self.router, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
            if r.returncode != 0:
                raise HarnessError(f"cannot enable forwarding in {self.router}: {r.stderr}")
        except BaseException:
            self.down()
            raise
        return self

    def _pair(self, host_if: str, host_ns: str, host_ip: str, rtr_if: str, rtr_host: str) -> None:
        subnet = host_ip.rsplit(".", 1)[0]
        _ip("link", "add", host_if, "type", "veth", "peer", "name", rtr_if)
        _ip("link", "set", host_if, "netns", host_ns)
        _ip("link", "set", rtr_if, "netns", self.router)
        _ip("-n", host_ns, "addr", "add", f"{host_ip}/24", "dev", host_if)
        _ip("-n", self.router, "addr", "add", f"{subnet}.{rtr_host}/24", "dev", rtr_if)
        _ip("-n", host_ns, "link", "set", host_if, "up")
        _ip("-n", self.router, "link", "set", rtr_if, "up")

    def run(
        self, namespace: str, argv: Sequence[str], timeout: float = 120, env: dict | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside `namespace` and capture its output."""
        return subprocess.run(
            [*self.exec_prefix(namespace), *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )

    def down(self) -> None:
        """Delete the namespaces (their veths go with them) and any stray root-namespace link."""
        for ns in reversed(self._made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self._made.clear()
        for name in self.links.values():
            subprocess.run(["ip", "link", "del", name], capture_output=True)
        atexit.unregister(self.down)

    def __enter__(self) -> TwoSubnets:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()
