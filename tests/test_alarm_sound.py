"""Audible alarms (IEC 60601-1-8 priority scheme): the pulse patterns, silencing with expiry, escalation.

Pure: the patterns as data and as samples, the sounder with a fake clock. No sound card (docs/safety.md,
"alarm silenced")."""

from __future__ import annotations

import numpy as np
import pytest

from console.alarm_audio import AlarmPlayer, BurstSource
from console.alarm_sound import CONDITIONS, AlarmSounder, Condition, conditions_of
from console.alarm_tones import HARMONICS, PATTERNS, SAMPLE_RATE, Priority, burst_samples, pulse_onsets_in
from console.indicators import Alarm, Severity

S = 1_000_000_000


def gaps(p) -> list[float]:
    """Silence between consecutive pulses, ms."""
    return [b - a - p.pulse_ms for a, b in zip(p.onsets_ms, p.onsets_ms[1:], strict=False)]


def test_high_priority_is_ten_pulses_in_two_groups_of_three_and_two():
    p = PATTERNS[Priority.HIGH]
    assert len(p.onsets_ms) == 10
    assert 75 <= p.pulse_ms <= 200
    g = gaps(p)
    spacing = g[0]
    assert 50 <= spacing <= 125
    # x-x-x--x-x (pause) x-x-x--x-x: the 3rd-4th gap is 2 spacings + a pulse, the 5th-6th 0.35-1.3 s
    assert g[2] == g[7] == 2 * spacing + p.pulse_ms
    assert g[0] == g[1] == g[3] == g[5] == g[6] == g[8] == spacing
    assert 350 <= g[4] <= 1300
    assert 2.5 <= p.repeat_s <= 15 and p.repeat_s * 1000 > p.burst_ms


@pytest.mark.parametrize(("priority", "pulses"), [(Priority.MEDIUM, 3), (Priority.LOW, 2)])
def test_medium_is_three_pulses_low_two(priority, pulses):
    p = PATTERNS[priority]
    assert len(p.onsets_ms) == pulses
    assert 125 <= p.pulse_ms <= 250
    assert all(125 <= g <= 250 for g in gaps(p))
    assert p.repeat_s * 1000 > p.burst_ms
    assert p.repeat_s >= (2.5 if priority is Priority.MEDIUM else 15)


def test_each_priority_has_its_own_pitch_within_the_standard_range():
    pitches = [PATTERNS[p].f0_hz for p in Priority]
    assert len(set(pitches)) == 3
    for f0 in pitches:
        assert 150 <= f0 <= 1000
        components = [f0 * (k + 1) for k in range(len(HARMONICS))]
        assert sum(300 <= f <= 4000 for f in components) >= 4


@pytest.mark.parametrize("priority", list(Priority))
def test_the_samples_sound_the_pattern(priority):
    """Counted in the samples, as a listener would: each pulse where the table says, at its pitch."""
    p = PATTERNS[priority]
    x = burst_samples(p, volume=0.5)
    assert x.dtype == np.float32 and np.max(np.abs(x)) <= 0.5 + 1e-6
    onsets = pulse_onsets_in(x)
    assert len(onsets) == len(p.onsets_ms)
    assert all(abs(a - b) < 3.0 for a, b in zip(onsets, p.onsets_ms, strict=True))
    first = x[: int(p.pulse_ms * SAMPLE_RATE / 1000)]
    spectrum = np.abs(np.fft.rfft(first))
    peak_hz = np.argmax(spectrum) * SAMPLE_RATE / len(first)
    assert abs(peak_hz - p.f0_hz) < 10


def test_a_condition_sounds_at_once_and_repeats_with_its_pattern():
    s = AlarmSounder(pause_s=120)
    (b,) = s.update(0, {Condition.LINK_LOST})
    assert b.priority is Priority.HIGH and b.at_ns == 0
    repeat = int(PATTERNS[Priority.HIGH].repeat_s * S)
    assert s.update(repeat - 1, {Condition.LINK_LOST}) == []
    assert [b.at_ns for b in s.update(repeat, {Condition.LINK_LOST})] == [repeat]
    assert s.update(repeat + 1, set()) == [] and s.sounding is None


def test_the_highest_priority_sounds_and_a_higher_one_interrupts_at_once():
    s = AlarmSounder()
    assert s.update(0, {Condition.VOICE_LOST})[0].priority is Priority.MEDIUM
    (b,) = s.update(S, {Condition.VOICE_LOST, Condition.ESTOP})  # escalation: no waiting for the next burst
    assert b.priority is Priority.HIGH and b.at_ns == S and b.conditions == (Condition.ESTOP,)
    # the high one clears: medium comes back in its own rhythm, not as a new burst at once
    assert s.update(2 * S, {Condition.VOICE_LOST}) == []
    assert s.sounding is Priority.MEDIUM


def test_silencing_is_temporary_logged_and_returns_after_the_pause():
    s = AlarmSounder(pause_s=60)
    s.update(0, {Condition.LATENCY_HOLD})
    text = s.silence(S, "surgeon:alice")
    assert "paused by surgeon:alice for 60 s" in text and "latency hold" in text
    assert s.update(2 * S, {Condition.LATENCY_HOLD}) == []
    assert s.pause_left_s(2 * S) == pytest.approx(59.0)
    assert s.update(61 * S - 1, {Condition.LATENCY_HOLD}) == []
    (b,) = s.update(61 * S, {Condition.LATENCY_HOLD})  # the pause expired, the condition holds: it sounds
    assert b.priority is Priority.MEDIUM
    logs = [entry.text for entry in s.drain_log()]
    assert logs[0] == text and logs[1].startswith("alarm sound resumed after the 60 s pause")


