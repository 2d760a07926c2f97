"""Helpers for tests that run real `teleop` processes on loopback (or in the project's namespaces)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import zmq

from base.procs import Role, free_ports, port_overrides, start_role
from teleop.bench.watchdog import EventLog
from transport import codec
from transport.messages import Telemetry
from transport.security import client_security, throwaway_keys
from transport.zmqlink import tcp, telemetry_subscriber


def sets(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


class Session:
    """A bedside and (optionally) a console, on fresh ports, with the bedside's event log followed."""

    def __init__(self, tmp: Path, extra: list[str] | None = None, bed_prefix=None, con_prefix=None,
                 bed_extra: list[str] | None = None, con_extra: list[str] | None = None, video: bool = False) -> None:
        self.video = video
        ctrl, telem, video = free_ports(3)
        self.ports = (ctrl, telem, video)
        self.key_overrides = throwaway_keys(tmp / "keys")
        self.recordings = tmp / "recordings"  # black-box recordings stay in the test's directory
        base = (port_overrides(ctrl, telem, video) + self.key_overrides + [f"recording.dir={self.recordings}"]
                + (extra or []))
        self.bed_sets = base + (bed_extra or [])
        self.con_sets = base + (con_extra or [])
        self.tmp = tmp
        self.log_path = tmp / "bedside-events.jsonl"
        self.bed_summary = tmp / "bedside.json"
        self.con_summary = tmp / "console.json"
        self.bed_prefix, self.con_prefix = bed_prefix, con_prefix
        self.bedside: Role | None = None
        self.console: Role | None = None
        self.events = EventLog(self.log_path)
        self.seen: list[dict] = []

    def start_bedside(self) -> Role:
        video = [] if self.video else ["--no-video"]
        self.bedside = start_role("bedside", ["bedside", *video, "--event-log", str(self.log_path), "--summary",
                                              str(self.bed_summary), *sets(self.bed_sets)], prefix=self.bed_prefix)
        return self.bedside

    def start_console(self, *more: str) -> Role:
        self.console = start_role("console", ["console", "--headless", "--summary", str(self.con_summary),
                                              *sets(self.con_sets), *more], prefix=self.con_prefix)
        return self.console

    def wait_event(self, pred, timeout: float = 10.0) -> dict | None:
        for rec in self.seen:
            if pred(rec):
                return rec
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            new = self.events.new()
            self.seen += new
            for rec in new:
                if pred(rec):
                    return rec
            time.sleep(0.01)
        return None

    def wait_engaged(self, timeout: float = 15.0) -> dict:
        rec = self.wait_event(lambda r: r.get("type") == "event" and r.get("to") == "ENABLED", timeout)
        assert rec is not None, self.diagnostics()
        return rec

    def console_summary(self) -> dict:
        assert self.console is not None
        self.console.stop()
        assert self.con_summary.exists(), self.diagnostics()
        return json.loads(self.con_summary.read_text())

    def bedside_summary(self) -> dict:
        assert self.bedside is not None
        self.bedside.stop()
        assert self.bed_summary.exists(), self.diagnostics()
        return json.loads(self.bed_summary.read_text())

    def diagnostics(self) -> str:
        out = []
        for r in (self.bedside, self.console):
            if r is not None:
                out.append(f"--- {r.name} (exit {r.proc.poll()}):\n{r.stderr_text()[-3000:]}")
        return "\n".join(out)

    def close(self) -> None:
        for r in (self.console, self.bedside):
            if r is not None:
                r.stop()


class TelemetryTap:
    """A read-only SUB on the bedside's telemetry, with a monitor's key, like a monitor."""

    def __init__(self, host: str, port: int, session: Session, identity: str = "monitor") -> None:
        keys_dir = session.key_overrides[0].split("=", 1)[1]
        sec = client_security(keys_dir, identity)
        self.sock = telemetry_subscriber(zmq.Context.instance(), tcp(host, port), sec)

    def latest(self, timeout: float = 2.0) -> Telemetry:
        """The newest telemetry available, waiting up to `timeout` for at least one."""
        end = time.monotonic() + timeout
        last = None
        while time.monotonic() < end:
            if self.sock.poll(20):
                while self.sock.poll(0):
                    msg = codec.decode(self.sock.recv())
                    if isinstance(msg, Telemetry):
                        last = msg
                if last is not None:
                    return last
        raise AssertionError("no telemetry from the bedside")

    def close(self) -> None:
        self.sock.close(0)
