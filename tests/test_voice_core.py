"""Voice intercom, pure parts: wire format, jitter buffer, concealment at 5 % loss, push-to-talk/mute/volume,
the voice-link state machine and level meters. Fake clocks; no device, socket or timing assert."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ms

from voice import wire
from voice.audio_io import FRAME, RATE, BurstTrain, tone
from voice.intercom import VoiceEndpoint, VoiceSettings, VoiceState
from voice.jitter import JitterBuffer, Out
from voice.levels import FLOOR_DB, Meter, OnsetDetector, rms_dbfs, tone_power
from voice.opus import OpusDecoder, OpusEncoder

F = ms(10)


def speechlike(seconds: float, seed: int = 3) -> np.ndarray:
    """A voiced, slowly gliding harmonic signal (pitch 140-180 Hz, 5 harmonics): what PLC is made for."""
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    f0 = 160 + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    x = sum(0.25 / k * np.sin(k * phase) for k in range(1, 6))
    return (x * (0.8 + 0.2 * np.sin(2 * np.pi * 2 * t))).astype(np.float32)


# ------------------------------------------------------------------------------------------------ wire


def test_wire_round_trip():
    p = wire.VoicePacket(wire.Kind.AUDIO, wire.Flags.TALKING, 7, 48000, 123456789, b"\x08abc")
    assert wire.decode(wire.encode(p)) == p


@pytest.mark.parametrize("mutate, word", [
    (lambda b: b[:10], "shorter"),
    (lambda b: b"XX" + b[2:], "magic"),
    (lambda b: b[:2] + bytes([9]) + b[3:], "version"),
    (lambda b: b[:3] + bytes([7]) + b[4:], "kind"),
    (lambda b: b[:4] + bytes([0x80]) + b[5:], "flags"),
    (lambda b: b + b"x", "length"),
])
def test_wire_refuses_malformed(mutate, word):
    good = wire.encode(wire.VoicePacket(wire.Kind.AUDIO, wire.Flags.NONE, 1, 0, 0, b"\x08\x01"))
    with pytest.raises(wire.VoiceWireError, match=word):
        wire.decode(mutate(good))


def test_wire_refuses_empty_audio_and_keepalive_payload():
    empty = wire.HEADER.pack(wire.MAGIC, 1, wire.Kind.AUDIO, 0, 0, 0, 0, 0)
    with pytest.raises(wire.VoiceWireError, match="Opus"):
        wire.decode(empty)
    ka = wire.HEADER.pack(wire.MAGIC, 1, wire.Kind.KEEPALIVE, 0, 0, 0, 0, 1) + b"x"
    with pytest.raises(wire.VoiceWireError, match="keepalive"):
        wire.decode(ka)


# ------------------------------------------------------------------------------------------------ jitter


def test_jitter_reorders_and_plays_in_sequence():
    jb = JitterBuffer(F, min_frames=2)
    for seq in (0, 2, 1, 3):
        jb.push(seq, seq * FRAME, bytes([seq + 1]), ms(seq * 10))
    got = [jb.pop(ms(40 + 10 * i)) for i in range(4)]
    assert [p for _, p in got] == [b"\x01", b"\x02", b"\x03", b"\x04"]
    assert all(k == Out.PACKET for k, _ in got)


def test_jitter_conceals_a_hole_and_drops_late_and_duplicates():
    jb = JitterBuffer(F, min_frames=1)
    jb.push(0, 0, b"a", 0)
    jb.push(2, 2 * FRAME, b"c", ms(20))
    assert jb.pop(ms(20)) == (Out.PACKET, b"a")
    assert jb.pop(ms(30)) == (Out.CONCEAL, None)
    jb.push(1, FRAME, b"b", ms(35))      # too late: its slot was concealed
    jb.push(2, 2 * FRAME, b"c", ms(35))  # duplicate
    assert jb.pop(ms(40)) == (Out.PACKET, b"c")
    assert jb.stats.late == 1 and jb.stats.duplicate == 1 and jb.stats.concealed == 1


def test_jitter_target_grows_with_jitter_and_stays_small_without():
    calm, rough = JitterBuffer(F), JitterBuffer(F)
    rng = np.random.default_rng(1)
    for seq in range(300):
        calm.push(seq, seq * FRAME, b"x", seq * F + ms(5))
        rough.push(seq, seq * FRAME, b"x", seq * F + ms(5) + int(abs(rng.normal(0, ms(25)))))
    assert calm.target_frames == 1
    assert rough.target_frames >= 4


def test_jitter_end_of_spurt_goes_silent_without_concealing():
    jb = JitterBuffer(F, min_frames=1)
    jb.push(0, 0, b"a", 0)
    jb.push(1, FRAME, b"b", ms(10), last=True)
    assert jb.pop(ms(10))[0] == Out.PACKET
    assert jb.pop(ms(20))[0] == Out.PACKET
    assert jb.pop(ms(30))[0] == Out.SILENCE
    assert jb.stats.concealed == 0


def test_jitter_trims_what_the_link_never_needed():
    """A speaker that stalled for 200 ms (no pops) while the link kept delivering: 20 frames pile up that the
    link never needed; they are dropped within a trim period instead of delaying every word after."""
    jb = JitterBuffer(F, min_frames=1)
    t = 0
    for seq in range(200):
        t = seq * F
        jb.push(seq, seq * FRAME, b"x", t + ms(2))
        if not 50 <= seq < 70:
            jb.pop(t + ms(5))
    assert jb.target_frames == 1
    assert jb.stats.dropped_catchup >= 15
    assert jb.depth() <= 2


# ------------------------------------------------------------------------------------------------ opus + PLC


def _conceal_error(loss: float, conceal: bool, seed: int = 5) -> tuple[float, int, int]:
    """Encode speech, lose `loss` of the packets, decode with PLC (or silence): (error energy ratio against
    the loss-free decode, frames out, frames lost)."""
    x = speechlike(3.0)
    enc = OpusEncoder()
    packets = [enc.encode(x[i:i + FRAME])[0] for i in range(0, x.size - FRAME + 1, FRAME)]
    ref_dec, dec = OpusDecoder(), OpusDecoder()
    ref = np.concatenate([ref_dec.decode(p) for p in packets])
    rng = np.random.default_rng(seed)
    lost = rng.random(len(packets)) < loss
    lost[:5] = False
    out = []
    for p, gone in zip(packets, lost, strict=True):
        if not gone:
            out.append(dec.decode(p))
        else:
            out.append(dec.conceal() if conceal else np.zeros(FRAME, np.float32))
    y = np.concatenate(out)
    mask = np.repeat(lost, FRAME)
    err = float(np.sum((y[mask] - ref[mask]) ** 2) / max(1e-12, np.sum(ref[mask] ** 2)))
    return err, y.size // FRAME, int(lost.sum())


def test_opus_round_trip_keeps_a_tone():
    enc, dec = OpusEncoder(), OpusDecoder()
    x = tone(1000.0, 0.5)
    y = np.concatenate([dec.decode(enc.encode(x[i:i + FRAME])[0]) for i in range(0, x.size, FRAME)])
    assert tone_power(y[FRAME * 5:], 1000.0) > 0.9
    assert abs(rms_dbfs(y[FRAME * 5:-FRAME * 5]) - rms_dbfs(x[FRAME * 5:-FRAME * 5])) < 2.0


def test_concealment_at_5_percent_loss_beats_silence():
    """At 5 % random loss every frame is still produced, lost frames are filled by libopus's PLC (not
    silence), and the filled frames are closer to what was lost than silence would be."""
    plc_err, frames, n_lost = _conceal_error(0.05, conceal=True)
    silent_err, _, _ = _conceal_error(0.05, conceal=False)
    assert 5 <= n_lost <= 30 and frames == 300
    assert silent_err == pytest.approx(1.0, abs=0.05)
    assert plc_err < 0.8 * silent_err


def test_endpoint_pair_at_5_percent_loss_conceals_and_never_gaps():
    """Two endpoints, fake clock, 5 % of packets dropped on the way: one frame per period comes out, the
    holes are concealed, the voice stays audible."""
    a, b = VoiceEndpoint("console", VoiceSettings(mode="open")), VoiceEndpoint("station")
    x = speechlike(3.0)
    rng = np.random.default_rng(7)
    kinds, out = [], []
    for i in range(x.size // FRAME):
        now = i * F
        for pkt in a.on_mic_frame(x[i * FRAME:(i + 1) * FRAME], now):
            if i < 5 or rng.random() >= 0.05:
                b.on_packet(pkt, now + ms(3))
        pcm, kind = b.playout(now + ms(5))
        kinds.append(kind)
        out.append(pcm)
    played = kinds[kinds.index(Out.PACKET):]
    assert Out.SILENCE not in played
    assert 5 <= played.count(Out.CONCEAL) <= 30
    assert rms_dbfs(np.concatenate(out[50:])) > -25


# ------------------------------------------------------------------------------------------------ endpoint


def _kinds(packets: list[bytes]) -> list[wire.Kind]:
    return [wire.decode(p).kind for p in packets]


def test_ptt_gates_the_mic_and_marks_the_end_of_a_spurt():
    ep = VoiceEndpoint("console")
    frame = tone(300.0, FRAME / RATE)
    assert _kinds(ep.on_mic_frame(frame, ms(200))) == [wire.Kind.KEEPALIVE]
    assert ep.on_mic_frame(frame, ms(210)) == []           # keepalives only every keepalive_ms
    ep.set_ptt(True)
    sent = ep.on_mic_frame(frame, ms(220))
    assert _kinds(sent) == [wire.Kind.AUDIO] and wire.decode(sent[0]).flags == wire.Flags.TALKING
    ep.set_ptt(False)
    last = wire.decode(ep.on_mic_frame(frame, ms(230))[0])
    assert last.kind == wire.Kind.AUDIO and last.flags == wire.Flags.LAST
    assert ep.on_mic_frame(frame, ms(240)) == []


def test_mute_wins_over_open_mic_and_ptt():
    ep = VoiceEndpoint("console", VoiceSettings(mode="open"))
    ep.set_mute(True)
    ep.set_ptt(True)
    frame = tone(300.0, FRAME / RATE)
    assert wire.Kind.AUDIO not in _kinds(ep.on_mic_frame(frame, ms(500)))
    assert ep.snapshot()["talking"] is False and ep.snapshot()["mic_db"] == FLOOR_DB


def test_volume_scales_playout_and_is_bounded():
    a, b = VoiceEndpoint("console", VoiceSettings(mode="open")), VoiceEndpoint("station")
    x = tone(500.0, 0.3)
    levels = {}
    for vol in (1.0, 0.5):
        b.set_volume(vol)
        pcm_all = []
        for i in range(x.size // FRAME):
            for p in a.on_mic_frame(x[i * FRAME:(i + 1) * FRAME], i * F):
                b.on_packet(p, i * F)
            pcm_all.append(b.playout(i * F + ms(1))[0])
        levels[vol] = rms_dbfs(np.concatenate(pcm_all[10:]))
    assert levels[1.0] - levels[0.5] == pytest.approx(6.0, abs=1.0)
    b.set_volume(9.0)
    assert b.volume == 2.0


def test_voice_link_lost_and_back():
    ep = VoiceEndpoint("station", VoiceSettings(lost_ms=500.0))
    assert ep.link.state == VoiceState.CONNECTING
    assert ep.tick(ms(400)) == []
    (tr,) = ep.tick(ms(600))
    assert tr.to_state == VoiceState.LOST
    ka = VoiceEndpoint("console").keepalive(ms(1000))
    (tr,) = ep.on_packet(ka[0], ms(700))
    assert tr.to_state == VoiceState.UP
    assert ep.tick(ms(1100)) == []
    assert ep.tick(ms(1300))[0].to_state == VoiceState.LOST


def test_malformed_packet_is_counted_never_played():
    ep = VoiceEndpoint("station")
    assert ep.on_packet(b"garbage", 0) == []
    assert ep.counters["bad"] == 1 and ep.link.state == VoiceState.CONNECTING
    assert ep.playout(ms(10))[1] == Out.SILENCE


def test_mode_is_checked():
    with pytest.raises(ValueError, match="mode"):
        VoiceEndpoint("x", VoiceSettings(mode="shout"))


# ------------------------------------------------------------------------------------------------ levels


def test_meter_rises_at_once_and_falls_slowly():
    m = Meter()
    assert m.feed(tone(440.0, 0.1, amplitude=0.5), 0) == pytest.approx(-9.0, abs=0.5)
    assert m.feed(np.zeros(FRAME, np.float32), ms(100)) == pytest.approx(-11.0, abs=0.5)


def test_onset_detector_finds_bursts_and_ignores_noise():
    train = BurstTrain(1000.0, period_ms=200.0)
    det = OnsetDetector(1000.0)
    found = []
    rng = np.random.default_rng(0)
    for i in range(0, RATE, FRAME):
        x = train(i, FRAME) + rng.normal(0, 0.005, FRAME).astype(np.float32)
        t = det.feed(x, i * 1_000_000_000 // RATE)
        if t is not None:
            found.append(t)
    assert len(found) == 5
    assert [abs(t / 1e6 - want) <= 2 for t, want in zip(found, (0, 200, 400, 600, 800), strict=True)] == [True] * 5
    assert OnsetDetector(1000.0).feed(tone(300.0, 0.01), 0) is None


# ------------------------------------------------------------------------------------------------ window link


def test_the_windows_voice_state_reaches_the_engine_as_an_event_and_nothing_else():
    """The voice panel reports each voice-link change on the window link; the engine turns it into a `voice`
    event (what the QA report counts as voice losses) and calls nothing on the controller (no hold)."""
    import json

    from console.uilink import UiMessageError, UiSupervisor, decode_ui_message

    class NoController:
        def __getattr__(self, name):
            raise AssertionError(f"the controller was asked to {name}")

    sup = UiSupervisor(NoController(), 250.0, 200.0, 500.0)
    seen = []
    sup.on_voice = lambda t, state, text: seen.append((t, state, text))
    msg = {"type": "intent", "name": "voice", "value": "LOST", "text": "voice link lost"}
    sup.on_bytes(ms(5), json.dumps(msg).encode(), 0)
    assert seen == [(ms(5), "LOST", "voice link lost")]
    for bad in ({"type": "intent", "name": "voice", "value": "GONE"},
                {"type": "intent", "name": "voice", "value": "UP", "text": 3}):
        with pytest.raises(UiMessageError, match="voice"):
            decode_ui_message(json.dumps(bad).encode())


def test_jitter_resyncs_on_a_far_jump_and_stays_bounded():
    """A sender restarted (or a hostile admitted peer) jumping its sequence far ahead starts a new spurt there:
    the buffer never holds more than 4 × max_frames packets and never walks the gap frame by frame."""
    jb = JitterBuffer(F, min_frames=1, max_frames=20)
    jb.push(0, 0, b"a", 0)
    assert jb.pop(ms(10)) == (Out.PACKET, b"a")
    jb.push(1_000_000, 0, b"z", ms(20))
    assert jb.stats.resyncs == 1 and jb.depth() == 1 and jb.stats.concealed == 0
    for seq in range(2_000_000, 2_000_000 + 10_000, 7):
        jb.push(seq, 0, b"x", ms(40))
    assert len(jb._packets) <= 4 * 20 + 1
