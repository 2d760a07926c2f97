"""Run the bedside agent: bind the control (ROUTER) and telemetry (PUB) endpoints, drive the simulated
arms, freeze them on its own when the console goes quiet; start the stereo video sender (child process,
ROUTER on the video port) unless --no-video.

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

import zmq

from base.config import Config
from base.runtime import JsonLines, StopFlag, announce_ready, realtime_gc, realtime_scheduling
from bedside.agent import BedsideAgent
from recording.convert import K_BEDSIDE, K_COMMAND
from recording.recorder import RecorderChild, start_recorder
from recording.tap import NullTap
from transport import codec, security
from transport.zmqlink import control_server, tcp, telemetry_publisher

log = logging.getLogger("bedside")




def event_record(ev, kind: str = "event") -> dict:
    return {
        "type": kind,
        "t_ns": ev.send_ns,
        "epoch": ev.epoch,
        "kind": ev.kind.name,
        "reason": ev.reason.name,
        "from": ev.from_state.name,
        "to": ev.to_state.name,
        "text": ev.text,
    }


VIDEO_NICE = 5


class VideoChild:
    """The video sender in a child process ('spawn'): encoding never shares a GIL with the control loop."""

    def __init__(self, cfg: Config, recorder: str | None = None) -> None:
        from video.sender import run_sender

        mp = multiprocessing.get_context("spawn")
        self.stop_event = mp.Event()
        self.report = mp.Queue()
        self.proc = mp.Process(target=run_sender, args=(cfg, self.stop_event, None),
                               kwargs={"report": self.report, "recorder": recorder}, name="video-sender",
                               daemon=True)
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
            log.error("no video: %s (arms are unaffected; the console will show NO VIDEO)", value)

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


class RevokedCache:
    """Names of revoked keys, refreshed at most every 100 ms: a live connection of a key revoked in the
    registry is refused message by message without a stat() per message on the control path."""

    def __init__(self, sec: security.ServerSecurity | None) -> None:
        self.sec = sec
        self.names: frozenset[str] = frozenset()
        self.checked_ns = -(10**18)

    def is_revoked(self, user: str, now_ns: int) -> bool:
        if self.sec is None:
            return False
        if now_ns - self.checked_ns > 100_000_000:
            self.checked_ns = now_ns
            self.names = frozenset(c.name for c in self.sec.auth.registry.clients() if c.revoked)
        return user.partition(":")[2] in self.names


def serve(cfg: Config, stop: StopFlag, seconds: float | None = None, event_log: str | None = None,
          video: bool = True) -> BedsideAgent:
    ctx = zmq.Context.instance()
    sec = security.for_server(cfg, ctx)  # the ZAP handler runs before anything binds
    recorder: RecorderChild | None = start_recorder(cfg, "bedside")  # first: the video child records too
    tap = recorder.control_tap() if recorder is not None else NullTap()
    video_child = VideoChild(cfg, recorder.video_endpoint if recorder is not None else None) if video else None
    ctrl = control_server(ctx, tcp(cfg.link.bind_host, cfg.link.control_port), sec)
    pub = telemetry_publisher(ctx, tcp(cfg.link.bind_host, cfg.link.telemetry_port), sec)
    events = JsonLines(event_log)
    now = time.monotonic_ns()
    agent = BedsideAgent(cfg.bedside, now)
    tick_ns = 1_000_000_000 // cfg.bedside.tick_hz
    telem_ns = 1_000_000_000 // cfg.bedside.telemetry_hz
    next_tick = now
    next_telem = now
    next_counters = now
    revoked = RevokedCache(sec)
    local_estop = LocalEStop()
    end = None if seconds is None else now + int(seconds * 1e9)
    n_freezes = 0
    waited: tuple[list, int] | None = None  # a frame the blocking wait returned, with its arrival time
    realtime_gc()
    sched = realtime_scheduling(cfg.bedside.realtime_priority, "bedside")  # after the sockets: zmq's I/O thread too
    announce_ready(
        control=tcp(cfg.link.bind_host, cfg.link.control_port),
        telemetry=tcp(cfg.link.bind_host, cfg.link.telemetry_port),
        video=(video_child.endpoint or "none") if video_child else "off",
        watchdog_ms=cfg.bedside.watchdog_ms,
        recording=recorder.info.get("file", "failed") if recorder is not None else "off",
        recorder_pid=recorder.pid if recorder is not None else 0,
        sched=sched,
    )
    log.info("bedside up: watchdog %d ms, tick %d Hz, telemetry %d Hz",
             cfg.bedside.watchdog_ms, cfg.bedside.tick_hz, cfg.bedside.telemetry_hz)
    try:
        while not stop and (end is None or now < end):
            now = time.monotonic_ns()
            local_estop.apply(agent, now)
            dl = agent.next_deadline_ns()
            if dl is not None and now >= dl:
                agent.check_watchdog(now)  # before reading anything that piled up
            while True:
                if waited is not None:
                    frames, rx = waited
                    waited = None
                else:
                    try:
                        frames = ctrl.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    rx = time.monotonic_ns()
                if len(frames) != 2:
                    agent.counters["decode_errors"] += 1
                    agent.counters["multipart_frames"] += 1
                    continue
                user = security.user_of(frames[1], sec is not None)
                if sec is not None and revoked.is_revoked(user, rx):
                    agent.counters["revoked_messages"] += 1
                    continue
                data = frames[0].bytes
                for out in agent.on_message(rx, data, frames[1].bytes, user):
                    t_ack = time.monotonic_ns()
                    ack = codec.restamp(out.data, t_ack)
                    try:
                        ctrl.send_multipart([out.peer, ack], zmq.NOBLOCK)
                    except zmq.Again:
                        agent.counters["ack_dropped"] += 1
                    else:
                        tap.add(K_BEDSIDE, t_ack, ack)  # recorded after it left, never before
                tap.add(K_COMMAND, rx, frames[1].bytes, user.encode())  # the command, not the peer id
            if now >= next_tick:  # after the acks: integrating the arms must not delay a reply
                agent.advance(now)
                next_tick = max(next_tick + tick_ns, now - tick_ns)
            if now >= next_telem:
                data = agent.telemetry(now)
                pub.send(data, zmq.NOBLOCK)
                tap.add(K_BEDSIDE, now, data)
                next_telem = max(next_telem + telem_ns, now - telem_ns)
            if now >= next_counters:
                if sec is not None:
                    while sec.auth.refusals:
                        r = sec.auth.refusals.popleft()
                        agent.record_refusal(now, r["domain"], r["why"], r["fingerprint"])
                    for k, v in sec.auth.counters.items():
                        agent.counters[k] = v
                data = agent.counters_message(now)
                pub.send(data, zmq.NOBLOCK)
                tap.add(K_BEDSIDE, now, data)
                next_counters = now + 1_000_000_000
            for ev in agent.drain_events():
                data = codec.encode(ev)
                pub.send(data, zmq.NOBLOCK)
                tap.add(K_BEDSIDE, ev.send_ns, data)
                events.write(event_record(ev))
            while n_freezes < len(agent.freezes):
                f = agent.freezes[n_freezes]
                n_freezes += 1
                rec = {"type": "freeze", "t_ns": f.at_ns, "reason": f.reason.name,
                       "last_valid_ns": f.last_valid_ns, "latency_ms": f.latency_ns / 1e6, "text": f.text}
                events.write(rec)
                tap.add_json("freeze", f.at_ns, {k: v for k, v in rec.items() if k != "type"})
            tap.flush(now)  # one NOBLOCK send per batch, after everything time-critical
            # Wait inside a blocking receive, as the raw floor's echo server does: it wakes ~15 µs sooner than
            # select() then recv. Millisecond resolution is enough here (the watchdog fires ≤ 1 ms late).
            wake = min(next_tick, next_telem) if dl is None else min(next_tick, next_telem, dl)
            ctrl.rcvtimeo = max(1, -(-(wake - time.monotonic_ns()) // 1_000_000))
            try:
                waited = (ctrl.recv_multipart(copy=False), time.monotonic_ns())
            except zmq.Again:
                waited = None
    finally:
        events.write({"type": "summary", "t_ns": time.monotonic_ns(), "counters": dict(agent.counters)})
        events.close()
        ctrl.close(0)
        pub.close(0)
        if video_child is not None:
            video_child.close()
        if recorder is not None:
            tap.flush()
            recorder.close()
        security.stop_server_security(sec)
    return agent


def summary(agent: BedsideAgent) -> dict:
    return {
        "counters": dict(agent.counters),
        "freezes": [
            {"reason": f.reason.name, "latency_ms": f.latency_ns / 1e6, "text": f.text} for f in agent.freezes
        ],
        "state": agent.state.name,
    }


