"""Fit the picture to the machines that make and show it: size and frame rate (and with them the bitrate) chosen
from measured times, lowered in steps when a machine is busy and raised again when it is not.

Why: on a small machine the renderer, the encoder, the decoder and the painter share the cores with the 1 kHz
control loops. A picture the machines cannot make and show in time arrives late, the stale-video guard
(safety/video_guard.py) holds the arms, and the surgeon re-engages every few seconds. The guard's limit stays
where it is; the picture gets smaller instead, and the HUD says so (console/ui/status.py `picture_text`).

Pure: fed per-frame times and the time, returns the new `Mode` when one is due. The sender (video/sender.py) feeds
its own render + encode time of every frame it sends (`on_sender`) and each viewer's decode and paint times from
its reports (`on_viewer`; transport/video_wire.py `Report`, version 3).

Signals. A stage's *load* is its smoothed time per frame over the frame period of the current mode: the share of
one core it needs to keep up. Times are wall times, so a machine busy with other work makes them longer, which is
the point. The bedside's load is render + resize + encode; a viewer's is decode + paint; a viewer's *paint lag*
(decoded -> painted, or how long the newest decoded picture has been waiting) shows a painter starved of CPU even
when each paint is quick.

Policy (docs/video.md "Fitting the picture to the machines"):
- smoothing: exponential, time constant `tau_ms` (the same whatever the frame rate); the first `warmup_ms` and
  `settle_ms` after each change are ignored (decoder start, the new encoder's IDR, frames of the old mode);
- down one step when a load above `high` or a paint lag above `lag_high_ms` has lasted `degrade_after_ms` and
  the last change is `cooldown_ms` old (its effect is visible by then); a severe overload (load above 1, or a lag
  above twice the threshold: the machine falls behind by a frame each frame) waits only `severe_after_ms`;
- up one step when, for `up_hold_ms`, every load *projected to the better mode* (times its pixel rate over the
  current one) stays below `low` and every lag below `lag_low_ms`. `low` < `high` is the hysteresis;
- never flaps: a step up followed by a step down within `flap_window_ms` doubles the next up-hold (up to
  `max_up_hold_ms`), so a machine on the edge settles in the lower mode; a step up that holds that long halves
  it again, down to the configured value;
- start low, climb (`start` > 0): the picture starts `start` steps down the ladder (reason STARTING), so the first
  seconds are not the overload that steps it down after stalls, and climbs by the same projected rule but after
  `climb_hold_ms` instead of `up_hold_ms`, until the first step down (or the top): from then on it is the rule
  above, so a climb that did not fit is not retried sooner than a step up would be.

The ladder (`mode_ladder`): smaller picture first (0.75 of each side: 56 % of the pixels, the frame rate kept,
because the frame period is part of every motion-to-photon figure), then half the frame rate, then half the
size, then a quarter of the frame rate, never below `min_fps`. The bitrate follows the pixel rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from transport.video_wire import Layout, ModeReason

MS = 1_000_000


@dataclass(frozen=True, slots=True)
class Mode:
    """One step of the ladder: `scale` of each side of the configured picture at `fps`, `kbps` for H.264."""

    index: int  # 0 = the configured picture
    scale: float
    fps: int
    kbps: int

    def cost(self) -> float:
        """Pixel rate relative to the configured picture: what decoding, encoding and painting scale with."""
        return self.scale * self.scale * self.fps


def eye_size(width: int, height: int, layout: Layout) -> tuple[int, int]:
    """One eye's size in a packed picture of `width`x`height`."""
    if layout == Layout.SIDE_BY_SIDE:
        return width // 2, height
    if layout == Layout.TOP_BOTTOM:
        return width, height // 2
    return width, height


STEPS = ((1.0, 1.0), (0.75, 1.0), (0.75, 0.5), (0.5, 0.5), (0.5, 0.25))
"""(scale, share of the configured frame rate) per step."""


def mode_ladder(fps: int, target_kbps: int, min_kbps: int, min_fps: int) -> tuple[Mode, ...]:
    """The modes from the configured one down; steps that the frame-rate floor makes equal are dropped. The
    bitrate is the target times the share of pixels and the square root of the share of frames (fewer frames
    carry more change each), never below the floor scaled to the picture."""
    if fps < 1 or min_fps < 1:
        raise ValueError(f"frame rates must be positive, got fps={fps}, min_fps={min_fps}")
    out: list[Mode] = []
    for scale, share in STEPS:
        f = max(min(min_fps, fps), round(fps * share))
        if out and (out[-1].scale, out[-1].fps) == (scale, f):
            continue
        kbps = max(int(min_kbps * scale * scale), int(target_kbps * scale * scale * math.sqrt(f / fps)))
        out.append(Mode(len(out), scale, f, max(100, kbps)))
    return tuple(out)


