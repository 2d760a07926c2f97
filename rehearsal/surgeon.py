"""A scripted surgeon at a headless console window: what the window does for a `teleop console --ui` engine,
without Qt, for the fault suite and the soak.

Why not the headless console (`teleop console --headless`)? Its scripted master presses engage once, and it
has no video: it cannot show that recovery waits for the surgeon, nor that a dead picture holds the arms.
This stands where the window stands, on the engine's documented loopback sockets (console/uilink.py):
* master poses on `console.master_port` (the network-master protocol of docs/masters.md) at 250 Hz: both
  hands in a circle, presence held, engage pressed only when `engage()` is called (or, with
  `auto_engage_s`, after that long of being held with a usable link and picture, as the soak's surgeon does),
  the e-stop button down between `press_estop()` and `release_estop()`, the arm-swap pedal pressed by
  `swap()`;
* heartbeats (20 Hz), the intents asked for (`reset_estop()`) and a report of every new picture on
  `console.ui_intent_port`; the pictures come from
  a real `VideoReceiver` on the bedside's video port, or, with `video=False`, a synthetic 30 fps report
  whose capture time is "now" (for runs whose bedside has no video);
* the engine's state (30 Hz) and events from `console.ui_state_port`, kept for the caller.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import zmq

from base.config import Config
from base.runtime import realtime_scheduling
from console.master import ScriptedMaster
from console.masters.network import encode_master_message
from transport.zmqlink import ZMQ_DEFAULT_HWM, master_publisher, tcp, ui_intent_client, ui_state_subscriber

MASTER_HZ = 250
HEARTBEAT_NS = 50_000_000
SYNTHETIC_FRAME_NS = 33_333_333
ENGAGE_PULSE_NS = 80_000_000
DEFAULT_HANDS = {"right": "PSM1", "left": "PSM2"}


class HeadlessWindow:
    def __init__(self, cfg: Config, video: bool = True, shape: str = "circle",
                 auto_engage_s: float | None = None, realtime_priority: int = 0) -> None:
        """`realtime_priority`: run the sending thread (and this process's zmq I/O threads) under SCHED_FIFO at
        this priority, as a device bridge's would (teleop bench estop: the press is timed as it leaves)."""
        c = cfg.console
        self.realtime_priority = realtime_priority
        self.ctx = zmq.Context.instance()
        # The window's sockets, with zmq's default queues (the window itself keeps shorter ones).
        self.master = master_publisher(self.ctx, tcp("127.0.0.1", c.master_port), hwm=ZMQ_DEFAULT_HWM)
        self.push = ui_intent_client(self.ctx, tcp("127.0.0.1", c.ui_intent_port), hwm=ZMQ_DEFAULT_HWM)
        self.sub = ui_state_subscriber(self.ctx, tcp("127.0.0.1", c.ui_state_port), hwm=ZMQ_DEFAULT_HWM)
        self.script = ScriptedMaster(shape, time.monotonic_ns(), engage_at_s=None)
        self.auto_engage_ns = None if auto_engage_s is None else int(auto_engage_s * 1e9)
        self.receiver = None
        if video:
            from video.receiver import VideoReceiver

            self.receiver = VideoReceiver(cfg, clock_offset_ns_fn=self.offset_ns)
        self.lock = threading.Lock()
        self.state: dict[str, Any] | None = None
        self.events: list[dict[str, Any]] = []
        self.engages: list[int] = []
        self.frames_reported = 0
        self._estop_down = False
        self._estop_press: int | None = None  # the send time of the first sample with the button down
        self._intents: list[dict[str, Any]] = []
        self._engage_until = 0
        self._swap_until = 0
        self._held_since: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="headless-window", daemon=True)
        self._thread.start()

    def offset_ns(self) -> int:
        s = self.state
        v = None if s is None else s.get("clock_offset_ns")
        return int(v) if isinstance(v, int | float) else 0

    # ------------------------------------------------------------------ the surgeon's hands

    def engage(self) -> int:
        """Press engage (an 80 ms pulse); returns the press time (monotonic ns)."""
        now = time.monotonic_ns()
        with self.lock:
            self._engage_until = now + ENGAGE_PULSE_NS
            self.engages.append(now)
        return now

    def swap(self) -> int:
        """Press the arm-swap pedal (an 80 ms pulse): the console's swap hand takes the idle instrument, which it
        must then align (the scripted hands keep the tools' home orientation); returns the press time."""
        now = time.monotonic_ns()
        with self.lock:
            self._swap_until = now + ENGAGE_PULSE_NS
        return now

    def press_estop(self, timeout: float = 2.0) -> int:
        """Press the e-stop button and keep it down; returns the send time (monotonic ns) of the first master
        sample that carries it: the moment the press leaves the device for the console."""
        with self.lock:
            self._estop_down = True
            self._estop_press = None
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if self._estop_press is not None:
                    return self._estop_press
            time.sleep(0.0005)
        raise AssertionError("the window did not send the e-stop press")

    def release_estop(self) -> None:
        with self.lock:
            self._estop_down = False

    def reset_estop(self) -> None:
        """The window's e-stop reset (an intent; the console refuses it while the button is still down)."""
        with self.lock:
            self._intents.append({"type": "intent", "name": "reset_estop"})

    def _send(self, msg: dict[str, Any]) -> None:
        with contextlib.suppress(zmq.Again):
            self.push.send(json.dumps(msg, separators=(",", ":")).encode(), zmq.NOBLOCK)

    def _run(self) -> None:
        realtime_scheduling(self.realtime_priority, "headless window")
        period = 1_000_000_000 // MASTER_HZ
        seq = 0
        next_hb = next_frame = time.monotonic_ns()
        last_seq = 0
        frame_id = 0
        while not self._stop.is_set():
            now = time.monotonic_ns()
            sample = self.script.read(now)
            seq += 1
            with self.lock:
                estop, first_press = self._estop_down, self._estop_down and self._estop_press is None
                intents, self._intents = self._intents, []
            buttons = replace(sample.buttons, engage=now < self._engage_until, estop=estop,
                              swap=now < self._swap_until)
            t_send = time.monotonic_ns()
            with contextlib.suppress(zmq.Again):
                self.master.send(encode_master_message(seq, now, sample.hands, buttons), zmq.NOBLOCK)
                if first_press:
                    with self.lock:
                        self._estop_press = t_send
            if now >= next_hb:
                next_hb = now + HEARTBEAT_NS
                self._send({"type": "heartbeat", "seq": seq})
            for msg in intents:
                self._send(msg)
            if self.receiver is not None:
                f = self.receiver.latest()
                if f is not None and f.seq != last_seq:
                    last_seq = f.seq
                    self.frames_reported += 1
                    self._send({"type": "video", "frame_id": f.frame_id, "capture_ns": f.capture_ns,
                                "signature": None, "source_seq": f.source_seq})
            elif now >= next_frame:
                next_frame = now + SYNTHETIC_FRAME_NS
                frame_id += 1
                self.frames_reported += 1
                self._send({"type": "video", "frame_id": frame_id, "capture_ns": now + self.offset_ns(),
                            "signature": None, "source_seq": frame_id})
            self._drain(now)
            self._auto_engage(now)
            time.sleep(max(0.0, (now + period - time.monotonic_ns()) / 1e9))

    def _drain(self, now: int) -> None:
        for _ in range(200):
            try:
                msg = json.loads(self.sub.recv(zmq.NOBLOCK))
            except zmq.Again:
                return
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue
            with self.lock:
                if msg.get("type") == "state":
                    msg["rx_ns"] = now
                    self.state = msg
                elif msg.get("type") == "event":
                    self.events.append(msg)

    def _auto_engage(self, now: int) -> None:
        if self.auto_engage_ns is None or self.state is None:
            return
        if self.arm_states() and all(s == "FOLLOWING" for s in self.arm_states().values()):
            self._held_since = None
            return
        if self._held_since is None:
            self._held_since = now
        engaged_recently = self.engages and now - self.engages[-1] < self.auto_engage_ns
        if now - self._held_since >= self.auto_engage_ns and not engaged_recently and self.usable():
            self.engage()

    # ------------------------------------------------------------------ what the window shows

    def hands(self) -> dict[str, str]:
        """Which instrument each hand drives now (the engine's hand assignment)."""
        return ((self.state or {}).get("teleop") or {}).get("hands") or DEFAULT_HANDS

    def arm_states(self, with_reason: bool = False) -> dict[str, Any]:
        """The states of the instruments the hands drive (the idle one is not the surgeon's to follow)."""
        s = self.state
        arms = ((s or {}).get("teleop") or {}).get("arms") or {}
        driven = set(self.hands().values())
        return {n: ((a.get("state"), a.get("reason")) if with_reason else a.get("state"))
                for n, a in arms.items() if n in driven}

    def usable(self) -> bool:
        """Link up, picture live, no e-stop: what a surgeon checks before pressing engage."""
        s = self.state or {}
        return (s.get("link") == "UP" and bool((s.get("video") or {}).get("ok"))
                and not (s.get("teleop") or {}).get("estop"))

    def following(self) -> bool:
        st = self.arm_states()
        return bool(st) and all(v == "FOLLOWING" for v in st.values())

    def wait(self, pred: Callable[[HeadlessWindow], bool], timeout: float) -> bool:
        """Wait for the engine's state to satisfy `pred` (checked as each state arrives, ~30 Hz)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.state is not None and pred(self):
                return True
            time.sleep(0.01)
        return False

    def engage_until_following(self, timeout: float = 15.0, every_s: float = 1.0) -> int:
        """Press engage (again every `every_s` while refused) until both instruments follow; the first press
        time. Raises with the last state if they never do."""
        first = 0
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.usable():
                t = self.engage()
                first = first or t
                if self.wait(HeadlessWindow.following, every_s):
                    return first
            else:
                time.sleep(0.05)
        raise AssertionError(f"never following: {self.arm_states(True)} link={(self.state or {}).get('link')} "
                             f"video={(self.state or {}).get('video')} events={self.events[-8:]}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        if self.receiver is not None:
            self.receiver.close()
        for s in (self.master, self.push, self.sub):
            s.close(0)
