"""Physiological-tremor filter for master positions: an adaptive notch that tracks the tremor.

Why a notch and not a low-pass. Tremor sits at 8–12 Hz, surgical motion below 2 Hz: only a factor of four
apart. By Bode's gain–phase relation, any minimum-phase filter that falls by 20 dB between 2 and 8 Hz and
stays down lags by roughly 60 ms at 1 Hz (a 2nd-order Butterworth at 4 Hz: 56 ms and still only 16 dB at
10 Hz). A notch falls and rises again, so most of its phase lag cancels: a notch of quality Q centred on f0
delays low frequencies by about 1/(2π·f0·Q) — 7 ms for Q = 2.2 at 10 Hz — while removing f0 completely.
The price is width: one fixed notch is 20 dB deep only within a fraction of a hertz of f0.

Why adaptive. One person's tremor is narrow-band, but its centre varies between people and with fatigue
anywhere in 8–12 Hz. So the notch follows it: the tremor band is isolated (4th-order Butterworth
high-pass at 0.75·lo and low-pass at 1.25·hi, used only for the estimate, never in the signal path), and
its frequency is estimated from the ratio of the powers of its third and first differences (for a
sampled sine x[n] = sin(ωn): P(Δ³x)/P(Δx) = 16·sin⁴(ω/2), exact; Δx and Δ³x oscillate in phase, so the
ratio of their averaged powers barely ripples, and slow leakage from voluntary motion is weighted by ω²).
The powers are averaged over `track_s`; the estimate is clamped to the band, so the worst-case lag at
1 Hz is that of a notch at the band's low edge (9 ms for the defaults).

The notch is a trapezoidal state-variable filter (Simper's SVF, equal to the bilinear transform of
(s² + ω0²)/(s² + s·ω0/Q + ω0²) prewarped at f0). Its states for a still hand are (0, position) whatever
f0 is, so retuning f0 at run time injects no transient; DC gain is exactly 1, so the filter never offsets
a held pose. Orientation and gripper are not filtered (docs/teleoperation.md).
"""

from __future__ import annotations

import cmath
import math

from base.geometry import Vec3

BUTTERWORTH4_K = (1.0 / 0.5411961001461970, 1.0 / 1.3065629648763766)
"""Damping k = 1/Q of the two sections of a 4th-order Butterworth filter."""
_EST_EVERY = 8
"""Re-estimate the tremor frequency every this many samples (each costs one asin and one tan)."""


def svf_g(f_hz: float, fs_hz: float) -> float:
    return math.tan(math.pi * f_hz / fs_hz)


def notch_response(f_hz: float, f0_hz: float, q: float, fs_hz: float) -> complex:
    """Frequency response of the discrete notch at `f_hz` (closed form of the prewarped bilinear design)."""
    t = math.tan(math.pi * f_hz / fs_hz) / math.tan(math.pi * f0_hz / fs_hz)
    return (1.0 - t * t) / complex(1.0 - t * t, t / q)


def phase_delay_ms(h: complex, f_hz: float) -> float:
    """Lag (ms) that the phase of `h` amounts to at `f_hz`; positive = output late."""
    return -cmath.phase(h) / (2.0 * math.pi * f_hz) * 1e3


def _svf_coeffs(g: float, k: float) -> tuple[float, float, float]:
    a1 = 1.0 / (1.0 + g * (g + k))
    a2 = g * a1
    return a1, a2, g * a2


