"""Run the surgeon console engine headless: read the master, stream servo_cp at 1 kHz, report the link.

Prints `READY ...` once its sockets are up. With --summary, writes what it sent, what the bedside did
with it (acks by status), RTT and send-interval percentiles, and every link/session event.
"""

from __future__ import annotations

import argparse
import logging
import time
from array import array

import zmq

from console.engine import ConsoleEngine
from console.master import FileMaster, MasterDevice, ScriptedMaster
from teleop.config import Config
from teleop.runtime import StopFlag, announce_ready, realtime_gc, write_json
from teleop.stats import percentiles
from transport.codec import restamp
from transport.zmqlink import control_client, tcp, telemetry_subscriber, wait_readable

log = logging.getLogger("console")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--headless", action="store_true", help="no window (the only mode until the GUI lands)")
    p.add_argument("--seconds", type=float, default=None, help="stop after this long")
    p.add_argument("--summary", metavar="FILE", help="write the run's figures as JSON on exit ('-' = stdout)")


def make_master(cfg: Config, start_ns: int) -> MasterDevice:
    c = cfg.console
    if c.master == "file":
        return FileMaster(c.master_file, start_ns)
    return ScriptedMaster(c.master, start_ns, engage_at_s=c.engage_at_s)


def make_controller(cfg: Config):
    from console.teleop import TeleopController

    return TeleopController(cfg.teleop)


class ConsoleRunner:
    """The socket loop around ConsoleEngine. Single thread: a tick sends, then waits receiving until the next."""

    def __init__(self, cfg: Config, master: MasterDevice | None = None, controller=None) -> None:
        self.cfg = cfg
        ctx = zmq.Context.instance()
        self.ctrl = control_client(ctx, tcp(cfg.link.bedside_host, cfg.link.control_port))
        self.sub = telemetry_subscriber(ctx, tcp(cfg.link.bedside_host, cfg.link.telemetry_port))
        now = time.monotonic_ns()
        self.master = master or make_master(cfg, now)
        self.engine = ConsoleEngine(cfg, controller or make_controller(cfg), now)
        self.send_gaps = array("q")
        self._last_servo_ns: int | None = None

    def _drain(self) -> None:
        for sock in (self.ctrl, self.sub):
            while True:
                try:
                    data = sock.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self.engine.on_bytes(time.monotonic_ns(), data)

    def run(self, stop: StopFlag, seconds: float | None = None) -> None:
        period = 1_000_000_000 // self.cfg.console.rate_hz
        now = time.monotonic_ns()
        end = None if seconds is None else now + int(seconds * 1e9)
        next_tick = now
        realtime_gc()
        announce_ready(bedside=tcp(self.cfg.link.bedside_host, self.cfg.link.control_port),
                       rate_hz=self.cfg.console.rate_hz)
        while not stop and (end is None or now < end):
            now = time.monotonic_ns()
            frames = self.engine.step(now, self.master.read(now))
            sent_servo = self.engine.session_ready and frames
            for f in frames:
                try:
                    self.ctrl.send(restamp(f, time.monotonic_ns()), zmq.NOBLOCK)
                except zmq.Again:
                    self.engine.counters["send_would_block"] += 1
            if sent_servo:
                if self._last_servo_ns is not None:
                    self.send_gaps.append(now - self._last_servo_ns)
                self._last_servo_ns = now
            else:
                self._last_servo_ns = None
            next_tick += period
            if now - next_tick > period:  # fell behind (stall): skip, never send a catch-up burst
                next_tick = now + period
            while True:
                self._drain()
                remaining = next_tick - time.monotonic_ns()
                if remaining <= 0:
                    break
                wait_readable([self.ctrl, self.sub], remaining / 1e9)

    def finish(self, linger_s: float = 0.2) -> None:
        """Release the session, stop sending; collect the acks in flight so `lost` counts only what never came back."""
        for f in self.engine.shutdown(time.monotonic_ns()):
            try:
                self.ctrl.send(f, zmq.NOBLOCK)
            except zmq.Again:
                self.engine.counters["send_would_block"] += 1
        end = time.monotonic_ns() + int(linger_s * 1e9)
        while time.monotonic_ns() < end:
            self._drain()
            wait_readable([self.ctrl, self.sub], 0.01)
        self.master.close()
        self.ctrl.close(0)
        self.sub.close(0)

    def summary(self) -> dict:
        e = self.engine
        c = e.counters
        return {
            "commands_sent": c["commands_sent"],
            "commands_applied": c["applied"],
            "commands_rejected": c["rejected"],
            "lost": max(0, c["commands_sent"] - c["applied"] - c["rejected"]),
            "rtt_us": percentiles([r / 1e3 for r in e.rtt_log]),
            "send_gap_us": percentiles([g / 1e3 for g in self.send_gaps], with_max=True),
            "clock_offset_us": None if e.offset_ns(time.monotonic_ns()) is None
            else e.offset_ns(time.monotonic_ns()) / 1e3,
            "link": e.link.value,
            "counters": dict(c),
            "events": [
                {"t_ns": ev.t_ns, "source": ev.source, "name": ev.name, "reason": ev.reason.name, "text": ev.text}
                for ev in e.events
            ],
        }


def run(args: argparse.Namespace) -> int:
    runner = ConsoleRunner(args.cfg)
    try:
        runner.run(StopFlag(), args.seconds)
    finally:
        runner.finish()
    if args.summary:
        write_json(None if args.summary == "-" else args.summary, runner.summary())
    return 0
