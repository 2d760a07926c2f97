"""Run the surgeon console engine headless: read the master, stream servo_cp at 1 kHz, report the link.

Prints `READY ...` once its sockets are up. With --summary, writes what it sent, what the bedside did
with it (acks by status), RTT and send-interval percentiles, and every link/session event.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import deque
from collections.abc import Callable

import zmq

from base.config import Config, link_paths
from base.errors import UserError
from base.runtime import StopFlag, announce_ready, realtime_gc
from base.stats import Histogram
from console import uilink
from console.engine import ConsoleEngine, EngineEvent
from console.indicators import loop_figures
from console.master import FileMaster, MasterDevice, MasterError, ScriptedMaster
from console.masters.network import ForceMessage
from console.uilink import UiSupervisor
from recording.catalog import LINK_HZ, STATE_RECORD_HZ
from recording.convert import K_BEDSIDE, K_COMMAND, K_JSON, console_event_json
from recording.tap import NullTap
from safety.loop_health import RECENT_NS, loop_counters
from safety.loop_watch import LoopWatch, Stall
from transport import security
from transport.codec import restamp
from transport.messages import Reason
from transport.paths import PathMonitor
from transport.zmqlink import (
    control_client,
    tcp,
    telemetry_subscriber,
    ui_intent_server,
    ui_state_publisher,
    wait_readable,
)

log = logging.getLogger("console")
REPORT_NS = 5_000_000_000
LOOP_STEPS = ("master", "engine", "send", "record", "ui", "receive")
"""The engine loop's steps, in order, as loop health names them (`loop_max_us_<step>` in `/console/link`)."""
_MASTER, _ENGINE, _SEND, _RECORD, _UI, _RECEIVE = range(len(LOOP_STEPS))




MASTERS = ("circle", "figure8", "still", "file", "keyboard", "spacemouse", "bridge")
"""What `console.master` selects (and `switch_master` switches to): docs/masters.md."""


def master_kind(cfg: Config, ui: bool) -> str:
    """`console.master`, with `auto` resolved: the window's keyboard/mouse with a window, the circle without."""
    m = cfg.console.master
    return ("keyboard" if ui else "circle") if m == "auto" else m


def make_master(cfg: Config, start_ns: int, ui: bool = False, kind: str | None = None) -> MasterDevice:
    """The one master that drives. Each has its own input: the window's keyboard streams on console.master_port,
    a bridge on console.bridge_endpoint, so a window's keys and a bridge can never both move the arms."""
    c = cfg.console
    kind = kind or master_kind(cfg, ui)
    if kind == "file":
        return FileMaster(c.master_file, start_ns)
    if kind in ("keyboard", "bridge"):
        from console.masters.network import NetworkMaster

        if kind == "bridge":
            return NetworkMaster(c.bridge_endpoint, bind=True, timeout_ms=c.master_timeout_ms,
                                 force_endpoint=c.bridge_force_endpoint)
        if not ui:
            raise MasterError("console.master = keyboard is the window's keyboard and mouse: open the window "
                              "(`teleop console`, or --ui with a window attached) or choose another console.master")
        m = NetworkMaster(tcp("127.0.0.1", c.master_port), bind=True, timeout_ms=c.master_timeout_ms,
                          key="console.master_port", label="the window's keyboard/mouse stream")
        m.name = "keyboard+mouse (window)"
        return m
    if kind == "spacemouse":
        from console.masters.spacemouse import SpaceMouseMaster

        return SpaceMouseMaster(start_ns=start_ns, stale_ms=c.spacemouse_stale_ms)
    return ScriptedMaster(kind, start_ns, engage_at_s=c.engage_at_s)


def make_controller(cfg: Config):
    from console.controller import TeleopController

    return TeleopController(cfg.teleop, time.monotonic_ns(), rate_hz=cfg.console.rate_hz)


