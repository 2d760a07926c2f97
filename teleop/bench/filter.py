"""Tremor filter on synthetic hand motion: attenuation in the tremor band, added delay at surgical motion.

Measured, not computed: the filter of the [teleop] configuration (console.tremor.TremorFilter, switched on
even if the configuration switches it off) runs sample by sample at the console rate on synthetic hand
motion — voluntary motion (20 mm, three axes, different phases) plus a tremor (0.2 mm). Each figure
compares one frequency's component of the output with the input's (a single-bin DFT over whole periods,
after a settling time):

  attenuation_db_10hz   tremor at 10 Hz, motion at 1 Hz: how far the 10 Hz component is pushed down
  delay_ms_1hz          same run: the lag of the 1 Hz component (phase / 2π·f), positive = late
  delay_ms_1hz_no_tremor  no tremor at all: the notch parks at the band edge, the worst case
  attenuation_db_by_hz  the same at every tremor frequency across the band
  attenuation_db_wandering  a tremor whose frequency wanders ±0.5 Hz and amplitude ±50 %: band power ratio
  lock_ms               still hand, tremor starts: time until the residual stays 20 dB down

It also prints the closed-form response of the notch and, for comparison, of a 2nd-order Butterworth
low-pass at 4 Hz (what "a low-pass" would give). docs/teleoperation.md records the figures.
"""

from __future__ import annotations

import argparse
import cmath
import json
import math
import time

import numpy as np

from console.tremor import TremorFilter, notch_response, phase_delay_ms
from teleop.args import positive_seconds
from teleop.bench.link import machine

MOTION_M = 0.02
TREMOR_M = 0.0002
PHASES = (0.0, 1.1, 2.3)
GOALS = {"attenuation_db_10hz": 20.0, "delay_ms_1hz": 10.0}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=positive_seconds, default=8.0, help="length of each synthetic run (default 8)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds ignored at the start of each run")


def make_filter(t, fs: float) -> TremorFilter:
    return TremorFilter(fs, (t.tremor_band_lo_hz, t.tremor_band_hi_hz), t.tremor_q, t.tremor_track_s,
                        adaptive=t.tremor_adaptive, enabled=True)


def synth(fs: float, seconds: float, motion_hz: float, tremor_hz: float | None, onset_s: float = 0.0,
          wander: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(voluntary, tremor) position arrays, shape (n, 3), metres."""
    t = np.arange(int(seconds * fs)) / fs
    ph = np.array(PHASES)
    vol = 0.05 + MOTION_M * np.sin(2 * np.pi * motion_hz * t[:, None] + ph)
    if tremor_hz is None:
        return vol, np.zeros_like(vol)
    if wander:  # frequency ±0.5 Hz at 0.3 Hz, amplitude ±50 % at 0.7 Hz
        phase = 2 * np.pi * tremor_hz * t + (0.5 / 0.3) * np.sin(2 * np.pi * 0.3 * t)
        amp = TREMOR_M * (1.0 + 0.5 * np.sin(2 * np.pi * 0.7 * t))
    else:
        phase, amp = 2 * np.pi * tremor_hz * t, np.full_like(t, TREMOR_M)
    trem = amp[:, None] * np.sin(phase[:, None] + 2 * ph) * (t[:, None] >= onset_s)
    return vol, trem


def run_filter(filt: TremorFilter, x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    for i, p in enumerate(x.tolist()):
        out[i] = filt.update((p[0], p[1], p[2]))
    return out


def component(sig: np.ndarray, fs: float, f: float, start: int) -> np.ndarray:
    """Complex amplitude of `f` in each axis over samples [start:], trimmed to a whole number of 2 s.

    Every frequency used here is a multiple of 0.5 Hz, so each fits the window in whole periods and the
    large 1 Hz motion does not leak into the tremor's bin."""
    n = int((len(sig) - start) // (2 * fs) * 2 * fs)
    seg = sig[start:start + n]
    t = np.arange(start, start + n) / fs
    return (seg * np.exp(-2j * np.pi * f * t)[:, None]).sum(axis=0) * 2 / n


def attenuation_and_delay(t_cfg, fs: float, seconds: float, settle: float, motion_hz: float,
                          tremor_hz: float | None) -> tuple[float | None, float, float]:
    vol, trem = synth(fs, seconds, motion_hz, tremor_hz)
    x = vol + trem
    y = run_filter(make_filter(t_cfg, fs), x)
    start = int(settle * fs)
    att = None
    if tremor_hz is not None:
        xt, yt = component(x, fs, tremor_hz, start), component(y, fs, tremor_hz, start)
        att = 20 * math.log10(np.abs(xt).sum() / max(np.abs(yt).sum(), 1e-300))
    xm, ym = component(x, fs, motion_hz, start), component(y, fs, motion_hz, start)
    ratio = complex((ym / xm).mean())
    return att, -cmath.phase(ratio) / (2 * math.pi * motion_hz) * 1e3, 20 * math.log10(abs(ratio))


def band_power_db(x: np.ndarray, fs: float, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))[:, None], axis=0)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / fs)
    return 10 * math.log10(spec[(f >= lo) & (f <= hi)].sum())


def wandering(t_cfg, fs: float, seconds: float, settle: float) -> float:
    vol, trem = synth(fs, seconds, 1.0, 10.0, wander=True)
    y = run_filter(make_filter(t_cfg, fs), vol + trem)
    yv = run_filter(make_filter(t_cfg, fs), vol)
    s = int(settle * fs)
    lo, hi = t_cfg.tremor_band_lo_hz, t_cfg.tremor_band_hi_hz
    return band_power_db(trem[s:], fs, lo, hi) - band_power_db(y[s:] - yv[s:], fs, lo, hi)


