"""Run the bedside agent (`BedsideServer`): bind the control (ROUTER) and telemetry (PUB) endpoints, drive the
simulated arms, freeze them on its own when the console goes quiet; start the stereo video sender (child
process, ROUTER on the video port) unless --no-video. The decisions are bedside/agent.py's; this is the shell.

Prints `READY ...` on stdout once bound. Every state change and freeze is logged, published on the
telemetry socket and, with --event-log, appended to a JSON-lines file.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
import time
from collections.abc import Callable

import zmq

from base.config import Config, link_paths
from base.errors import UserError
from base.runtime import JsonLines, StopFlag, announce_ready, hold_cpu_wake_latency, realtime_gc, realtime_scheduling
from bedside.agent import BedsideAgent
from recording.convert import K_BEDSIDE, K_COMMAND, event_json
from recording.recorder import RecorderChild
from recording.tap import NullTap
from safety.loop_watch import LoopWatch, Stall
from transport import codec, security
from transport.bedside_state import StateWriter
from transport.messages import N_ARMS
from transport.zmqlink import also_bind, control_server, tcp, telemetry_publisher

log = logging.getLogger("bedside")

VIDEO_NICE = 5
LOOP_STEPS = ("agent", "receive", "arms", "telemetry", "counters", "log", "tap")
"""The loop's steps, in order, as loop health names them (docs/protocol.md, COUNTERS `loop_max_us_<step>`)."""
_AGENT, _RECEIVE, _ARMS, _TELEMETRY, _COUNTERS, _LOG, _TAP = range(len(LOOP_STEPS))


def _later(a: int, b: int) -> int:
    """`max(a, b)` for two ints as the loop needs it every iteration: a conditional expression costs a fraction of
    the builtin's call (~1.8k instructions under 3.11)."""
    return b if b > a else a


class VideoStartError(UserError):
    label = "video error"


class VideoChild:
    """The video sender in a child process ('spawn'): encoding never shares a GIL with the control loop."""

    def __init__(self, cfg: Config, recorder: str | None = None, state: str | None = None) -> None:
        """`state`: the bedside state block (transport/bedside_state.py) the rendered endoscope draws from."""
        from video.sender import run_sender

        mp = multiprocessing.get_context("spawn")
        self.stop_event = mp.Event()
        self.report = mp.Queue()
        self.proc = mp.Process(target=run_sender, args=(cfg, self.stop_event, None),
                               kwargs={"report": self.report, "recorder": recorder, "state": state},
                               name="video-sender", daemon=True)
        self.proc.start()
        # Below the control loop in the scheduler's eyes: a busy encoder must not delay an ack.
        os.setpriority(os.PRIO_PROCESS, self.proc.pid, VIDEO_NICE)
        self.endpoint = ""
        try:
            kind, value = self.report.get(timeout=30)
        except queue.Empty:
            kind, value = "error", "video sender did not start within 30 s"
        if kind == "ready":
            self.endpoint = value
        else:
            # A bedside asked for video that runs without it would show the surgeon NO VIDEO and hold every
            # arm: better one line now, before anything binds, than a silent start.
            self.close()
            raise VideoStartError(f"the video sender could not start: {value}; fix that, or start the bedside "
                                  "with --no-video to run without video")

    def alive(self) -> bool:
        return self.proc.is_alive()

    def close(self) -> None:
        self.stop_event.set()
        self.proc.join(3)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(2)


class LocalEStop:
    """The bedside team's e-stop in the simulator: SIGUSR1 raises it, SIGUSR2 resets it (a real cart wires
    its mushroom button here). Latching: only the local reset clears it, and motion still needs ENABLE."""

    def __init__(self) -> None:
        self.pending: list[bool] = []
        signal.signal(signal.SIGUSR1, lambda *_: self.pending.append(True))
        signal.signal(signal.SIGUSR2, lambda *_: self.pending.append(False))

    def apply(self, agent: BedsideAgent, now_ns: int) -> None:
        while self.pending:
            if self.pending.pop(0):
                agent.raise_estop(now_ns, "local")
            else:
                agent.reset_estop(now_ns, "local")