class ConsoleRunner:
    """The socket loop around ConsoleEngine. Single thread: a tick sends, then waits receiving until the next."""

    def __init__(self, cfg: Config, master: MasterDevice | None = None, controller=None, ui: bool = False,
                 recorder=None, step_hook: Callable[[int], None] | None = None) -> None:
        """`step_hook`: for tests only, called with the tick's time after the engine step of every tick."""
        self.cfg = cfg
        self.step_hook = step_hook
        self.watch: LoopWatch | None = None
        self._loop_counters: dict[str, int] = {}
        self._next_loop_ns = 0
        self._bedside_over: tuple[int, int | None] = (0, None)  # the bedside's loop_over_bound, when it last rose
        self.recorder = recorder  # recording.recorder.RecorderChild, owned by the caller
        self.tap = recorder.control_tap() if recorder is not None else NullTap()
        self._rec_events = 0
        self._next_link_ns = 0
        ctx = zmq.Context.instance()
        sec = security.for_client(cfg)
        paths = link_paths(cfg.link, "console")
        # Several paths (link.paths): one DEALER and one SUB per path, every DEALER with this console's one random
        # routing id (never starting with a zero byte, which ZeroMQ reserves), so the bedside knows them for one.
        rid = (b"c" + secrets.token_bytes(15)) if len(paths) > 1 else None
        self.ctrls = [control_client(ctx, tcp(p.host, p.control_port), sec, routing_id=rid) for p in paths]
        self.subs = [telemetry_subscriber(ctx, tcp(p.host, p.telemetry_port), sec) for p in paths]
        self.ctrl, self.sub = self.ctrls[0], self.subs[0]
        self.paths: PathMonitor | None = None
        """Each path's figures and the first-copy rule (transport/paths.py); None with one path."""
        if len(paths) > 1:
            self.paths = PathMonitor([tcp(p.host, p.control_port) for p in paths],
                                     cfg.link.console_timeout_ms * 1_000_000)
        now = time.monotonic_ns()
        controller = controller or make_controller(cfg)
        self.engine = ConsoleEngine(cfg, controller, now)
        self.send_gaps = Histogram()
        self._last_servo_ns: int | None = None
        self.ui: UiSupervisor | None = None
        self._inbound = [*self.ctrls, *self.subs]
        self.force_age = Histogram()
        """Force feedback: bedside measurement -> sent to the bridge (console clock, offset-corrected)."""
        self._force_seq = 0
        self._switch_to: str | None = None
        if ui:
            c = cfg.console
            self.ui = UiSupervisor(controller, c.gui_timeout_ms, cfg.video.stale_ms, cfg.video.stuck_ms)
            self.ui.on_select_master = self.request_master
            self.ui.on_voice = self._voice_event
            self.ui_pull = ui_intent_server(ctx, tcp("127.0.0.1", c.ui_intent_port), key="console.ui_intent_port")
            self.ui_pub = ui_state_publisher(ctx, tcp("127.0.0.1", c.ui_state_port), key="console.ui_state_port")
            self._inbound.append(self.ui_pull)
            self._events_published = 0
            self._rtt_history: deque[float | None] = deque(maxlen=90)
            self._next_state_ns = self._next_state_rec_ns = now
        self.master = master or make_master(cfg, now, ui)
        self.master_kind = master_kind(cfg, ui)
        """console.master's name for the master that drives (the window's Master list shows it)."""
        log.info("master: %s (console.master = %s)", self.master.name, cfg.console.master)
        self._next_report_ns = now + REPORT_NS

    def _report(self, now: int) -> None:
        """Headless: one line every few seconds with link state, RTT and clock offset."""
        self._next_report_ns = now + REPORT_NS
        e = self.engine
        rtt, off = e.rtt_ms(), e.offset_ns(now)
        arms = e.last_output.arm_mask if e.last_output is not None else 0
        log.info("link %s, RTT %s, clock offset %s, session %s, arms following mask %d, sent %d applied %d",
                 e.link.value, "-" if rtt is None else f"{rtt * 1000:.0f} us",
                 "-" if off is None else f"{off / 1000:+.0f} us", e.epoch or "none", arms,
                 e.counters["commands_sent"], e.counters["applied"])

    def _drain(self) -> None:
        """Every path's control and telemetry sockets; with several paths only the first copy of each bedside frame
        goes to the engine (and the recording), every copy feeding its path's figures (`PathMonitor.on_frame`)."""
        pm = self.paths
        for k, (ctrl, sub) in enumerate(zip(self.ctrls, self.subs, strict=True)):
            for sock in (ctrl, sub):
                while True:
                    try:
                        data = sock.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    now = time.monotonic_ns()
                    if pm is None or pm.on_frame(now, k, data):
                        self.engine.on_bytes(now, data)
                        self.tap.add(K_BEDSIDE, now, data)
        if self.ui is not None:
            while True:
                try:
                    data = self.ui_pull.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                now = time.monotonic_ns()
                self.ui.on_bytes(now, data, self.engine.offset_ns(now) or 0)


    def _send_paths(self, data: bytes) -> bool:
        """The same bytes on every path; True if at least one path took them."""
        pm = self.paths
        assert pm is not None
        sent = False
        for sock, p in zip(self.ctrls, pm.paths, strict=True):
            try:
                sock.send(data, zmq.NOBLOCK)
            except zmq.Again:
                p.send_would_block += 1
            else:
                p.sent += 1
                sent = True
        return sent

    def _path_events(self, now: int) -> None:
        """A path that goes silent or comes back: an engine event (window, recording, summary). The link itself
        is LOST only when every path is (the engine's watchdog is fed by the first copy from any path)."""
        assert self.paths is not None
        for name, state in self.paths.tick(now):
            text = (f"{name} silent for {self.cfg.link.console_timeout_ms} ms; the other paths carry the link"
                    if state == "LOST" else f"{name} back")
            log.warning("path %s: %s", state, text)
            self.engine.events.append(EngineEvent(now, "path", f"{name} {state}", Reason.LINK_LOST
                                                  if state == "LOST" else Reason.NONE, text))

    def _publish_state(self, now: int) -> None:
        """Engine state and new events for the window(s), at STATE_HZ; never blocks (PUB drops)."""
        e = self.engine
        events = e.events[self._events_published:]
        self._events_published = len(e.events)
        for ev in events:
            self.ui_pub.send(uilink.encode({"type": "event", **console_event_json(ev)}), zmq.NOBLOCK)
        if now < self._next_state_ns:
            return
        self._next_state_ns = now + 1_000_000_000 // uilink.STATE_HZ
        rtt = e.rtt_ms()
        self._rtt_history.append(None if rtt is None else round(rtt, 3))
        off = e.offset_ns(now)
        assert self.ui is not None
        state = uilink.encode({
            "type": "state", "t_ns": now, "link": e.link.value, "rtt_ms": rtt,
            "rtt_history_ms": list(self._rtt_history), "clock_offset_ns": off,
            "bedside": {"state": e.bedside_state.name, "reason": e.bedside_reason.name, "estop": e.bedside_estop},
            "session": {"epoch": e.epoch, "ready": e.session_ready},
            "teleop": e.controller.snapshot(), "video": self.ui.video_state(),
            "master": self.master.name, "master_kind": self.master_kind, "counters": {**e.counters, **self.ui.counters},
            "loop": self._loop_state(now),
            "paths": self.paths.snapshot() if self.paths is not None else None,
        })
        self.ui_pub.send(state, zmq.NOBLOCK)
        if now >= self._next_state_rec_ns and len(state) <= 60_000:  # what the window was told: the replay's HUD
            self._next_state_rec_ns = now + 1_000_000_000 // STATE_RECORD_HZ
            self.tap.add(K_JSON, now, state, b"state")

    def run(self, stop: StopFlag, seconds: float | None = None) -> None:
        period = 1_000_000_000 // self.cfg.console.rate_hz
        now = time.monotonic_ns()
        end = None if seconds is None else now + int(seconds * 1e9)
        next_tick = now
        realtime_gc()
        rec = self.recorder
        announce_ready(bedside=tcp(self.cfg.link.bedside_host, self.cfg.link.control_port),
                       rate_hz=self.cfg.console.rate_hz,
                       recording=(rec.info.get("file", "failed") if rec is not None else "off"),
                       recorder_video=(rec.video_endpoint or "off") if rec is not None else "off",
                       recorder_pid=rec.pid if rec is not None else 0)
        # Built here, in the loop's thread: a stall report quotes this thread's stack.
        self.watch = watch = LoopWatch("console", LOOP_STEPS, self.cfg.console.tick_bound_ms,
                                       self.cfg.logging.stall_dir, log, self.cfg.logging.stall_stacks == "all")
        lap, clock, hook = watch.lap, time.monotonic_ns, self.step_hook
        try:
            while not stop and (end is None or now < end):
                now = clock()
                stall = watch.tick(now, next_tick)
                if self.ui is not None:
                    self.ui.tick(now)
                    if self.ui.video.changed:
                        self.engine.on_video(now, self.ui.video.state.value, self.ui.video.reason)
                sample = self.master.read(now)
                lap(_MASTER, clock())
                frames = self.engine.step(now, sample)
                if hook is not None:
                    hook(now)
                lap(_ENGINE, clock())
                sent_servo = self.engine.session_ready and frames  # then the last frame is this tick's servo_cp
                for i, f in enumerate(frames):
                    t_send = clock()
                    data = restamp(f, t_send)
                    try:
                        if self.paths is None:
                            self.ctrl.send(data, zmq.NOBLOCK)
                        elif not self._send_paths(data):
                            raise zmq.Again
                    except zmq.Again:
                        self.engine.counters["send_would_block"] += 1
                        if sent_servo and i == len(frames) - 1:
                            self.engine.counters["servo_not_sent"] += 1
                    else:
                        self.tap.add(K_COMMAND, t_send, data)  # recorded after it left
                if sent_servo:
                    if self._last_servo_ns is not None:
                        self.send_gaps.add_ns(now - self._last_servo_ns)
                    self._last_servo_ns = now
                else:
                    self._last_servo_ns = None
                if getattr(self.master, "takes_force", False):
                    self._send_force(now, sample)
                if self.paths is not None:
                    self._path_events(now)
                lap(_SEND, clock())
                if self._switch_to is not None:
                    self.switch_master(now, self._switch_to)
                if stall is not None:
                    self._report_stall(stall, now)
                if now >= self._next_loop_ns:
                    self._loop_counters = watch.health.counters()
                    self._next_loop_ns = now + 1_000_000_000
                self._record(now)  # at most one NOBLOCK send, after the time-critical one
                lap(_RECORD, clock())
                if self.ui is not None:
                    self._publish_state(now)
                elif now >= self._next_report_ns:
                    self._report(now)
                lap(_UI, clock())
                next_tick += period
                if now - next_tick > period:  # fell behind (stall): skip, never send a catch-up burst
                    next_tick = now + period
                while True:
                    self._drain()
                    t = clock()
                    lap(_RECEIVE, t)
                    remaining = next_tick - t
                    if remaining <= 0:
                        break
                    wait_readable(self._inbound, remaining / 1e9)
                    watch.rest(clock())
        finally:
            self._loop_counters = watch.health.counters()  # the final figures for the summary and the recording
            watch.close()

    def _send_force(self, now: int, sample) -> None:
        """Force feedback to a master that takes it (a bridge), every tick, after the servo_cp has left."""
        out = self.engine.force_step(now, sample)
        self._force_seq += 1
        last = getattr(getattr(self.master, "state", None), "last", None)
        self.master.send_force(ForceMessage(self._force_seq, last.seq if last is not None else 0,
                                            time.monotonic_ns(), out.measured_ns, out.rx_ns, out.forces, out.fresh,
                                            out.passivity))
        if out.fresh and out.measured_ns:
            self.force_age.add_ns(max(0, now - out.measured_ns))

    def request_master(self, kind: str) -> None:
        """Switch masters at the next tick (from the window's `select_master` intent, or another thread)."""
        self._switch_to = kind

    def switch_master(self, now: int, kind: str) -> bool:
        """Make `kind` the one master that drives: the old one is closed, every arm holds and must be engaged again
        through ALIGNING (TeleopController.master_changed). Logged and kept as a "master" event. False (and an
        event saying why) if the new master cannot be opened: the old one keeps its place."""
        self._switch_to = None
        old = self.master.name
        if kind not in MASTERS:
            self._master_event(now, "switch refused", f"unknown master {kind!r}: use one of {', '.join(MASTERS)}")
            return False
        try:
            new = make_master(self.cfg, now, self.ui is not None, kind)
        except (MasterError, UserError) as exc:
            self._master_event(now, "switch refused", f"cannot switch from {old} to {kind}: {exc}")
            return False
        self.master.close()
        self.master, self.master_kind = new, kind
        text = f"master switched from {old} to {new.name}: arms held; align and press engage on the new master"
        self._master_event(now, "switched", text)
        if hasattr(self.engine.controller, "master_changed"):
            self.engine.controller.master_changed(now, text)
        return True

    def _voice_event(self, now: int, state: str, text: str) -> None:
        """The window's voice link changed state: an event (window log, recording, QA's voice losses); no hold."""
        reason = Reason.LINK_LOST if state == "LOST" else Reason.NONE
        self.engine.events.append(EngineEvent(now, "voice", state.lower(), reason, text or f"voice link {state}"))

    def _master_event(self, now: int, name: str, text: str) -> None:
        log.warning("master %s: %s", name, text)
        self.engine.events.append(EngineEvent(now, "master", name, Reason.CONSOLE_REQUEST, text))

    def _report_stall(self, stall: Stall, now: int) -> None:
        """An over-bound tick, after the send: logged with its stacks saved (safety/loop_watch.py), an engine
        event (window, recording, summary), `/console/stall` in the recording."""
        assert self.watch is not None
        stall = self.watch.report(stall, now)
        self.engine.on_loop_overrun(now, stall.text)
        self.tap.add_json("stall", stall.overrun.at_ns, stall.record())

    def _loop_state(self, now: int) -> dict:
        """Both loops' health for the window's HUD (console/ui/status.py): figures in ms, and whether each was
        over its bound within the last 10 s (the bedside's: when its `loop_over_bound` last rose)."""
        bed = loop_counters(self.engine.bedside_counters)
        over, since = self._bedside_over
        if bed.get("loop_over_bound", 0) != over:
            self._bedside_over = over, since = bed.get("loop_over_bound", 0), now
        assert self.watch is not None
        return {"engine": loop_figures(self._loop_counters, self.watch.health.recent(now)),
                "bedside": loop_figures(bed, since is not None and now - since < RECENT_NS)}

    def finish(self, linger_s: float = 0.2) -> None:
        """Release the session, stop sending; collect the acks in flight so `lost` counts only what never came back."""
        for f in self.engine.shutdown(time.monotonic_ns()):
            try:
                if self.paths is None:
                    self.ctrl.send(f, zmq.NOBLOCK)
                elif not self._send_paths(f):
                    raise zmq.Again
            except zmq.Again:
                self.engine.counters["send_would_block"] += 1
            else:
                self.tap.add(K_COMMAND, time.monotonic_ns(), f)
        end = time.monotonic_ns() + int(linger_s * 1e9)
        while time.monotonic_ns() < end:
            self._drain()
            wait_readable([*self.ctrls, *self.subs], 0.01)
        self._record(time.monotonic_ns(), force_link=True)
        self.master.close()
        for sock in (*self.ctrls, *self.subs):
            sock.close(0)
        if self.ui is not None:
            self.ui_pull.close(0)
            self.ui_pub.close(0)

    def _record(self, now: int, force_link: bool = False) -> None:
        """Hand the recorder this tick's engine events and (10 Hz) the link status; the tap sends them in batches."""
        if self.recorder is None:
            return
        e, tap = self.engine, self.tap
        while self._rec_events < len(e.events):
            ev = e.events[self._rec_events]
            self._rec_events += 1
            tap.add_json("event", ev.t_ns, console_event_json(ev))
        if now >= self._next_link_ns or force_link:
            self._next_link_ns = now + 1_000_000_000 // LINK_HZ
            snap = e.controller.snapshot() if hasattr(e.controller, "snapshot") else {}
            counters = {**e.counters, **(self.ui.counters if self.ui is not None else {}), **self._loop_counters}
            tap.add_json("link", now, {
                "t_ns": now, "link": e.link.value, "rtt_ms": e.rtt_ms(), "clock_offset_ns": e.offset_ns(now),
                "session_epoch": e.epoch, "session_ready": e.session_ready, "scale": snap.get("effective_scale"),
                "arms": {name: a.get("state") for name, a in snap.get("arms", {}).items()},
                "hands": snap.get("hands", {}),
                "counters": {k: int(v) for k, v in counters.items()},
                "paths": self.paths.snapshot() if self.paths is not None else None,
            })
        tap.flush(None if force_link else now)

    def summary(self) -> dict:
        e = self.engine
        c = e.counters
        offset = e.offset_ns(time.monotonic_ns())
        superseded = self.paths.superseded if self.paths is not None else 0  # answered late: no loss, no refusal
        return {
            "commands_sent": c["commands_sent"] - c["servo_not_sent"],
            "commands_not_sent": c["servo_not_sent"],
            "commands_applied": c["applied"],
            "commands_rejected": c["rejected"],
            "commands_superseded": superseded,
            "lost": max(0, c["commands_sent"] - c["servo_not_sent"] - c["applied"] - c["rejected"] - superseded),
            "rtt_us": e.rtt_hist.percentiles(),
            "bedside_dwell_us": e.dwell_hist.percentiles(),
            "send_gap_us": self.send_gaps.percentiles(with_max=True),
            "clock_offset_us": None if offset is None else offset / 1e3,
            "link": e.link.value,
            "counters": dict(c),
            "events": [console_event_json(ev) for ev in e.events],
            "loop": self.watch.summary() if self.watch is not None else None,
            "ui_counters": dict(self.ui.counters) if self.ui is not None else {},
            "master": self._master_summary(),
            "paths": self.paths.summary() if self.paths is not None else None,
        }

    def _master_summary(self) -> dict:
        m = self.master
        out: dict = {"name": m.name}
        state = getattr(m, "state", None)
        if state is not None:
            out.update(received=state.received, dropped=state.dropped, conflicts=state.conflicts)
        if getattr(m, "takes_force", False):
            out["force"] = {**self.engine.force.stats(), "sent": self._force_seq,
                            "age_us": self.force_age.percentiles(with_max=True)}
        return out


