"""What a control loop runs at every tick to know its own health and explain its stalls: `LoopHealth` (pure,
safety/loop_health.py) and `StallCapture` (base/stalls.py), with the logging in between.

Both loops (bedside/server.py, console/runner.py) build one inside their `run`, in the loop's own thread
(its stack is the one a stall report quotes), call `tick` at the top of every iteration and `lap` after
each step, and hand a returned `Stall` to `report` once the time-critical part of the iteration is done:
saving and logging are I/O, and a stall's report must not delay the watchdog check that follows it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from base.stalls import StallCapture, thread_stack
from safety.loop_health import LoopHealth, Overrun

MAX_RECORDED_STACKS = 16_000
"""Characters of the stacks a recording keeps per stall (the file in the stall folder keeps them all)."""
EVENT_TEXT_MAX = 1000
"""An EVENT's text is at most 1024 bytes (docs/protocol.md)."""


@dataclass(frozen=True, slots=True)
class Stall:
    """An over-bound tick as reported: the figures, and the stacks captured while it lasted."""

    overrun: Overrun
    stacks: str
    """Every thread's stack as faulthandler wrote it ('' if none was captured)."""
    loop_stack: tuple[str, ...]
    """The loop thread's frames, innermost first: the first names the call that blocked it."""
    file: str = ""

    @property
    def text(self) -> str:
        """The event's and the log's line."""
        where = (f"; the loop was in {' <- '.join(self.loop_stack[:3])}" if self.loop_stack
                 else "; no stacks captured" if not self.stacks else "; the loop thread is not in the stacks")
        if self.file:
            where += f"; every thread's stack: {self.file}"
        text = self.overrun.text + where
        return text.encode()[:EVENT_TEXT_MAX].decode("utf-8", "ignore")

    def record(self) -> dict[str, object]:
        """The teleop.Stall record (docs/recording.md): `/<role>/stall` in the recording, the event log."""
        o = self.overrun
        return {"t_ns": o.at_ns, "role": o.role, "tick_ms": o.period_ns / 1e6, "bound_ms": o.bound_ns / 1e6,
                "step": o.step, "step_ms": o.step_ns / 1e6, "unreported": o.unreported,
                "loop_stack": list(self.loop_stack), "stacks": self.stacks[:MAX_RECORDED_STACKS], "file": self.file}


class LoopWatch:
    """Loop health and stall capture for the loop running in the calling thread. `lap` is `LoopHealth.lap`."""

    def __init__(self, role: str, steps: Sequence[str], bound_ms: float, stall_dir: str | Path,
                 log: logging.Logger, all_threads: bool = False) -> None:
        bound_ns = int(bound_ms * 1e6)
        self.health = LoopHealth(role, steps, bound_ns)
        self.capture = StallCapture(stall_dir, role, bound_ns, all_threads)
        self.log = log
        self.thread_id = threading.get_ident()
        self.lap = self.health.lap
        self.rest = self.health.rest
        self.stall_files: list[str] = []
        self.capture_on = self.capture.active
        if self.capture_on:
            log.info("%s loop: %s written to %s when a tick exceeds %g ms", role,
                     "stacks of every thread are" if all_threads else "its stack is", self.capture.folder, bound_ms)
        else:
            log.info("%s loop: no stall capture: %s", role, self.capture.why_off)

    def tick(self, now_ns: int, due_ns: int | None = None) -> Stall | None:
        """Top of an iteration: the loop's figures, the stacks of a stall that just ended (read, not yet saved:
        `report`), and the timer re-armed."""
        over = self.health.tick(now_ns, due_ns)
        stacks = self.capture.collect(now_ns) if self.health.last_over_ns == now_ns else ""
        self.capture.arm(now_ns)
        if over is None:
            return None
        return Stall(over, stacks, tuple(thread_stack(stacks, self.thread_id)))

    def report(self, stall: Stall, now_ns: int) -> Stall:
        """Save the stacks in a file of their own and log one WARNING naming the blocked call; returns the stall
        with its file, for the event and the record."""
        path = self.capture.save(stall.stacks, stall.overrun.text, now_ns)
        if path is not None:
            self.stall_files.append(str(path))
            stall = Stall(stall.overrun, stall.stacks, stall.loop_stack, str(path))
        self.log.warning("%s", stall.text)
        return stall

    def summary(self) -> dict[str, object]:
        return {**self.health.summary(), "stall_files": list(self.stall_files),
                "stall_capture": "on" if self.capture_on else f"off: {self.capture.why_off}"}

    def close(self) -> None:
        self.capture.close()