class _Smoothed:
    """Exponential average with a time constant, started by its first sample."""

    def __init__(self, tau_ns: int) -> None:
        self.tau_ns = tau_ns
        self.value: float | None = None
        self.t_ns = 0

    def add(self, now_ns: int, x: float) -> None:
        if self.value is None:
            self.value = x
        else:
            a = 1.0 - math.exp(-max(0, now_ns - self.t_ns) / self.tau_ns)
            self.value += a * (x - self.value)
        self.t_ns = now_ns


@dataclass
class _Viewer:
    work: _Smoothed  # decode + paint, ns
    lag: _Smoothed  # ns
    last_ns: int


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the policy sees now: the worst load and lag and whose they are."""

    bedside_load: float | None
    console_load: float | None
    lag_ms: float | None
    busy: ModeReason  # NONE: nobody over the limits


class MachinePolicy:
    def __init__(self, ladder: tuple[Mode, ...], high: float = 0.7, low: float = 0.45, lag_high_ms: float = 50.0,
                 lag_low_ms: float = 20.0, tau_ms: float = 400.0, warmup_ms: float = 2000.0,
                 settle_ms: float = 500.0, degrade_after_ms: float = 500.0, severe_after_ms: float = 200.0,
                 cooldown_ms: float = 1000.0, up_hold_ms: float = 5000.0, max_up_hold_ms: float = 120_000.0,
                 flap_window_ms: float = 20_000.0, viewer_timeout_ms: float = 2000.0, start: int = 0,
                 climb_hold_ms: float = 2000.0) -> None:
        if not ladder:
            raise ValueError("empty mode ladder")
        if not 0 <= start < len(ladder):
            raise ValueError(f"start step {start} is not on the ladder (0..{len(ladder) - 1})")
        if not (0 < low < high):
            raise ValueError(f"need 0 < low ({low}) < high ({high})")
        if not (0 < lag_low_ms < lag_high_ms):
            raise ValueError(f"need 0 < lag_low_ms ({lag_low_ms}) < lag_high_ms ({lag_high_ms})")
        self.ladder = ladder
        self.i = start
        self.starting = start > 0  # climbing from a low start: `climb_hold_ms` until the first step down
        self.climb_hold_ns = int(climb_hold_ms * MS)
        self.high, self.low = high, low
        self.lag_high_ns, self.lag_low_ns = int(lag_high_ms * MS), int(lag_low_ms * MS)
        self.tau_ns = int(tau_ms * MS)
        self.warmup_ns, self.settle_ns = int(warmup_ms * MS), int(settle_ms * MS)
        self.degrade_after_ns, self.severe_after_ns = int(degrade_after_ms * MS), int(severe_after_ms * MS)
        self.cooldown_ns = int(cooldown_ms * MS)
        self.base_up_hold_ns = self.up_hold_ns = int(up_hold_ms * MS)
        self.max_up_hold_ns = int(max_up_hold_ms * MS)
        self.flap_window_ns = int(flap_window_ms * MS)
        self.viewer_timeout_ns = int(viewer_timeout_ms * MS)
        self.first_ns: int | None = None
        self.changed_ns: int | None = None
        self.last_up_ns: int | None = None
        self.busy_since_ns: int | None = None
        self.clear_since_ns: int | None = None
        self.reason = ModeReason.STARTING if self.starting else ModeReason.NONE  # why below the configured mode
        self.sender = _Smoothed(self.tau_ns)
        self.viewers: dict[bytes, _Viewer] = {}
        self.changes: list[tuple[int, Mode, ModeReason]] = []

    @property
    def mode(self) -> Mode:
        return self.ladder[self.i]

    # ------------------------------------------------------------------------------------------- samples
    def _listening(self, now_ns: int) -> bool:
        if self.first_ns is None:
            self.first_ns = now_ns
        if now_ns - self.first_ns < self.warmup_ns:
            return False
        return self.changed_ns is None or now_ns - self.changed_ns >= self.settle_ns

    def on_sender(self, now_ns: int, work_ns: int) -> Mode | None:
        """One frame the bedside sent: what rendering, resizing and encoding it took (wall time)."""
        if self._listening(now_ns):
            self.sender.add(now_ns, max(0, work_ns))
        return self.poll(now_ns)

    def on_viewer(self, now_ns: int, viewer: bytes, decode_ns: int, paint_ns: int, lag_ns: int) -> Mode | None:
        """One viewer's report: its decode time of a frame, and the paint time and paint lag of its newest painted
        picture (0, 0 from a viewer that does not paint)."""
        if self._listening(now_ns):
            v = self.viewers.get(viewer)
            if v is None:
                v = self.viewers[viewer] = _Viewer(_Smoothed(self.tau_ns), _Smoothed(self.tau_ns), now_ns)
            v.work.add(now_ns, max(0, decode_ns) + max(0, paint_ns))
            v.lag.add(now_ns, max(0, lag_ns))
            v.last_ns = now_ns
        return self.poll(now_ns)

    def forget(self, viewer: bytes) -> None:
        self.viewers.pop(viewer, None)

    # ------------------------------------------------------------------------------------------- decision
    def verdict(self, now_ns: int) -> Verdict:
        for ident in [k for k, v in self.viewers.items() if now_ns - v.last_ns > self.viewer_timeout_ns]:
            del self.viewers[ident]
        period = 1e9 / self.mode.fps
        bed = None if self.sender.value is None else self.sender.value / period
        con = max((v.work.value / period for v in self.viewers.values() if v.work.value is not None), default=None)
        lag = max((v.lag.value for v in self.viewers.values() if v.lag.value is not None), default=None)
        busy = ModeReason.NONE
        if bed is not None and bed > self.high:
            busy = ModeReason.BEDSIDE
        if (con is not None and con > self.high and (bed is None or con >= bed)) or (
                lag is not None and lag > self.lag_high_ns and busy is ModeReason.NONE):
            busy = ModeReason.CONSOLE
        return Verdict(bed, con, None if lag is None else lag / MS, busy)

    def poll(self, now_ns: int) -> Mode | None:
        """Decide with what has been measured so far; returns the new mode when it changes."""
        v = self.verdict(now_ns)
        cooled = self.changed_ns is None or now_ns - self.changed_ns >= self.cooldown_ns
        if v.busy is not ModeReason.NONE:
            self.clear_since_ns = None
            if self.busy_since_ns is None:
                self.busy_since_ns = now_ns
            severe = max(v.bedside_load or 0.0, v.console_load or 0.0) > 1.0 or (
                v.lag_ms is not None and v.lag_ms * MS > 2 * self.lag_high_ns)
            after = self.severe_after_ns if severe else self.degrade_after_ns
            if cooled and now_ns - self.busy_since_ns >= after and self.i < len(self.ladder) - 1:
                if self.last_up_ns is not None and now_ns - self.last_up_ns < self.flap_window_ns:
                    self.up_hold_ns = min(self.max_up_hold_ns, 2 * self.up_hold_ns)  # it did not fit: wait longer
                self.last_up_ns = None
                self.starting = False  # the machine's limit is found: climb by the ordinary rule from now on
                return self._move(now_ns, +1, v.busy)
            return None
        self.busy_since_ns = None
        if self.last_up_ns is not None and now_ns - self.last_up_ns >= self.flap_window_ns:
            self.last_up_ns = None  # the last step up held: trust the machine a little more
            self.up_hold_ns = max(self.base_up_hold_ns, self.up_hold_ns // 2)
        if self.i == 0 or not self._fits_better(v):
            self.clear_since_ns = None
            return None
        if self.clear_since_ns is None:
            self.clear_since_ns = now_ns
        hold = self.climb_hold_ns if self.starting else self.up_hold_ns
        if cooled and now_ns - self.clear_since_ns >= hold:
            self.last_up_ns = now_ns
            if self.i == 1:
                self.starting = False
            return self._move(now_ns, -1, self.reason if self.i > 1 else ModeReason.NONE)
        return None

    def _fits_better(self, v: Verdict) -> bool:
        """Every load, scaled to the next better mode's pixel rate, below `low`; every lag below `lag_low_ms`."""
        if v.bedside_load is None and v.console_load is None:
            return False  # nothing measured (no viewer, nothing sent): no reason to believe a better mode fits
        ratio = self.ladder[self.i - 1].cost() / self.mode.cost()
        loads = [x * ratio for x in (v.bedside_load, v.console_load) if x is not None]
        lag_ok = v.lag_ms is None or v.lag_ms * MS < self.lag_low_ns
        return lag_ok and all(x < self.low for x in loads)

    def _move(self, now_ns: int, step: int, reason: ModeReason) -> Mode:
        self.i += step
        self.reason = reason if self.i > 0 else ModeReason.NONE
        self.changed_ns = now_ns
        self.busy_since_ns = self.clear_since_ns = None
        self.sender = _Smoothed(self.tau_ns)  # the old mode's times say nothing about the new one
        for v in self.viewers.values():
            v.work, v.lag = _Smoothed(self.tau_ns), _Smoothed(self.tau_ns)
        self.changes.append((now_ns, self.mode, self.reason))
        return self.mode
