"""A simulated haptic device and the hand that holds it, speaking the two-way bridge protocol: tests and benches
exercise the whole force loop across real processes without hardware.

    python -m rehearsal.haptic --bridge tcp://127.0.0.1:5583 --force tcp://127.0.0.1:5584 --report out.json

Model (`HandDevice`, pure, injected time): the device's handle and the hand on it are one mass `mass_kg` with
the device's own damping; the operator's arm is a spring-damper (`hand_k`, `hand_b`) pulling the handle toward
where the operator means it to be (`Profile.target`); the console's force acts on the handle. Semi-implicit
Euler at the loop's rate:

    m·a = F_console + k_h·(target − x) − (b_h + b_d)·v

`Profile`: rest at the right hand's home, engage pulses while resting (the console ignores a press while already
following), then press along `press_dir` (master frame) by `press_mm` over `ramp_s`, optionally going on to
`press2_mm`, and optionally wiggle in and out (`wiggle_mm` at `wiggle_hz`) so energy flows both ways.

The device is a bridge like any vendor's (docs/masters.md): it publishes version-2 samples (pose, velocity, a
deadman presence, a source id) and applies the newest force message, and like a real device it applies zero
force if no force message has arrived for `FORCE_TIMEOUT_NS` (its own guard behind the console's). It records
what it received (`DeviceLog`) and writes a JSON report when stopped (SIGTERM) or after --seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from base.geometry import IDENTITY_Q, ZERO_V, Pose, Vec3
from base.runtime import StopFlag, announce_ready
from base.stats import percentiles
from console.master import MasterButtons, MasterHand
from console.masters.network import MessageError, decode_force_message, encode_master_message

HOMES: tuple[Vec3, Vec3] = ((0.08, 0.0, 0.0), (-0.08, 0.0, 0.0))
FORCE_TIMEOUT_NS = 100_000_000
"""The device's own guard: no force message for this long, zero force."""


@dataclass
class HandDevice:
    mass_kg: float = 0.3
    hand_k: float = 200.0
    hand_b: float = 4.0
    device_b: float = 0.5
    x: Vec3 = HOMES[0]
    v: Vec3 = ZERO_V

    def step(self, dt: float, force: Vec3, target: Vec3) -> None:
        b = self.hand_b + self.device_b
        a = tuple((force[i] + self.hand_k * (target[i] - self.x[i]) - b * self.v[i]) / self.mass_kg for i in range(3))
        self.v = (self.v[0] + a[0] * dt, self.v[1] + a[1] * dt, self.v[2] + a[2] * dt)
        self.x = (self.x[0] + self.v[0] * dt, self.x[1] + self.v[1] * dt, self.x[2] + self.v[2] * dt)


@dataclass(frozen=True)
class Profile:
    press_dir: Vec3 = (0.0, 0.0, -1.0)
    """Into the tissue, master frame: with the endoscope looking straight down (its home), into the screen."""
    start_s: float = 3.0
    press_mm: float = 0.0
    ramp_s: float = 1.0
    press2_at_s: float | None = None
    press2_mm: float = 0.0
    wiggle_mm: float = 0.0
    wiggle_hz: float = 1.0
    wiggle_at_s: float | None = None
    engage_every_s: float = 1.0
    engage_until_s: float = 3.0

    def depth_mm(self, t: float) -> float:
        if t < self.start_s:
            return 0.0
        d = self.press_mm * min(1.0, (t - self.start_s) / self.ramp_s)
        if self.press2_at_s is not None and t >= self.press2_at_s:
            d += (self.press2_mm - self.press_mm) * min(1.0, (t - self.press2_at_s) / self.ramp_s)
        if self.wiggle_at_s is not None and t >= self.wiggle_at_s:
            d += self.wiggle_mm * math.sin(2.0 * math.pi * self.wiggle_hz * (t - self.wiggle_at_s))
        return d

    def target(self, t: float) -> Vec3:
        d = self.depth_mm(t) / 1e3
        h = HOMES[0]
        return (h[0] + self.press_dir[0] * d, h[1] + self.press_dir[1] * d, h[2] + self.press_dir[2] * d)

    def engage(self, t: float) -> bool:
        """A 100 ms press every `engage_every_s` from 0.8 s (after presence is confirmed) until `engage_until_s`."""
        if t < 0.8 or t > self.engage_until_s:
            return False
        return (t - 0.8) % self.engage_every_s < 0.1


