"""Loop health: how regularly a control loop runs, which of its steps took how long, and when one iteration
took longer than its bound. Pure: fed the time, it keeps figures in fixed memory and returns what to report.

Why: the bedside loop is the last line of defence. While it stands still nothing at the bedside works (the
watchdog, the e-stop latch, telemetry); issue #19 saw it stand still for 1.2 s with no way to say why. Each
loop (bedside/server.py, console/runner.py) calls `tick` at the start of every iteration and `lap` at the
end of each step, so it knows its own period (histogram, max, p99.9), its slowest step, and every iteration
over `bound_ns`. The shell around it (safety/loop_watch.py) adds the stacks of every thread
(base/stalls.py) and publishes. docs/architecture.md, "Loop health and stalls".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from base.stats import Histogram

WAKE = "wake"
"""The pseudo-step every loop has: how late the iteration started after the time the loop planned to wake
(time it was not running: descheduled, stopped, or a wait that overran)."""
REPORT_EVERY_NS = 1_000_000_000
"""At most one over-bound tick reported per second, unless a tick is longer than the last one reported: a long
stall right after a short overrun still reports its own stacks. `LoopHealth.over_bound` counts every one."""
COUNTER_PREFIX = "loop_"
RECENT_NS = 10_000_000_000
"""How long the window's and the monitor's loop indicator stays a warning after an over-bound tick."""


@dataclass(frozen=True, slots=True)
class Overrun:
    """An iteration that started more than the bound after the previous one."""

    role: str
    at_ns: int
    """When the late iteration started (the loop's clock)."""
    period_ns: int
    """Since the previous iteration started."""
    bound_ns: int
    step: str
    """The slowest step of the iteration that overran (`wake` when the time went outside the steps)."""
    step_ns: int
    unreported: int
    """Over-bound iterations since the previous report that were not reported themselves."""

    @property
    def text(self) -> str:
        """One line for the event, the log and the record."""
        more = f"; {self.unreported} more over the bound since the last report" if self.unreported else ""
        return (f"{self.role} loop: a tick of {self.period_ns / 1e6:.1f} ms (bound {self.bound_ns / 1e6:g} ms); "
                f"slowest step {self.step} {self.step_ns / 1e6:.1f} ms{more}")


class LoopHealth:
    """The figures of one loop. `tick(now)` at the start of each iteration, `lap(i, now)` at the end of step
    `i` (steps in the order given; the time since the previous lap or tick is that step's), `rest(now)`
    after a deliberate wait that is no step. Cost per 1 kHz iteration: docs/benchmarks.md."""

    def __init__(self, role: str, steps: Sequence[str], bound_ns: int,
                 report_every_ns: int = REPORT_EVERY_NS) -> None:
        if bound_ns <= 0:
            raise ValueError("the tick bound must be positive")
        self.role = role
        self.steps: tuple[str, ...] = (*steps, WAKE)
        self.bound_ns = bound_ns
        self.report_every_ns = report_every_ns
        self.period = Histogram()
        """Every iteration's period (start to start)."""
        self.step_max_ns = [0] * len(self.steps)
        self.ticks = 0
        self.over_bound = 0
        self.last_over_ns: int | None = None
        self._wake = len(self.steps) - 1
        self._start: int | None = None
        self._mark = 0
        self._slow = self._wake
        self._slow_ns = 0
        self._reported_ns: int | None = None
        self._reported_period_ns = 0
        self._unreported = 0

    def index(self, step: str) -> int:
        return self.steps.index(step)

    def lap(self, step: int, now_ns: int) -> None:
        """Step `step` ended at `now_ns`."""
        d = now_ns - self._mark
        self._mark = now_ns
        if d > self.step_max_ns[step]:
            self.step_max_ns[step] = d
        if d > self._slow_ns:
            self._slow_ns = d
            self._slow = step

    def rest(self, now_ns: int) -> None:
        """A deliberate wait ended at `now_ns`: no step's time."""
        self._mark = now_ns

    def tick(self, now_ns: int, due_ns: int | None = None) -> Overrun | None:
        """An iteration starts at `now_ns`; the loop had planned to wake at `due_ns` (None: no plan). Returns
        the overrun to report when the period exceeded the bound (at most one per `report_every_ns`); every
        one is counted."""
        out = None
        if self._start is not None:
            late = 0 if due_ns is None else now_ns - due_ns
            if late > self.step_max_ns[self._wake]:
                self.step_max_ns[self._wake] = late
            if late > self._slow_ns:
                self._slow, self._slow_ns = self._wake, late
            period = now_ns - self._start
            self.period.add_ns(period)
            self.ticks += 1
            if period > self.bound_ns:
                out = self._over(now_ns, period)
        self._start = self._mark = now_ns
        self._slow, self._slow_ns = self._wake, 0
        return out

    def _over(self, now_ns: int, period: int) -> Overrun | None:
        self.over_bound += 1
        self.last_over_ns = now_ns
        if (self._reported_ns is not None and now_ns - self._reported_ns < self.report_every_ns
                and period <= self._reported_period_ns):
            self._unreported += 1
            return None
        out = Overrun(self.role, now_ns, period, self.bound_ns, self.steps[self._slow], self._slow_ns,
                      self._unreported)
        self._reported_ns, self._reported_period_ns = now_ns, period
        self._unreported = 0
        return out

    def recent(self, now_ns: int, within_ns: int = RECENT_NS) -> bool:
        """An iteration was over the bound within the last `within_ns` (indicators warn that long)."""
        return self.last_over_ns is not None and now_ns - self.last_over_ns < within_ns

    def counters(self) -> dict[str, int]:
        """Integers for a counters message (µs; since start). Computes p99.9: call it about once a second."""
        p999 = self.period.percentiles().get("p999")
        out = {"loop_ticks": self.ticks, "loop_over_bound": self.over_bound, "loop_bound_us": self.bound_ns // 1000,
               "loop_tick_max_us": self.period.max_ns // 1000, "loop_tick_p999_us": int(p999 or 0)}
        for name, ns in zip(self.steps, self.step_max_ns, strict=True):
            out[f"loop_max_us_{name}"] = ns // 1000
        return out

    def summary(self) -> dict[str, object]:
        """For a role's --summary and the benches: the period's percentiles and max (µs), the steps' max (µs)."""
        return {"bound_ms": self.bound_ns / 1e6, "ticks": self.ticks, "over_bound": self.over_bound,
                "tick_us": self.period.percentiles(with_max=True),
                "step_max_us": {name: ns / 1e3 for name, ns in zip(self.steps, self.step_max_ns, strict=True)}}


def loop_counters(counters: dict[str, int]) -> dict[str, int]:
    """The loop-health entries of a counters dict (a bedside's COUNTERS, a console's link record)."""
    return {k: v for k, v in counters.items() if k.startswith(COUNTER_PREFIX)}
