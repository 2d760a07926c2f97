"""Percentiles for benchmark and run summaries (one implementation, used everywhere)."""

from __future__ import annotations

from collections.abc import Sequence


def percentiles(values: Sequence[float], with_max: bool = False) -> dict[str, float | None]:
    """p50/p99/p999 (nearest-rank) of `values`, rounded to 0.1; None for an empty sample."""
    keys = {"p50": 0.50, "p99": 0.99, "p999": 0.999}
    if not values:
        out: dict[str, float | None] = {k: None for k in keys}
        if with_max:
            out["max"] = None
        return out
    s = sorted(values)
    n = len(s)
    out = {k: round(s[min(n - 1, int(q * n))], 1) for k, q in keys.items()}
    if with_max:
        out["max"] = round(s[-1], 1)
    out["n"] = n
    return out
