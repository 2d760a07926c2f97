"""What a control loop runs at every tick to know its own health and explain its stalls: `LoopHealth` (pure,
safety/loop_health.py) and `StallCapture` (base/stalls.py), with the logging in between.

Both loops (bedside/server.py, console/runner.py) build one inside their `run`, in the loop's own thread
(its stack is the one a stall report quotes), call `tick` at the top of every iteration and `lap` after
each step, and hand a returned `Stall` to `report` once the time-critical part of the iteration is done:
saving and logging are I/O, and a stall's report must not delay the watchdog check that follows it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from base.runtime import thread_sched_ns
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
    ran_ns: int | None = None
    """With `LoopWatch(sched=True)`: how long the loop's thread was on a CPU during the over-bound tick."""
    waited_ns: int | None = None
    """… and how long it was runnable but waiting for a CPU (the rest of the tick it slept or was blocked)."""

    @property
    def cpu_text(self) -> str:
        """What the thread did during the tick, from the kernel's schedstat: starved, working, or blocked."""
        if self.ran_ns is None or self.waited_ns is None:
            return ""
        period = self.overrun.period_ns
        slept = max(0, period - self.ran_ns - self.waited_ns)
        why = ("starved: other tasks held the CPUs" if self.waited_ns >= period / 2 else
               "busy: it was running" if self.ran_ns >= period / 2 else
               "blocked: it slept in a call" if slept >= period / 2 else "mixed")
        return (f"; in it the thread ran {self.ran_ns / 1e6:.1f} ms, waited {self.waited_ns / 1e6:.1f} ms for a CPU "
                f"and slept {slept / 1e6:.1f} ms ({why})")

    @property
    def text(self) -> str:
        """The event's and the log's line."""
        where = (f"; the loop was in {' <- '.join(self.loop_stack[:3])}" if self.loop_stack
                 else "; no stacks captured" if not self.stacks else "; the loop thread is not in the stacks")
        if self.file:
            where += f"; every thread's stack: {self.file}"
        text = self.overrun.text + self.cpu_text + where
        return text.encode()[:EVENT_TEXT_MAX].decode("utf-8", "ignore")

    def record(self) -> dict[str, object]:
        """The teleop.Stall record (docs/recording.md): `/<role>/stall` in the recording, the event log."""
        o = self.overrun
        return {"t_ns": o.at_ns, "role": o.role, "tick_ms": o.period_ns / 1e6, "bound_ms": o.bound_ns / 1e6,
                "step": o.step, "step_ms": o.step_ns / 1e6, "unreported": o.unreported,
                "loop_stack": list(self.loop_stack), "stacks": self.stacks[:MAX_RECORDED_STACKS], "file": self.file,
                "ran_ms": None if self.ran_ns is None else self.ran_ns / 1e6,
                "waited_ms": None if self.waited_ns is None else self.waited_ns / 1e6}


class LoopWatch:
    """Loop health and stall capture for the loop running in the calling thread. `lap` is `LoopHealth.lap`."""

    def __init__(self, role: str, steps: Sequence[str], bound_ms: float, stall_dir: str | Path,
                 log: logging.Logger, all_threads: bool = False, sched: bool = False) -> None:
        """`sched`: read the thread's schedstat at every tick (`base.runtime.thread_sched_ns`), so a stall says
        whether the thread was starved, working or blocked: for loops of tens of ticks a second."""
        bound_ns = int(bound_ms * 1e6)
        self._sched = thread_sched_ns() if sched else None
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
        before = self._sched
        if before is not None:
            self._sched = thread_sched_ns() or before
        if over is None:
            return None
        ran = waited = None
        if before is not None and self._sched is not None:
            ran, waited = self._sched[0] - before[0], self._sched[1] - before[1]
        return Stall(over, stacks, tuple(thread_stack(stacks, self.thread_id)), ran_ns=ran, waited_ns=waited)

    def report(self, stall: Stall, now_ns: int) -> Stall:
        """Save the stacks in a file of their own and log one WARNING naming the blocked call; returns the stall
        with its file, for the event and the record."""
        path = self.capture.save(stall.stacks, stall.overrun.text, now_ns)
        if path is not None:
            self.stall_files.append(str(path))
            stall = dataclasses.replace(stall, file=str(path))
        self.log.warning("%s", stall.text)
        return stall

    def summary(self) -> dict[str, object]:
        return {**self.health.summary(), "stall_files": list(self.stall_files),
                "stall_capture": "on" if self.capture_on else f"off: {self.capture.why_off}"}

    def close(self) -> None:
        self.capture.close()
