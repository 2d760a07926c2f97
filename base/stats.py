"""Percentiles for benchmark and run summaries (one implementation, used everywhere)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def percentiles(values: Sequence[float], with_max: bool = False, names: Sequence[str] = ("p50", "p99", "p999"),
                digits: int = 1) -> dict[str, float | None]:
    """p50/p99/p999 (or the percentiles `names` names: "p95" is the 0.95 quantile) of `values`, nearest-rank,
    rounded to `digits`; None for an empty sample."""
    keys = {k: float("0." + k[1:]) for k in names}
    if not values:
        out: dict[str, float | None] = {k: None for k in keys}
        if with_max:
            out["max"] = None
        return out
    s = sorted(values)
    n = len(s)
    out = {k: round(s[min(n - 1, int(q * n))], digits) for k, q in keys.items()}
    if with_max:
        out["max"] = round(s[-1], digits)
    out["n"] = n
    return out


def arrival_spread(transits: Sequence[int], q: float = 95.0) -> int:
    """How much later than the earliest of `transits` (arrival minus send/media time, any one clock) the q-th
    percentile arrived: the delay a playout buffer adds so that most samples are there when due. Both the voice
    jitter buffer and the force playout size themselves with it."""
    t = np.asarray(transits, dtype=np.int64)
    return int(np.percentile(t - t.min(), q)) if t.size else 0


class Histogram:
    """Durations in fixed memory, for summaries of runs that may last hours (a list of every 1 kHz RTT grew
    the console by ~150 MB an hour). Exact to 1 µs below 4.096 ms, within 1/256 above; `max` is exact.
    Percentiles are nearest-rank like `percentiles`, each reported at the middle of its bin."""

    LINEAR_US = 4096
    SUB_BITS = 8
    DOUBLINGS = 24  # 4.096 ms · 2^24 ≈ 19 h; anything longer counts in the last bin

    def __init__(self) -> None:
        self.counts = [0] * (self.LINEAR_US + (self.DOUBLINGS << self.SUB_BITS))
        self.n = 0
        self.max_ns = 0

    def add_ns(self, ns: int) -> None:
        us = ns // 1000 if ns > 0 else 0  # max(0, ns) // 1000 without a builtin call: per tick and per ack
        if us < self.LINEAR_US:
            i = us
        else:
            shift = us.bit_length() - self.SUB_BITS - 1
            i = self.LINEAR_US + ((shift - 4) << self.SUB_BITS) + ((us >> shift) & ((1 << self.SUB_BITS) - 1))
            i = min(i, len(self.counts) - 1)
        self.counts[i] += 1
        self.n += 1
        if ns > self.max_ns:
            self.max_ns = ns

    def _mid_us(self, i: int) -> float:
        if i < self.LINEAR_US:
            return i + 0.5
        k = i - self.LINEAR_US
        shift = (k >> self.SUB_BITS) + 4
        low = ((1 << self.SUB_BITS) + (k & ((1 << self.SUB_BITS) - 1))) << shift
        return low + (1 << shift) / 2

    def percentiles(self, with_max: bool = False) -> dict[str, float | None]:
        """The same keys as `percentiles` (µs)."""
        if not self.n:
            return percentiles([], with_max)
        want = {k: min(self.n - 1, int(q * self.n)) for k, q in (("p50", 0.50), ("p99", 0.99), ("p999", 0.999))}
        out: dict[str, float | None] = {}
        seen = 0
        for i, c in enumerate(self.counts):
            if not c:
                continue
            seen += c
            for k, rank in want.items():
                if k not in out and rank < seen:
                    out[k] = round(min(self._mid_us(i), self.max_ns / 1e3), 1)
            if len(out) == len(want):
                break
        if with_max:
            out["max"] = round(self.max_ns / 1e3, 1)
        out["n"] = self.n
        return out