@dataclass
class DeviceLog:
    """What the device received and did, for the report (times on this host's monotonic clock)."""

    t0_ns: int
    forces: list[tuple[float, float, float, float, int, bool, int, int]] = field(default_factory=list)
    """Per force message: (t_s, fx, fy, fz) of the right hand, its measured time (console clock), fresh, and the
    console's send time and receive time of the force (its clock: the stale guard's)."""
    new_samples_ns: list[int] = field(default_factory=list)
    """Arrival of each force carrying a new bedside measurement."""
    ages_ms: list[float] = field(default_factory=list)
    energy_j: float = 0.0
    energy_min_j: float = 0.0
    pc_ticks: int = 0
    trace: list[tuple[float, float, float]] = field(default_factory=list)
    """(t_s, depth along press_dir in mm, force along −press_dir in N), every 10 ms."""
    errors: int = 0


def run(bridge: str, force_endpoint: str, profile: Profile, seconds: float | None, stop: StopFlag,
        rate_hz: float = 1000.0, source: int | None = None, model: HandDevice | None = None) -> DeviceLog:
    import zmq

    from transport.zmqlink import force_subscriber, master_publisher

    ctx = zmq.Context.instance()
    pub = master_publisher(ctx, bridge)
    sub = force_subscriber(ctx, force_endpoint)
    src = source if source is not None else (int.from_bytes(os.urandom(4), "little") or 1)
    dev = model or HandDevice()
    t0 = time.monotonic_ns()
    log = DeviceLog(t0)
    force, force_rx = ZERO_V, -(10**18)
    last_measured = 0
    seq = 0
    period = int(1e9 / rate_hz)
    nxt = t0
    last = t0
    next_trace = t0
    pd = profile.press_dir
    announce_ready(bridge=bridge, force=force_endpoint, source=src)
    try:
        while not stop and (seconds is None or nxt - t0 < seconds * 1e9):
            now = time.monotonic_ns()
            while True:
                try:
                    data = sub.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                try:
                    m = decode_force_message(data)
                except MessageError:
                    log.errors += 1
                    continue
                force, force_rx = m.forces[0], now
                log.forces.append(((now - t0) / 1e9, *m.forces[0], m.measured_ns, m.fresh, m.send_ns, m.rx_ns))
                if m.passivity[0]:
                    log.pc_ticks += 1
                if m.measured_ns and m.measured_ns != last_measured:
                    last_measured = m.measured_ns
                    log.new_samples_ns.append(now)
                    log.ages_ms.append((now - m.measured_ns) / 1e6)
            applied = force if now - force_rx <= FORCE_TIMEOUT_NS else ZERO_V
            dt = min(max((now - last) / 1e9, 0.0), 0.01)
            last = now
            t = (now - t0) / 1e9
            dev.step(dt, applied, profile.target(t))
            log.energy_j -= (applied[0] * dev.v[0] + applied[1] * dev.v[1] + applied[2] * dev.v[2]) * dt
            log.energy_min_j = min(log.energy_min_j, log.energy_j)
            if now >= next_trace:
                next_trace = now + 10_000_000
                depth = sum((dev.x[i] - HOMES[0][i]) * pd[i] for i in range(3)) * 1e3
                log.trace.append((round(t, 4), round(depth, 4), round(-sum(applied[i] * pd[i] for i in range(3)), 5)))
            seq += 1
            hands = (MasterHand(Pose(dev.x, IDENTITY_Q), 0.5), MasterHand(Pose(HOMES[1], IDENTITY_Q), 0.5))
            buttons = MasterButtons(operator_present=True, engage=profile.engage(t))
            with contextlib.suppress(zmq.Again):  # a full queue: the console takes the newest anyway
                pub.send(encode_master_message(seq, now, hands, buttons, True, (dev.v, ZERO_V), src, deadman=True),
                         zmq.NOBLOCK)
            nxt += period
            delay = nxt - time.monotonic_ns()
            if delay < -50_000_000:
                nxt = time.monotonic_ns()
            elif delay > 0:
                time.sleep(delay / 1e9)
    finally:
        pub.close(0)
        sub.close(0)
    return log


