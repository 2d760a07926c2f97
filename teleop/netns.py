"""Two test hosts on one machine: network namespaces joined by a veth pair (root only).

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