def lock_ms(t_cfg, fs: float, onset_s: float = 2.0, seconds: float = 5.0) -> float | None:
    """A still hand; a 10 Hz tremor starts at `onset_s`: when does the output stay 20 dB down?"""
    _, trem = synth(fs, seconds, 1.0, 10.0, onset_s=onset_s)
    residual = run_filter(make_filter(t_cfg, fs), 0.05 + trem) - 0.05
    win = int(0.05 * fs)
    onset = int(onset_s * fs)
    env = [np.abs(residual[i:i + win]).max() for i in range(onset, len(residual) - win, win)]
    bad = [i for i, e in enumerate(env) if e > TREMOR_M / 10]
    if not bad:
        return 0.0
    if bad[-1] >= len(env) - 2:
        return None
    return (bad[-1] + 1) * win / fs * 1e3


def butter2_response(f: float, fc: float, fs: float) -> complex:
    """A 2nd-order Butterworth low-pass (bilinear, prewarped): the 'just low-pass it' alternative."""
    s = 1j * math.tan(math.pi * f / fs) / math.tan(math.pi * fc / fs)
    return 1 / (s * s + math.sqrt(2) * s + 1)


def measure(t_cfg, fs: float, seconds: float = 8.0, settle: float = 3.0) -> dict:
    att10, d1, g1 = attenuation_and_delay(t_cfg, fs, seconds, settle, 1.0, 10.0)
    _, d1_none, _ = attenuation_and_delay(t_cfg, fs, seconds, settle, 1.0, None)
    lo, hi = t_cfg.tremor_band_lo_hz, t_cfg.tremor_band_hi_hz
    by_hz = {}
    for f in sorted({lo, (lo + 9.0) / 2 if lo < 9 else lo, 9.0, 10.0, 11.0, hi}):
        if lo <= f <= hi:
            by_hz[f"{f:g}"] = round(attenuation_and_delay(t_cfg, fs, seconds, settle, 1.0, f)[0], 1)
    delays = {f"{f:g}": round(attenuation_and_delay(t_cfg, fs, seconds, settle, f, 10.0)[1], 2)
              for f in (0.5, 1.0, 2.0)}
    filt = make_filter(t_cfg, fs)
    t0 = time.perf_counter()
    for i in range(5000):
        filt.update((0.05 + i * 1e-6, 0.0, 0.0))
    cost = (time.perf_counter() - t0) / 5000 * 1e6
    centre = (lo + hi) / 2
    table = []
    for f in (0.5, 1, 2, 4, 6, 8, 9, 10, 11, 12, 15, 20, 50):
        h = notch_response(f, centre, t_cfg.tremor_q, fs)
        b = butter2_response(f, 4.0, fs)
        table.append({"hz": f, "notch_db": round(20 * math.log10(max(abs(h), 1e-15)), 1),
                      "notch_delay_ms": round(phase_delay_ms(h, f), 2),
                      "lowpass4hz_db": round(20 * math.log10(abs(b)), 1),
                      "lowpass4hz_delay_ms": round(phase_delay_ms(b, f), 1)})
    out = {
        "attenuation_db_10hz": round(att10, 1),
        "delay_ms_1hz": round(d1, 2),
        "gain_db_1hz": round(g1, 3),
        "delay_ms_1hz_no_tremor": round(d1_none, 2),
        "attenuation_db_by_hz": by_hz,
        "delay_ms_by_motion_hz": delays,
        "attenuation_db_wandering": round(wandering(t_cfg, fs, seconds, settle), 1),
        "lock_ms": lock_ms(t_cfg, fs),
        "cost_us_per_sample": round(cost, 2),
        "design": {"fs_hz": fs, "band_hz": [lo, hi], "q": t_cfg.tremor_q, "track_s": t_cfg.tremor_track_s,
                   "adaptive": t_cfg.tremor_adaptive, "enabled_in_config": t_cfg.tremor_enabled},
        "response_table": table,
        "goals": {"attenuation_db_10hz": f">= {GOALS['attenuation_db_10hz']:g}",
                  "delay_ms_1hz": f"<= {GOALS['delay_ms_1hz']:g}"},
    }
    out["pass"] = att10 >= GOALS["attenuation_db_10hz"] and d1 <= GOALS["delay_ms_1hz"]
    return out


def run(args: argparse.Namespace) -> int:
    res = measure(args.cfg.teleop, float(args.cfg.console.rate_hz), args.seconds, args.warmup)
    res["machine"] = machine()
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"tremor filter at {res['design']['fs_hz']:g} Hz, band {res['design']['band_hz']} Hz, "
          f"Q {res['design']['q']}, adaptive {res['design']['adaptive']}")
    print(f"  attenuation at 10 Hz   {res['attenuation_db_10hz']:7.1f} dB   (goal >= 20)")
    print(f"  added delay at 1 Hz    {res['delay_ms_1hz']:7.2f} ms   (goal <= 10)")
    print(f"  delay at 1 Hz, no tremor (worst case) {res['delay_ms_1hz_no_tremor']:.2f} ms")
    print(f"  attenuation by tremor frequency: {res['attenuation_db_by_hz']}")
    print(f"  wandering tremor: {res['attenuation_db_wandering']} dB; lock {res['lock_ms']} ms; "
          f"{res['cost_us_per_sample']} µs/sample")
    print("  Hz    notch dB  delay ms | 2nd-order low-pass 4 Hz: dB  delay ms")
    for r in res["response_table"]:
        print(f"  {r['hz']:>4}  {r['notch_db']:8.1f}  {r['notch_delay_ms']:8.2f} | "
              f"{r['lowpass4hz_db']:8.1f}  {r['lowpass4hz_delay_ms']:8.1f}")
    return 0 if res["pass"] else 1
