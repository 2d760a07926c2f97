"""`teleop replay FILE --to-bedside HOST[:PORT]`: re-drive a (simulated) bedside with a recorded command
stream and compare the arm trajectory it produces with the recorded one.

Why this design: the bedside is deterministic given its command stream and timing (bedside/arm.py servoes
toward the newest accepted setpoint under speed limits), so replaying the same poses with the same relative
timing must reproduce the measured trajectory, and any difference beyond timing jitter means the bedside
(or the recording) changed. The stream is re-stamped as a live console would send it (fresh epoch from our
own ENABLE, our own sequence numbers and send times) and goes through the bedside's full rule set like any
command; nothing is bypassed. If the bedside refuses or holds (a step limit from a different start pose,
its watchdog on a stalled re-drive, an e-stop), the report says so and the comparison fails.

Which stream: the bedside's own record (`/bedside/command` as received, with `/bedside/telemetry` in the
same clock) when present, else the console's (`/console/command` as sent, `/console/telemetry` as
received). The pure parts (`plan`, `Restamper`, `compare`) are unit-tested; `run_redrive` is the socket
loop, shaped like the console's (transport/zmqlink.py sockets, transport/security.py keys).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import zmq

from qa.session import RecordingError, Session
from recording.catalog import BEDSIDE, CONSOLE, Topics
from transport import codec
from transport.messages import (
    ARM_NAMES,
    N_ARMS,
    Ack,
    AckStatus,
    CartesianSetpoint,
    ConsoleFlags,
    Disable,
    Enable,
    EStop,
    Event,
    EventKind,
    OperatingState,
    Ping,
    ServoCp,
    Telemetry,
)

log = logging.getLogger("qa.redrive")

DEFAULT_TOLERANCE_MM = 1.0
"""Largest position error (any arm, any instant) for a re-drive to count as reproducing the recording. The
simulated arms move ≤ 250 mm/s and a re-drive on a loaded host jitters by about a millisecond, so
reproduction is typically within 0.1 mm; 1 mm is far above that and far below any visible deviation."""
CATCH_UP_NS = 5_000_000
"""Behind schedule by more than this, superseded servo_cp are skipped (a burst of up to 5 still fits the
console socket's 16-message queue and keeps every recorded command, limit hits included)."""
MAX_LAG_MS = 25.0
"""The time alignment search range: the re-drive's first command vs the recording's."""


@dataclass(frozen=True, slots=True)
class RecCommand:
    t_rel_ns: int
    kind: str  # servo_cp / enable / disable / ping / estop
    epoch: int
    flags: int = 0
    arm_mask: int = 0
    arms: tuple[CartesianSetpoint, ...] = ()
    engage: bool = False


@dataclass
class Plan:
    role: str
    commands: list[RecCommand]
    ref_t_rel_ns: np.ndarray  # recorded telemetry, relative to the first command
    ref_pos: np.ndarray  # (n, arms, 3) m, arms in wire order (ARM_NAMES)
    recorded_freezes: int
    arms_commanded: tuple[str, ...]


_KINDS = ("servo_cp", "enable", "disable", "ping", "estop")


def plan(session: Session) -> Plan:
    """The command stream and reference trajectory of the recording (bedside record preferred)."""
    role = "bedside" if (session.commands("bedside")["type"] == 0).any() else "console"
    cmd = session.commands(role)
    tel = session.telemetry(role)
    if not (cmd["type"] == 0).any() if len(cmd) else True:
        raise RecordingError(f"{', '.join(str(f.path) for f in session.files)}: no servo_cp in {BEDSIDE.command} or "
                             f"{CONSOLE.command}, nothing to re-drive: give a recording of a teleoperated session")
    if not len(tel):
        raise RecordingError(f"{session.names(role)}: no {Topics(role).telemetry} to compare the re-drive with: "
                             "give a recording that has it")
    # host-clock times of that role (the table is on the session timeline; a constant shift cancels, but
    # a varying clock offset must not enter the comparison)
    t_cmd = session.from_timeline(role, cmd["t"])
    t_tel = session.from_timeline(role, tel["t"])
    t0 = int(t_cmd[0])
    out: list[RecCommand] = []
    mask_all = 0
    for i in range(len(cmd)):
        ty = int(cmd["type"][i])
        if ty < 0:
            continue
        kind = _KINDS[ty]
        if kind == "servo_cp":
            arms = tuple(CartesianSetpoint(tuple(cmd["pos"][i, j]), tuple(cmd["ori"][i, j]),  # type: ignore[arg-type]
                                           float(np.nan_to_num(cmd["jaw"][i, j]))) for j in range(N_ARMS))
            m = int(cmd["arm_mask"][i])
            mask_all |= m
            out.append(RecCommand(int(t_cmd[i]) - t0, kind, int(cmd["epoch"][i]), int(cmd["flags"][i]), m, arms))
        else:
            out.append(RecCommand(int(t_cmd[i]) - t0, kind, int(cmd["epoch"][i]), engage=bool(cmd["engage"][i])))
    freezes = session.count("bedside", BEDSIDE.freeze) if role == "bedside" else sum(
        1 for e in session.events() if e.kind == "hold") // max(1, bin(mask_all).count("1"))
    return Plan(role, out, (t_tel - t0).astype(np.int64), tel["pos"].copy(), freezes,
                tuple(a for j, a in enumerate(ARM_NAMES) if mask_all >> j & 1))


class Restamper:
    """Recorded commands -> fresh wire messages: our epoch (granted to our ENABLE), our sequence numbers, our
    send time; poses, flags and masks unchanged."""

    def __init__(self) -> None:
        self.seq = 0
        self.epoch = 0
        self.awaiting_enable = False
        self.enable_seq = -1
        self.refused_enables = 0

    def build(self, c: RecCommand, now_ns: int) -> bytes:
        self.seq += 1
        if c.kind == "servo_cp":
            msg = ServoCp(self.epoch, self.seq, now_ns, ConsoleFlags(c.flags), c.arm_mask, c.arms)
        elif c.kind == "enable":
            self.awaiting_enable = True
            self.enable_seq = self.seq
            msg = Enable(self.epoch, self.seq, now_ns)
        elif c.kind == "disable":
            msg = Disable(self.epoch, self.seq, now_ns)
        elif c.kind == "estop":
            msg = EStop(self.epoch, self.seq, now_ns, c.engage)
        else:
            msg = Ping(self.epoch, self.seq, now_ns)
        return codec.encode(msg)

    def on_ack(self, ack: Ack) -> None:
        """ENABLED gives our epoch. A refused ENABLE is counted and the stream goes on (and is refused by
        the bedside, as it would be for a console): the result reports it."""
        if ack.status is AckStatus.ENABLED:
            self.epoch = ack.epoch
            self.awaiting_enable = False
        elif ack.echo_seq == self.enable_seq and ack.status.rejected:
            self.refused_enables += 1
            self.awaiting_enable = False


@dataclass
class Comparison:
    ok: bool
    tolerance_mm: float
    lag_ms: float
    samples: int
    per_arm: dict[str, dict[str, float]] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [f"time alignment: replay lags recording by {self.lag_ms:+.1f} ms over {self.samples} telemetry samples"]
        for arm, d in self.per_arm.items():
            out.append(f"{arm}: max {d['max_mm']:.3f} mm (at {d['max_at_s']:.3f} s), RMS {d['rms_mm']:.3f} mm")
        out.append(("REPRODUCED" if self.ok else "NOT REPRODUCED") + f" (tolerance: max ≤ {self.tolerance_mm} mm)")
        return out


def compare(ref_t: np.ndarray, ref_pos: np.ndarray, new_t: np.ndarray, new_pos: np.ndarray,
            tolerance_mm: float = DEFAULT_TOLERANCE_MM, max_lag_ms: float = MAX_LAG_MS,
            step_ms: float = 0.5) -> Comparison:
    """Position error of the new trajectory against the recorded one, after the constant lag (within
    ±max_lag_ms) that minimises the RMS error. Times in ns relative to each run's first command; positions
    (n, arms, 3) in metres. Only the time both runs cover counts."""
    ref_t = np.asarray(ref_t, np.float64)
    new_t = np.asarray(new_t, np.float64)
    n_arms = ref_pos.shape[1]
    best: tuple[float, float, np.ndarray] | None = None
    for lag in np.arange(-max_lag_ms, max_lag_ms + 1e-9, step_ms):
        tt = new_t - lag * 1e6
        sel = (tt >= ref_t[0]) & (tt <= ref_t[-1])
        if sel.sum() < 2:
            continue
        err = np.zeros((int(sel.sum()), n_arms))
        for j in range(n_arms):
            d2 = np.zeros(int(sel.sum()))
            for k in range(3):
                r = np.interp(tt[sel], ref_t, ref_pos[:, j, k])
                d2 += (new_pos[sel, j, k] - r) ** 2
            err[:, j] = np.sqrt(d2)
        err = np.nan_to_num(err, nan=0.0)
        rms = float(np.sqrt(np.mean(err**2)))
        if best is None or rms < best[1]:
            best = (float(lag), rms, err)
    if best is None:
        return Comparison(False, tolerance_mm, 0.0, 0, {})
    lag, _rms, err = best
    tt = (new_t - lag * 1e6)
    tt = tt[(tt >= ref_t[0]) & (tt <= ref_t[-1])]
    per = {ARM_NAMES[j] if j < len(ARM_NAMES) else str(j): {"max_mm": float(err[:, j].max() * 1000),
                                                   "rms_mm": float(np.sqrt(np.mean(err[:, j] ** 2)) * 1000),
                                                   "max_at_s": float(tt[int(np.argmax(err[:, j]))] / 1e9)}
           for j in range(n_arms)}
    ok = all(d["max_mm"] <= tolerance_mm for d in per.values())
    return Comparison(ok, tolerance_mm, lag, err.shape[0], per)


@dataclass
class RedriveResult:
    comparison: Comparison
    acks: Counter
    freezes: list[str]
    recorded_freezes: int
    sent: int
    send_dropped: int
    max_late_ms: float
    problems: list[str]
    skipped: int = 0

    @property
    def ok(self) -> bool:
        return self.comparison.ok and not self.problems

    def lines(self) -> list[str]:
        out = [f"sent {self.sent} commands ({self.send_dropped} not queued, {self.skipped} superseded while late), "
               f"latest send {self.max_late_ms:.1f} ms behind schedule",
               "acks: " + ", ".join(f"{k} {v}" for k, v in sorted(self.acks.items())),
               f"bedside holds: {len(self.freezes)} (recorded {self.recorded_freezes})"
               + "".join(f"\n  {f}" for f in self.freezes)]
        out += self.comparison.lines()
        out += [f"PROBLEM: {p}" for p in self.problems]
        return out


def _tel_row(tel: Telemetry) -> np.ndarray:
    return np.asarray([a.measured_cp.position for a in tel.arms], np.float64)


def run_redrive(cfg, host: str, control_port: int, telemetry_port: int, p: Plan,
                tolerance_mm: float = DEFAULT_TOLERANCE_MM, settle_s: float = 0.3,
                progress=None, realtime: bool = False) -> RedriveResult:
    """Connect like the console (CURVE with the configured identity, which must be a surgeon key), replay
    `p`'s commands on their recorded schedule, collect telemetry, compare.

    Paced like the console's loop: `realtime` asks for the console's SCHED_FIFO priority, and a loop that
    fell behind never sends a catch-up burst of servo_cp (only the newest due one goes; the bedside would
    apply only that one anyway). ENABLE, DISABLE and e-stops are never skipped."""
    from base.runtime import realtime_gc, realtime_scheduling
    from transport.security import for_client
    from transport.zmqlink import control_client, tcp, telemetry_subscriber, wait_readable

    ctx = zmq.Context.instance()
    sec = for_client(cfg)
    ctrl = control_client(ctx, tcp(host, control_port), sec)
    sub = telemetry_subscriber(ctx, tcp(host, telemetry_port), sec)
    if realtime:
        realtime_scheduling(cfg.console.realtime_priority, "replay")
    realtime_gc()
    skipped = 0
    rs = Restamper()
    acks: Counter = Counter()
    freezes: list[str] = []
    held: list[tuple[int, str]] = []
    new_t: list[int] = []
    new_pos: list[np.ndarray] = []
    problems: list[str] = []
    sent = dropped = 0
    max_late = 0.0
    t0: int | None = None

    def drain(now: int) -> None:
        while ctrl.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            msg = codec.decode(ctrl.recv(zmq.NOBLOCK))
            if isinstance(msg, Ack):
                acks[msg.status.name] += 1
                rs.on_ack(msg)
        while sub.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            msg = codec.decode(sub.recv(zmq.NOBLOCK))
            if isinstance(msg, Telemetry) and t0 is not None:
                new_t.append(now - t0)
                new_pos.append(_tel_row(msg))
            elif (isinstance(msg, Event) and msg.kind is EventKind.STATE_CHANGE
                  and msg.to_state is OperatingState.PAUSED and t0 is not None):
                held.append((now - t0, f"{msg.reason.name}: {msg.text}"))

    try:
        # the bedside must be there before the schedule starts (telemetry flows, a ping is answered)
        deadline = time.monotonic() + 10.0
        ponged = False
        while time.monotonic() < deadline and not ponged:
            if ctrl.getsockopt(zmq.EVENTS) & zmq.POLLOUT:
                ctrl.send(rs.build(RecCommand(0, "ping", 0), time.monotonic_ns()), zmq.NOBLOCK)
            if wait_readable([ctrl], 0.1):
                msg = codec.decode(ctrl.recv())
                ponged = isinstance(msg, Ack)
        if not ponged:
            raise ConnectionError(f"no answer from the bedside at {host}:{control_port} (address, keys?)")
        cmds = list(p.commands)
        first = next((c for c in cmds if c.kind != "ping"), None)
        if first is None or first.kind != "enable":
            cmds.insert(0, RecCommand(cmds[0].t_rel_ns - 20_000_000, "enable", 0))  # a fresh session first
        shift = -cmds[0].t_rel_ns
        t0 = time.monotonic_ns() + 50_000_000
        total = len(cmds)
        for n, c in enumerate(cmds):
            due = t0 + c.t_rel_ns + shift
            if c.kind == "servo_cp" and rs.awaiting_enable:  # as a console does: stream once granted
                give_up = time.monotonic_ns() + 1_000_000_000
                while rs.awaiting_enable and time.monotonic_ns() < give_up:
                    wait_readable([ctrl, sub], 0.0005)
                    drain(time.monotonic_ns())
                now = time.monotonic_ns()
                if now > due:
                    shift += now - due
                    due = now
                if rs.awaiting_enable:
                    problems.append("the bedside did not grant a session (ENABLE unanswered)")
                    rs.awaiting_enable = False
            while True:
                now = time.monotonic_ns()
                if now >= due:
                    break
                wait_readable([ctrl, sub], min(0.002, (due - now) / 1e9))
                drain(time.monotonic_ns())
            now = time.monotonic_ns()
            nxt = cmds[n + 1] if n + 1 < total else None
            if (c.kind == "servo_cp" and nxt is not None and nxt.kind == "servo_cp"
                    and now - due > CATCH_UP_NS and t0 + nxt.t_rel_ns + shift <= now):
                skipped += 1  # superseded before it could go: no catch-up burst
                continue
            max_late = max(max_late, (now - due) / 1e6)
            try:
                ctrl.send(rs.build(c, now), zmq.NOBLOCK)
                sent += 1
            except zmq.Again:
                dropped += 1
            drain(now)
            if progress is not None and n % 2000 == 0:
                progress(n / total, "re-driving")
        last_ns = time.monotonic_ns() - t0
        if cmds[-1].kind != "disable":  # release as a console does when it stops (no watchdog hold)
            end = time.monotonic_ns() + 5_000_000
            while time.monotonic_ns() < end:
                wait_readable([ctrl, sub], 0.001)
                drain(time.monotonic_ns())
            with contextlib.suppress(zmq.Again):
                ctrl.send(rs.build(RecCommand(0, "disable", 0), time.monotonic_ns()), zmq.NOBLOCK)
        end = time.monotonic_ns() + int(settle_s * 1e9)
        while time.monotonic_ns() < end:
            wait_readable([ctrl, sub], 0.005)
            drain(time.monotonic_ns())
    finally:
        ctrl.close(0)
        sub.close(0)
    if not new_t:
        problems.append("no telemetry received from the bedside")
        return RedriveResult(Comparison(False, tolerance_mm, 0.0, 0), acks, freezes, p.recorded_freezes, sent,
                             dropped, max_late, problems, skipped)
    # the recording's time origin is its first command; ours is the first command we sent
    raw_t = np.asarray(new_t, np.int64)
    ours = raw_t <= last_ns
    keep = p.ref_t_rel_ns <= p.commands[-1].t_rel_ns  # the recorded stream's span: what came after is not ours
    comp = compare(p.ref_t_rel_ns[keep], p.ref_pos[keep], raw_t[ours] - shift, np.asarray(new_pos)[ours],
                   tolerance_mm)
    freezes = [f"{t / 1e9:.3f} s {text}" for t, text in held if t <= last_ns]
    if len(freezes) != p.recorded_freezes:
        problems.append(f"the bedside held {len(freezes)} time(s), the recording {p.recorded_freezes}")
    if rs.refused_enables:
        problems.append(f"the bedside refused {rs.refused_enables} ENABLE(s) (e-stop, fault or another surgeon)")
    if dropped:  # informative: the trajectory comparison decides whether it mattered
        log.warning("%d commands could not be queued (socket queue full or link not up)", dropped)
    return RedriveResult(comp, acks, freezes, p.recorded_freezes, sent, dropped, max_late, problems, skipped)