class TremorFilter:
    """Filters one hand's position (three axes) one sample at a time at a fixed rate `fs_hz`."""

    def __init__(self, fs_hz: float, band_hz: tuple[float, float] = (8.0, 12.0), q: float = 2.2,
                 track_s: float = 0.2, adaptive: bool = True, enabled: bool = True) -> None:
        lo, hi = band_hz
        if not 0.0 < lo < hi < fs_hz / 2.0:
            raise ValueError(f"tremor band {band_hz} must satisfy 0 < lo < hi < fs/2")
        self.fs = float(fs_hz)
        self.band = (float(lo), float(hi))
        self.q = float(q)
        self.k = 1.0 / self.q
        self.adaptive = adaptive
        self.enabled = enabled
        self.freq_hz = (lo + hi) / 2.0
        self._notch = _svf_coeffs(svf_g(self.freq_hz, self.fs), self.k)
        hp_g, lp_g = svf_g(0.75 * lo, self.fs), svf_g(min(1.25 * hi, 0.45 * self.fs), self.fs)
        self._est = tuple(_svf_coeffs(hp_g, k) for k in BUTTERWORTH4_K) + tuple(
            _svf_coeffs(lp_g, k) for k in BUTTERWORTH4_K)
        self._alpha = 1.0 - math.exp(-1.0 / (self.fs * track_s))
        self._ready = False
        self._n = 0
        self._p1 = 0.0
        self._p3 = 0.0
        self._z: list[float] = []
        self._e: list[float] = []
        self._d: list[float] = []

    def reset(self, p: Vec3) -> None:
        """Start in the steady state of a hand held still at `p`: no start-up transient."""
        # notch states per axis: (band integrator, low integrator) = (0, p)
        self._z = [0.0, p[0], 0.0, p[1], 0.0, p[2]]
        # estimator: 4 SVF stages × 3 axes × 2 states; only the first high-pass sees the DC
        self._e = [0.0] * 24
        for ax in range(3):
            self._e[ax * 8 + 1] = p[ax]
        self._d = [0.0] * 9  # per axis: previous band value, first and second differences
        self._p1 = self._p3 = 0.0
        self._ready = True

    def update(self, p: Vec3) -> Vec3:
        if not self.enabled:
            return p
        if not self._ready:
            self.reset(p)
        if self.adaptive:
            self._estimate(p)
        a1, a2, a3 = self._notch
        k = self.k
        z = self._z
        out = [0.0, 0.0, 0.0]
        for ax in range(3):
            v0 = p[ax]
            i = 2 * ax
            ic1, ic2 = z[i], z[i + 1]
            v3 = v0 - ic2
            v1 = a1 * ic1 + a2 * v3
            v2 = ic2 + a2 * ic1 + a3 * v3
            z[i] = 2.0 * v1 - ic1
            z[i + 1] = 2.0 * v2 - ic2
            out[ax] = v0 - k * v1
        return (out[0], out[1], out[2])

    def _estimate(self, p: Vec3) -> None:
        e, d, est = self._e, self._d, self._est
        s1 = s3 = 0.0
        for ax in range(3):
            x = p[ax]
            base = ax * 8
            for stage in range(4):
                a1, a2, a3 = est[stage]
                j = base + 2 * stage
                ic1, ic2 = e[j], e[j + 1]
                v3 = x - ic2
                v1 = a1 * ic1 + a2 * v3
                v2 = ic2 + a2 * ic1 + a3 * v3
                e[j] = 2.0 * v1 - ic1
                e[j + 1] = 2.0 * v2 - ic2
                # stages 0-1 high-pass (x - k·band - low), stages 2-3 low-pass (low)
                x = x - BUTTERWORTH4_K[stage] * v1 - v2 if stage < 2 else v2
            k3 = 3 * ax
            d1 = x - d[k3]
            d2 = d1 - d[k3 + 1]
            d3 = d2 - d[k3 + 2]
            d[k3], d[k3 + 1], d[k3 + 2] = x, d1, d2
            s1 += d1 * d1
            s3 += d3 * d3
        al = self._alpha
        self._p1 += al * (s1 - self._p1)
        self._p3 += al * (s3 - self._p3)
        self._n += 1
        if self._n % _EST_EVERY == 0 and self._p1 > 0.0:
            w = 2.0 * math.asin(min(1.0, math.sqrt(math.sqrt(self._p3 / self._p1)) / 2.0))
            f = min(self.band[1], max(self.band[0], w * self.fs / (2.0 * math.pi)))
            if abs(f - self.freq_hz) > 0.01:
                self.tune(f)

    def tune(self, f_hz: float) -> None:
        """Move the notch to `f_hz` (clamped to the band); safe at any time, the SVF needs no reset."""
        self.freq_hz = min(self.band[1], max(self.band[0], f_hz))
        self._notch = _svf_coeffs(svf_g(self.freq_hz, self.fs), self.k)

    def response(self, f_hz: float) -> complex:
        """The notch's linear response at its current centre (1 when disabled)."""
        if not self.enabled:
            return complex(1.0, 0.0)
        return notch_response(f_hz, self.freq_hz, self.q, self.fs)