class BedsideServer:
    """The socket loop around BedsideAgent, shaped like console/runner.py's ConsoleRunner: sockets, the loop and
    the clock live here; every decision (what a frame does, what a freeze or a counter records, which keys are
    revoked) is the agent's. The recorder is the caller's (started first: the video child records too)."""

    def __init__(self, cfg: Config, recorder: RecorderChild | None = None, event_log: str | None = None,
                 video: bool = True, step_hook: Callable[[int], None] | None = None) -> None:
        """`step_hook`: for tests only, called with the time after the arms advanced in every iteration that
        advances them (tests/test_loop_stall.py blocks it once to stall the loop on purpose)."""
        self.cfg = cfg
        self.step_hook = step_hook
        self.watch: LoopWatch | None = None
        self.recorder = recorder
        ctx = zmq.Context.instance()
        self.sec = security.for_server(cfg, ctx)  # the ZAP handler runs before anything binds
        self.tap = recorder.control_tap() if recorder is not None else NullTap()
        # Our own ports first: one in use is one line before any child process starts.
        self.ctrl = control_server(ctx, tcp(cfg.link.bind_host, cfg.link.control_port), self.sec,
                                   key="link.control_port")
        try:
            self.pub = telemetry_publisher(ctx, tcp(cfg.link.bind_host, cfg.link.telemetry_port), self.sec,
                                           key="link.telemetry_port")
        except BaseException:
            self.ctrl.close(0)
            raise
        # More paths (link.paths): a ROUTER each (one controller's connections share one routing id, which a
        # ROUTER admits once), and the one PUB bound on each, so telemetry and events go out on every path.
        self.paths = link_paths(cfg.link, "bedside")
        self.extra: list[zmq.Socket] = []
        try:
            for p in self.paths[1:]:
                self.extra.append(control_server(ctx, tcp(p.host, p.control_port), self.sec, key="link.paths"))
                also_bind(self.pub, tcp(p.host, p.telemetry_port), key="link.paths")
        except BaseException:
            for sock in (self.ctrl, *self.extra):
                sock.close(0)
            raise
        # What the rendered endoscope draws: the arms' state after every tick, in shared memory (no socket, no wait).
        self.state = StateWriter(N_ARMS) if video else None
        try:
            self.video = VideoChild(cfg, recorder.video_endpoint if recorder is not None else None,
                                    self.state.path if self.state is not None else None) if video else None
        except BaseException:
            for sock in (self.ctrl, self.pub, *self.extra):
                sock.close(0)
            if self.state is not None:
                self.state.close()
            raise
        self.events = JsonLines(event_log)
        # the box both ends share; the drivers' own watchdogs on the host's clock, not the loop's
        self.agent = BedsideAgent(cfg.bedside, time.monotonic_ns(), teleop=cfg.teleop, driver_clock=time.monotonic_ns)
        self.socks = [self.ctrl, *self.extra]
        if self.extra:
            self.agent.use_paths(len(self.paths))
        self.local_estop = LocalEStop()
        self._share_state(time.monotonic_ns())

    def _share_state(self, now: int) -> None:
        """The arms as they are after this tick, with the last command applied, for the rendered endoscope."""
        if self.state is not None:
            a = self.agent
            epoch, seq, send_ns, rx_ns = a.last_applied
            self.state.write(now, a.last_telemetry_seq, epoch, seq, send_ns, rx_ns, a.scene())

    def _announce(self, sched: str) -> None:
        cfg, rec = self.cfg, self.recorder
        announce_ready(
            control=tcp(cfg.link.bind_host, cfg.link.control_port),
            telemetry=tcp(cfg.link.bind_host, cfg.link.telemetry_port),
            video=(self.video.endpoint or "none") if self.video else "off",
            watchdog_ms=cfg.bedside.watchdog_ms,
            recording=rec.info.get("file", "failed") if rec is not None else "off",
            recorder_pid=rec.pid if rec is not None else 0,
            sched=sched,
            paths=len(self.paths),
        )
        log.info("bedside up: watchdog %d ms, tick %d Hz, telemetry %d Hz",
                 cfg.bedside.watchdog_ms, cfg.bedside.tick_hz, cfg.bedside.telemetry_hz)

    def _sender(self, frames: list, rx: int) -> str | None:
        """Who sent a control-socket message [peer, frame] (its key's `role:name`), or None if it is refused here: a
        wrong envelope, or a key revoked since the handshake."""
        agent, sec = self.agent, self.sec
        if len(frames) != 2:
            agent.on_bad_envelope()
            return None
        user = security.user_of(frames[1], sec is not None)
        if sec is not None:
            if agent.revocations_due(rx):
                agent.set_revoked(rx, (c.name for c in sec.auth.registry.clients() if c.revoked))
            if agent.refuse_revoked(user):
                return None
        return user

    def _receive(self, frames: list, rx: int) -> None:
        """One control-socket message: [peer, frame]. Acks leave at once, restamped, and are recorded after."""
        user = self._sender(frames, rx)
        if user is None:
            return
        agent, tap = self.agent, self.tap
        for out in agent.on_message(rx, frames[0].bytes, frames[1].bytes, user):
            t_ack = time.monotonic_ns()
            ack = codec.restamp(out.data, t_ack)
            try:
                self.ctrl.send_multipart([out.peer, ack], zmq.NOBLOCK)
            except zmq.Again:
                agent.on_ack_dropped()
            else:
                tap.add(K_BEDSIDE, t_ack, ack)  # recorded after it left, never before
        tap.add(K_COMMAND, rx, frames[1].bytes, user.encode())  # the command, not the peer id

    def _receive_path(self, path: int, frames: list, rx: int) -> None:
        """`_receive` with several paths: the agent knows copies by their path, and every ack leaves on every
        path (a ROUTER drops what is addressed to a peer it does not know), the console keeping the first."""
        user = self._sender(frames, rx)
        if user is None:
            return
        agent, tap = self.agent, self.tap
        for out in agent.on_path_message(rx, path, frames[0].bytes, frames[1].bytes, user):
            t_ack = time.monotonic_ns()
            ack = codec.restamp(out.data, t_ack)
            sent = False
            for sock in self.socks:
                try:
                    sock.send_multipart([out.peer, ack], zmq.NOBLOCK)
                    sent = True
                except zmq.Again:
                    pass
            if sent:
                tap.add(K_BEDSIDE, t_ack, ack)
            else:
                agent.on_ack_dropped()
        tap.add(K_COMMAND, rx, frames[1].bytes, user.encode())

    def _publish(self, t_ns: int, data: bytes) -> None:
        self.pub.send(data, zmq.NOBLOCK)
        self.tap.add(K_BEDSIDE, t_ns, data)

    def _report_counters(self, now: int) -> None:
        sec = self.sec
        if sec is not None:
            refusals = [sec.auth.refusals.popleft() for _ in range(len(sec.auth.refusals))]  # appended by ZAP
            self.agent.on_auth_report(now, refusals, sec.auth.counters)
        if self.watch is not None:
            self.agent.on_loop_health(now, self.watch.health.counters())
        self._publish(now, self.agent.counters_message(now))

    def _log_events(self) -> None:
        """The agent's new events and freezes: published, in the event log, in the recording."""
        for ev in self.agent.drain_events():
            self._publish(ev.send_ns, codec.encode(ev))
            self.events.write({"type": "event", **event_json(ev, ev.send_ns)})
        for f in self.agent.drain_freezes():
            rec = f.record()
            self.events.write({"type": "freeze", **rec})
            self.tap.add_json("freeze", f.at_ns, rec)

    def _report_stall(self, stall: Stall, now: int) -> None:
        """An over-bound tick, after the time-critical part: logged with its stacks saved (safety/loop_watch.py),
        an EVENT (LOOP_OVERRUN), `/bedside/stall` in the recording, a `stall` line in the event log."""
        assert self.watch is not None
        stall = self.watch.report(stall, now)
        self.agent.on_loop_health(now, {}, stall.text)
        rec = stall.record()
        self.events.write({"type": "stall", **rec})
        self.tap.add_json("stall", stall.overrun.at_ns, rec)

    def run(self, stop: StopFlag, seconds: float | None = None) -> None:
        cfg, agent, ctrl = self.cfg, self.agent, self.ctrl
        now = time.monotonic_ns()
        tick_ns = 1_000_000_000 // cfg.bedside.tick_hz
        telem_ns = 1_000_000_000 // cfg.bedside.telemetry_hz
        next_tick = next_telem = next_counters = now
        end = None if seconds is None else now + int(seconds * 1e9)
        waited: tuple[list, int] | None = None  # a frame the blocking wait returned, with its arrival time
        realtime_gc()
        # after the sockets: zmq's I/O thread too
        self._announce(realtime_scheduling(cfg.bedside.realtime_priority, "bedside"))
        hold_cpu_wake_latency(cfg.bedside.cpu_wake_latency_us, "bedside")
        # Built here, in the loop's thread: a stall report quotes this thread's stack.
        self.watch = watch = LoopWatch("bedside", LOOP_STEPS, cfg.bedside.tick_bound_ms, cfg.logging.stall_dir, log,
                                       cfg.logging.stall_stacks == "all")
        lap, clock, hook = watch.lap, time.monotonic_ns, self.step_hook
        due: int | None = None  # when the wait was planned to end
        socks, local_estop = self.socks, self.local_estop
        multi = bool(self.extra)
        receive = self._receive if not multi else lambda f, r: self._receive_path(0, f, r)
        poller = zmq.Poller()
        for sock in socks:
            poller.register(sock, zmq.POLLIN)
        try:
            while not stop and (end is None or now < end):
                now = clock()
                if local_estop.pending:
                    local_estop.apply(agent, now)
                dl = agent.next_deadline_ns()
                if dl is not None and now >= dl:
                    agent.check_watchdog(now)  # before reading anything that piled up
                t_agent = clock()
                while True:
                    if waited is not None:
                        frames, rx = waited
                        waited = None
                    else:
                        try:
                            frames = ctrl.recv_multipart(zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        rx = clock()
                    receive(frames, rx)
                if multi:
                    self._drain_extra(clock)
                t = clock()
                # The loop's bookkeeping after the acks, with the times taken where it began, so its figures are
                # those of the iteration: a frame that ended the wait is answered without the stall timer's
                # re-arm (`setitimer`, the one system call the floors added per command) ahead of it. The timer
                # armed by the last iteration still runs while these frames are handled.
                stall = watch.tick(now, due)
                lap(_AGENT, t_agent)
                lap(_RECEIVE, t)
                if now >= next_tick:  # after the acks: integrating the arms must not delay a reply
                    agent.advance(now)
                    self._share_state(now)
                    if hook is not None:
                        hook(now)
                    next_tick = _later(next_tick + tick_ns, now - tick_ns)
                    lap(_ARMS, clock())
                if now >= next_telem:
                    self._publish(now, agent.telemetry(now))
                    next_telem = _later(next_telem + telem_ns, now - telem_ns)
                    lap(_TELEMETRY, clock())
                if now >= next_counters:
                    self._report_counters(now)
                    next_counters = now + 1_000_000_000
                    lap(_COUNTERS, clock())
                if stall is not None:
                    self._report_stall(stall, now)
                self._log_events()
                lap(_LOG, clock())
                self.tap.flush(now)  # one NOBLOCK send per batch, after everything time-critical
                t = clock()
                lap(_TAP, t)
                # Wait inside a blocking receive, as the raw floor's echo server does: it wakes ~15 µs sooner than
                # select() then recv. Millisecond resolution is enough here (the watchdog fires ≤ 1 ms late).
                wake = next_tick if next_tick < next_telem else next_telem
                if dl is not None and dl < wake:
                    wake = dl
                timeout_ms = _later(1, -(-(wake - t) // 1_000_000))
                due = t + timeout_ms * 1_000_000
                if multi:  # any path's frame wakes the loop; the drain above reads it
                    poller.poll(timeout_ms)
                    continue
                ctrl.rcvtimeo = timeout_ms
                try:
                    waited = (ctrl.recv_multipart(copy=False), clock())
                except zmq.Again:
                    waited = None
        finally:
            agent.on_loop_health(clock(), watch.health.counters())  # the final figures for the summary
            watch.close()

    def _drain_extra(self, clock: Callable[[], int]) -> None:
        """Every frame waiting on the paths after the first (link.paths), each with its arrival time."""
        for k, sock in enumerate(self.extra, 1):
            while True:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                self._receive_path(k, frames, clock())

    def finish(self) -> None:
        """Close the event log with the final counters, the sockets and the video child; the caller then
        closes the recorder."""
        self.events.write({"type": "summary", "t_ns": time.monotonic_ns(), "counters": dict(self.agent.counters)})
        self.events.close()
        self.ctrl.close(0)
        for sock in self.extra:
            sock.close(0)
        self.pub.close(0)
        if self.video is not None:
            self.video.close()
        if self.state is not None:
            self.state.close()
        self.tap.flush()
        security.stop_server_security(self.sec)

    def summary(self) -> dict:
        """The agent's (counters, freezes, state) and, once the loop ran, its health (`loop`)."""
        out = self.agent.summary()
        if self.watch is not None:
            out["loop"] = self.watch.summary()
        return out
