"""Two test hosts on one machine: network namespaces joined by a veth pair, or several (root only).

`ip link set DEV down` on one end is a real cable cut: TCP goes silent, no FIN, no RST; bringing it back
up lets TCP retransmit whatever it had queued, which is exactly the delivered-backlog hazard.
Addresses live only inside these namespaces; nothing here can reach another host.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from dataclasses import dataclass

from rehearsal.linkemu import LinkProfile


def netns_available() -> tuple[bool, str]:
    """Whether namespaces can be made here, and if not, why (for skip messages)."""
    if os.geteuid() != 0:
        return False, "network namespaces need root (CI runs as root)"
    if shutil.which("ip") is None:
        return False, "iproute2's `ip` is not installed"
    return True, ""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


HALF_NORMAL_MEAN = math.sqrt(2 / math.pi)
HALF_NORMAL_SD = math.sqrt(1 - 2 / math.pi)


def netem_args(profile: LinkProfile) -> list[str]:
    """`tc qdisc ... netem` arguments for one direction of `profile` (rehearsal/linkemu.py LinkProfile).

    The emulator's jitter is a half-normal extra delay of scale `jitter_ms` (never earlier than the base); netem's
    is a normal spread around its delay, so the same mean and spread are asked for: delay + σ·√(2/π) and
    σ·√(1 − 2/π). netem may reorder packets when the spread exceeds their spacing (TCP puts them back in order;
    the emulator never reorders). Ramps and scheduled outages have no netem form: refused (ValueError)."""
    if profile.ramp_to_ms is not None or profile.all_outages():
        raise ValueError("netem cannot ramp a delay or schedule an outage: use the emulator (--net proxy)")
    args = ["delay", f"{profile.delay_ms + profile.jitter_ms * HALF_NORMAL_MEAN:.3f}ms"]
    if profile.jitter_ms > 0:
        args += [f"{profile.jitter_ms * HALF_NORMAL_SD:.3f}ms", "distribution", "normal"]
    if profile.rate_mbps > 0:
        args += ["rate", f"{profile.rate_mbps:g}mbit"]
    return args


def netem_available() -> tuple[bool, str]:
    """Whether `tc qdisc ... netem` works here (root, `tc`, and a kernel built with sch_netem), and if not, why.
    Tried on a throwaway namespace's loopback: the only sure test of a kernel option."""
    if shutil.which("tc") is None:
        return False, "iproute2's `tc` is not installed (bootstrap.sh installs iproute2)"
    ns = f"tlnetem{os.getpid()}"
    try:
        _ip("netns", "add", ns)
        out = subprocess.run(["tc", "-n", ns, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
                             capture_output=True, text=True)
    except subprocess.CalledProcessError as exc:
        return False, f"no namespace for the netem probe: {exc.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    if out.returncode != 0:
        return False, f"this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM): {out.stderr.strip() or out.returncode}"
    return True, ""


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
        try:  # half-built (a failed `ip`, Ctrl-C): nothing is left behind, __exit__ would not run
            _ip("netns", "add", self.bed)
            _ip("netns", "add", self.con)
            for ns in (self.bed, self.con):
                _ip("-n", ns, "link", "set", "lo", "up")
            for k, subnet in enumerate(self.subnets):
                bdev, cdev = self.bed_dev(k), self.con_dev(k)
                _ip("link", "add", bdev, "type", "veth", "peer", "name", cdev)
                _ip("link", "set", bdev, "netns", self.bed)
                _ip("link", "set", cdev, "netns", self.con)
                for ns, dev, addr in ((self.bed, bdev, f"{subnet}.1"), (self.con, cdev, f"{subnet}.2")):
                    _ip("-n", ns, "addr", "add", f"{addr}/30", "dev", dev)
                    _ip("-n", ns, "link", "set", dev, "up")
        except BaseException:
            self.teardown()
            raise
        return self

    def exists(self) -> bool:
        """Whether either namespace is there (`ip netns list`): what a test of the cleanup asks."""
        out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
        return self.bed in out or self.con in out

    def bed_dev(self, k: int) -> str:
        return f"{self.prefix}b{k}"

    def shape(self, k: int, args: list[str]) -> None:
        """netem `args` (netem_args) on both ends of path k: each direction delayed once, as the emulator does."""
        for ns, dev in ((self.bed, self.bed_dev(k)), (self.con, self.con_dev(k))):
            subprocess.run(["tc", "-n", ns, "qdisc", "replace", "dev", dev, "root", "netem", *args], check=True,
                           capture_output=True, text=True)

    def cut(self, k: int) -> None:
        _ip("-n", self.con, "link", "set", self.con_dev(k), "down")

    def restore(self, k: int) -> None:
        _ip("-n", self.con, "link", "set", self.con_dev(k), "up")

    def teardown(self) -> None:
        for ns in (self.bed, self.con):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def __exit__(self, *exc) -> None:
        self.teardown()
