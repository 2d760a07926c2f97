"""Two test hosts on one machine: network namespaces joined by a veth pair, or several (root only).

`ip link set DEV down` on one end is a real cable cut: TCP goes silent, no FIN, no RST; bringing it back
up lets TCP retransmit whatever it had queued, which is exactly the delivered-backlog hazard.
Addresses live only inside these namespaces; nothing here can reach another host.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass


def netns_available() -> tuple[bool, str]:
    """Whether namespaces can be made here, and if not, why (for skip messages)."""
    if os.geteuid() != 0:
        return False, "network namespaces need root (CI runs as root)"
    if shutil.which("ip") is None:
        return False, "iproute2's `ip` is not installed"
    return True, ""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class NetnsPair:
    """Namespaces `<prefix>-bed` (bedside) and `<prefix>-con` (console) on a /30 over a veth pair."""

    prefix: str = "tlp"
    subnet: str = "10.231.77"

    @property
    def bed(self) -> str:
        return f"{self.prefix}-bed"

    @property
    def con(self) -> str:
        return f"{self.prefix}-con"

    @property
    def bed_ip(self) -> str:
        return f"{self.subnet}.1"

    @property
    def con_ip(self) -> str:
        return f"{self.subnet}.2"

    @property
    def con_dev(self) -> str:
        return f"{self.prefix}c0"

    def exec_prefix(self, ns: str) -> list[str]:
        return ["ip", "netns", "exec", ns]

    def __enter__(self) -> NetnsPair:
        self.teardown()
        _ip("netns", "add", self.bed)
        _ip("netns", "add", self.con)
        _ip("link", "add", f"{self.prefix}b0", "type", "veth", "peer", "name", self.con_dev)
        _ip("link", "set", f"{self.prefix}b0", "netns", self.bed)
        _ip("link", "set", self.con_dev, "netns", self.con)
        for ns, dev, addr in ((self.bed, f"{self.prefix}b0", self.bed_ip), (self.con, self.con_dev, self.con_ip)):
            _ip("-n", ns, "addr", "add", f"{addr}/30", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        return self

    def cut(self) -> None:
        _ip("-n", self.con, "link", "set", self.con_dev, "down")

    def restore(self) -> None:
        _ip("-n", self.con, "link", "set", self.con_dev, "up")

    def teardown(self) -> None:
        for ns in (self.bed, self.con):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def __exit__(self, *exc) -> None:
        self.teardown()


@dataclass
class NetnsHost:
    """One namespace `<prefix>-bed` for the bedside, joined by a veth pair to this (the root) namespace, where
    the console, its window and the test run: a cut of the root-side device is the same silent cable cut as
    NetnsPair's, while the console's loopback sockets (window, master) stay reachable."""

    prefix: str = "tlh"
    subnet: str = "10.231.79"

    @property
    def bed(self) -> str:
        return f"{self.prefix}-bed"

    @property
    def bed_ip(self) -> str:
        return f"{self.subnet}.1"

    @property
    def root_dev(self) -> str:
        return f"{self.prefix}r0"

    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.bed]

    def __enter__(self) -> NetnsHost:
        self.teardown()
        _ip("netns", "add", self.bed)
        _ip("link", "add", f"{self.prefix}b0", "type", "veth", "peer", "name", self.root_dev)
        _ip("link", "set", f"{self.prefix}b0", "netns", self.bed)
        _ip("-n", self.bed, "addr", "add", f"{self.bed_ip}/30", "dev", f"{self.prefix}b0")
        _ip("-n", self.bed, "link", "set", f"{self.prefix}b0", "up")
        _ip("-n", self.bed, "link", "set", "lo", "up")
        _ip("addr", "add", f"{self.subnet}.2/30", "dev", self.root_dev)
        _ip("link", "set", self.root_dev, "up")
        return self

    def cut(self) -> None:
        _ip("link", "set", self.root_dev, "down")

    def restore(self) -> None:
        _ip("link", "set", self.root_dev, "up")

    def teardown(self) -> None:
        subprocess.run(["ip", "link", "del", self.root_dev], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.bed], capture_output=True)

    def __exit__(self, *exc) -> None:
        self.teardown()


@dataclass
class NetnsPaths:
    """Namespaces `<prefix>-bed` and `<prefix>-con` joined by several veth pairs, one /30 each (`subnets`): as
    many real network paths between the same two hosts (link.paths). `cut(k)` is a silent cable cut of path k."""

    prefix: str = "tlm"
    subnets: tuple[str, ...] = ("10.231.90", "10.231.91")

    @property
    def bed(self) -> str:
        return f"{self.prefix}-bed"

    @property
    def con(self) -> str:
        return f"{self.prefix}-con"

    def bed_ip(self, k: int) -> str:
        return f"{self.subnets[k]}.1"

    def con_dev(self, k: int) -> str:
        return f"{self.prefix}c{k}"

    def exec_prefix(self, ns: str) -> list[str]:
        return ["ip", "netns", "exec", ns]

    def link_sets(self, side: str) -> list[str]:
        """The `--set` overrides that put a role on these paths: path 0 the default, the others link.paths."""
        first = f"link.bind_host={self.bed_ip(0)}" if side == "bedside" else f"link.bedside_host={self.bed_ip(0)}"
        return [first, "link.paths=" + ",".join(self.bed_ip(k) for k in range(1, len(self.subnets)))]

    def __enter__(self) -> NetnsPaths:
        self.teardown()
        _ip("netns", "add", self.bed)
        _ip("netns", "add", self.con)
        for ns in (self.bed, self.con):
            _ip("-n", ns, "link", "set", "lo", "up")
        for k, subnet in enumerate(self.subnets):
            bdev, cdev = f"{self.prefix}b{k}", self.con_dev(k)
            _ip("link", "add", bdev, "type", "veth", "peer", "name", cdev)
            _ip("link", "set", bdev, "netns", self.bed)
            _ip("link", "set", cdev, "netns", self.con)
            for ns, dev, addr in ((self.bed, bdev, f"{subnet}.1"), (self.con, cdev, f"{subnet}.2")):
                _ip("-n", ns, "addr", "add", f"{addr}/30", "dev", dev)
                _ip("-n", ns, "link", "set", dev, "up")
        return self

    def cut(self, k: int) -> None:
        _ip("-n", self.con, "link", "set", self.con_dev(k), "down")

    def restore(self, k: int) -> None:
        _ip("-n", self.con, "link", "set", self.con_dev(k), "up")

    def teardown(self) -> None:
        for ns in (self.bed, self.con):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def __exit__(self, *exc) -> None:
        self.teardown()
