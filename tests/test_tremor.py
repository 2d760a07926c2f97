"""console.tremor: the adaptive notch's response, tracking, and the bench's two headline figures."""

from __future__ import annotations

import math

import numpy as np
import pytest

from base.config import TeleopConfig
from console.tremor import TremorFilter, notch_response, phase_delay_ms
from teleop.bench.filter import measure, run_filter, synth

FS = 1000.0


def sine(f: float, seconds: float, amp: float = 0.001, base: float = 0.05) -> np.ndarray:
    t = np.arange(int(seconds * FS)) / FS
    return base + amp * np.sin(2 * np.pi * f * t)[:, None] * np.ones(3)


def test_a_still_hand_passes_exactly_from_the_first_sample() -> None:
    f = TremorFilter(FS)
    p = (0.1, -0.2, 0.3)
    for _ in range(500):
        assert f.update(p) == pytest.approx(p, abs=1e-15)


def test_retuning_the_notch_with_a_still_hand_injects_nothing() -> None:
    f = TremorFilter(FS, adaptive=False)
    p = (0.1, -0.2, 0.3)
    f.update(p)
    for centre in (8.0, 12.0, 9.3):
        f.tune(centre)
        assert f.update(p) == pytest.approx(p, abs=1e-15)


def test_disabled_is_the_identity() -> None:
    f = TremorFilter(FS, enabled=False)
    p = (0.1, 0.2, 0.3)
    assert f.update(p) is p and f.response(10.0) == 1


@pytest.mark.parametrize("f_hz", [6.0, 10.0, 15.0])
def test_closed_form_response_matches_the_running_filter(f_hz: float) -> None:
    x = sine(f_hz, 4.0)
    y = run_filter(TremorFilter(FS, adaptive=False), x)
    t = np.arange(len(x))[2000:] / FS
    ref = np.exp(-2j * np.pi * f_hz * t)
    ratio = ((y[2000:, 0] - 0.05) * ref).sum() / ((x[2000:, 0] - 0.05) * ref).sum()
    h = notch_response(f_hz, 10.0, 2.2, FS)
    assert abs(ratio) == pytest.approx(abs(h), abs=2e-3)
    if abs(h) > 0.01:
        assert phase_delay_ms(ratio, f_hz) == pytest.approx(phase_delay_ms(h, f_hz), abs=0.05)


@pytest.mark.parametrize("tremor_hz", [8.0, 9.5, 12.0])
def test_the_notch_tracks_the_tremor_across_the_band(tremor_hz: float) -> None:
    vol, trem = synth(FS, 3.0, 1.0, tremor_hz)
    f = TremorFilter(FS)
    run_filter(f, vol + trem)
    assert f.freq_hz == pytest.approx(tremor_hz, abs=0.1)


def test_the_estimate_stays_in_the_band() -> None:
    f = TremorFilter(FS)
    run_filter(f, sine(3.0, 2.0))
    assert f.freq_hz == 8.0
    f = TremorFilter(FS)
    run_filter(f, sine(30.0, 2.0))
    assert f.freq_hz == 12.0


def test_bench_figures_meet_the_goals() -> None:
    res = measure(TeleopConfig(), FS, seconds=6.0, settle=2.0)
    assert res["attenuation_db_10hz"] >= 20.0
    assert 0.0 < res["delay_ms_1hz"] <= 10.0
    assert res["delay_ms_1hz_no_tremor"] <= 10.0  # worst case: notch parked at the band's low edge
    assert min(res["attenuation_db_by_hz"].values()) >= 20.0
    assert abs(res["gain_db_1hz"]) < 0.1
    assert res["pass"]


def test_a_fixed_notch_is_narrow_which_is_why_it_adapts() -> None:
    h8 = notch_response(8.0, 10.0, 2.2, FS)
    assert 20 * math.log10(abs(h8)) > -6.0  # a fixed 10 Hz notch barely touches an 8 Hz tremor


def test_bad_band_is_refused() -> None:
    with pytest.raises(ValueError):
        TremorFilter(FS, band_hz=(12.0, 8.0))
    with pytest.raises(ValueError):
        TremorFilter(100.0, band_hz=(8.0, 60.0))