def force_rate_hz(arrivals_ns: list[int], t_from_ns: int, t_to_ns: int) -> float | None:
    """New force samples per second that arrived in [t_from, t_to)."""
    n = sum(1 for t in arrivals_ns if t_from_ns <= t < t_to_ns)
    span = (t_to_ns - t_from_ns) / 1e9
    return round(n / span, 1) if span > 0 else None


def report(log: DeviceLog, contact_from_s: float) -> dict:
    """The device's figures; force rate and ages from `contact_from_s` on (the device in contact)."""
    t_from = log.t0_ns + int(contact_from_s * 1e9)
    t_to = log.new_samples_ns[-1] if log.new_samples_ns else t_from
    ages = [a for a, t in zip(log.ages_ms, log.new_samples_ns, strict=True) if t >= t_from]
    return {
        "force_messages": len(log.forces), "force_samples": len(log.new_samples_ns),
        "force_rate_hz": force_rate_hz(log.new_samples_ns, t_from, t_to),
        "force_age_ms": percentiles(ages, True, ("p50", "p95"), 3) if ages else None,
        "device_energy_j": log.energy_j, "device_energy_min_j": log.energy_min_j,
        "passivity_ticks_seen": log.pc_ticks, "errors": log.errors, "trace": log.trace,
        "forces": [list(f) for f in log.forces],
    }


def _vec(text: str) -> Vec3:
    try:
        x, y, z = (float(c) for c in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give x,y,z (e.g. 0,0,-1)") from None
    n = math.sqrt(x * x + y * y + z * z)
    if not n:
        raise argparse.ArgumentTypeError("the press direction must not be zero")
    return (x / n, y / n, z / n)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rehearsal.haptic", description=__doc__.split("\n\n")[0])
    p.add_argument("--bridge", required=True, help="the console's console.bridge_endpoint (we connect)")
    p.add_argument("--force", required=True, help="the console's console.bridge_force_endpoint (we connect)")
    p.add_argument("--seconds", type=float, default=None)
    p.add_argument("--report", type=Path, help="write the device's JSON report here on exit")
    p.add_argument("--press-dir", type=_vec, default=(0.0, 0.0, -1.0), help="x,y,z, master frame (default 0,0,-1)")
    p.add_argument("--start-s", type=float, default=3.0)
    p.add_argument("--press-mm", type=float, default=0.0, help="hand travel toward the tissue")
    p.add_argument("--ramp-s", type=float, default=1.0)
    p.add_argument("--press2-at-s", type=float, default=None)
    p.add_argument("--press2-mm", type=float, default=0.0)
    p.add_argument("--wiggle-mm", type=float, default=0.0)
    p.add_argument("--wiggle-hz", type=float, default=1.0)
    p.add_argument("--wiggle-at-s", type=float, default=None)
    p.add_argument("--engage-until-s", type=float, default=None,
                   help="press engage every second until then (default: --start-s); a press while following is "
                        "ignored by the console, one after a hold re-engages through ALIGNING")
    p.add_argument("--contact-from-s", type=float, default=None,
                   help="figures (rate, age) from this time on (default: when the press ends)")
    a = p.parse_args(argv)
    prof = Profile(a.press_dir, a.start_s, a.press_mm, a.ramp_s, a.press2_at_s, a.press2_mm, a.wiggle_mm,
                   a.wiggle_hz, a.wiggle_at_s,
                   engage_until_s=a.start_s if a.engage_until_s is None else a.engage_until_s)
    log = run(a.bridge, a.force, prof, a.seconds, StopFlag())
    out = report(log, a.contact_from_s if a.contact_from_s is not None else a.start_s + a.ramp_s)
    if a.report:
        a.report.write_text(json.dumps(out))
    else:
        json.dump({k: v for k, v in out.items() if k not in ("trace", "forces")}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