def test_a_new_higher_priority_condition_sounds_during_a_pause():
    s = AlarmSounder(pause_s=120)
    s.update(0, {Condition.VOICE_LOST})
    s.silence(S, "station:nurse")
    (b,) = s.update(2 * S, {Condition.VOICE_LOST, Condition.LINK_LOST})
    assert b.priority is Priority.HIGH and b.conditions == (Condition.LINK_LOST,)


def test_a_silenced_condition_that_clears_and_returns_is_new():
    s = AlarmSounder(pause_s=120)
    s.update(0, {Condition.VIDEO_STALE})
    s.silence(S, "surgeon:alice")
    assert s.update(2 * S, set()) == []
    assert s.update(3 * S, {Condition.VIDEO_STALE})[0].priority is Priority.HIGH


def test_silence_with_nothing_sounding_is_logged_and_pauses_nothing():
    s = AlarmSounder()
    assert "no alarm is sounding" in s.silence(0, "surgeon:alice")
    assert s.update(S, {Condition.ESTOP})[0].priority is Priority.HIGH


def test_pause_range_is_checked():
    with pytest.raises(ValueError):
        AlarmSounder(pause_s=0.1)


def test_every_named_condition_has_a_priority_and_required_ones_exist():
    assert set(CONDITIONS) == set(Condition)
    for c in (Condition.LINK_LOST, Condition.VIDEO_STALE, Condition.ESTOP, Condition.LATENCY_HOLD,
              Condition.VOICE_LOST, Condition.DEVICE_FAULT):
        assert c in CONDITIONS
    assert CONDITIONS[Condition.ESTOP] is CONDITIONS[Condition.LINK_LOST] is Priority.HIGH


def test_visual_alarms_map_onto_conditions():
    a = [Alarm("latency", Severity.CRITICAL, "LATENCY HIGH", ""), Alarm("link", Severity.WARNING, "CONNECTING", ""),
         Alarm("estop", Severity.CRITICAL, "E-STOP", ""), Alarm("engine", Severity.WARNING, "STARTING", "")]
    assert conditions_of(a) == {Condition.LATENCY_HOLD, Condition.ESTOP}
    assert conditions_of([Alarm("latency", Severity.WARNING, "", "")]) == {Condition.LATENCY_WARN}


def test_the_player_hands_each_burst_to_its_output_and_stops_on_silence():
    player = AlarmPlayer(pause_s=30, volume=0.4, output="null")
    try:
        player.update(0, {Condition.DEVICE_FAULT})
        assert player.source.started == [Priority.HIGH]
        assert player.source.playing
        player.silence(S, "surgeon:alice")
        assert not player.source.playing
    finally:
        player.close()


def test_the_burst_source_plays_then_falls_silent():
    src = BurstSource()
    x = burst_samples(PATTERNS[Priority.LOW], 0.3)
    src.start(Priority.LOW, x)
    got = np.concatenate([src(480) for _ in range(len(x) // 480 + 2)])
    assert np.array_equal(got[: len(x)], x) and not got[len(x):].any()


OK_STATE = {"link": "UP", "video": {"ok": True}, "teleop": {}, "bedside": {"state": "ENABLED"}}


@pytest.mark.parametrize(("change", "condition"), [
    ({"link": "LOST"}, Condition.LINK_LOST),
    ({"video": {"ok": False, "reason": "NO VIDEO"}}, Condition.VIDEO_STALE),
    ({"teleop": {"estop": True}}, Condition.ESTOP),
    ({"bedside": {"estop": True, "state": "PAUSED"}}, Condition.ESTOP),
    ({"teleop": {"latency": {"level": "hard", "text": "round trip 300 ms: following stopped"}}},
     Condition.LATENCY_HOLD),
    ({"bedside": {"state": "FAULT", "reason": "FAULT"}}, Condition.DEVICE_FAULT),
    ("engine silent", Condition.DEVICE_FAULT),
    ("voice", Condition.VOICE_LOST),
])
def test_each_alarm_condition_sounds_on_the_console(change, condition):
    """What console/ui/window.py does each refresh: its visual alarms (console/ui/status.py) → conditions →
    the player (the voice panel sets `voice_lost`)."""
    from console.ui.status import console_alarms

    state, age, extra = dict(OK_STATE), 0.1, set()
    if change == "engine silent":
        age = 10.0
    elif change == "voice":
        extra = {Condition.VOICE_LOST}
    else:
        state.update(change)
    assert conditions_of(console_alarms(OK_STATE, 0.1, False)) == set()
    sounding = conditions_of(console_alarms(state, age, False)) | extra
    assert condition in sounding
    player = AlarmPlayer(pause_s=60, output="null")
    try:
        (burst,) = player.update(0, sounding)
        assert burst.priority is max(CONDITIONS[c] for c in sounding) and condition in sounding
        assert player.source.started == [burst.priority]
    finally:
        player.close()
