"""Voice in the black box: what an end sends and hears is recorded as Foxglove CompressedAudio (raw Opus), with
its link transitions, and QA decodes a time range of it back onto the session timeline in the right place."""

from __future__ import annotations

import json

import numpy as np
from conftest import ms
from mcap.reader import make_reader

from qa.voice import export, track
from voice.audio_io import FRAME, RATE, tone
from voice.intercom import VoiceEndpoint, VoiceSettings
from voice.levels import rms_dbfs, tone_power
from voice.record import VoiceRecorder, topics


def _record(tmp_path, start_ns: int = ms(1000)):
    """A console end speaking 0.5 s of 1 kHz after 0.3 s of silence, its packets recorded as sent and as heard
    by a station end 20 ms later."""
    talker = VoiceEndpoint("console", VoiceSettings(mode="open"))
    listener = VoiceEndpoint("station")
    rec_tx = VoiceRecorder(tmp_path, "console")
    rec_rx = VoiceRecorder(tmp_path, "station")
    x = np.concatenate([np.zeros(int(0.3 * RATE), np.float32), tone(1000.0, 0.5)])
    for i in range(x.size // FRAME):
        t = start_ns + i * ms(10)
        for p in talker.on_mic_frame(x[i * FRAME:(i + 1) * FRAME], t):
            rec_tx.packet("tx", t, p)
            rec_rx.packet("rx", t + ms(20), p)
            for tr in listener.on_packet(p, t + ms(20)):
                rec_rx.transition(tr)
    for tr in listener.tick(t + ms(2000)):
        rec_rx.transition(tr)
    rec_tx.close()
    rec_rx.close()
    return rec_tx.path, rec_rx.path


def test_voice_is_recorded_as_foxglove_compressed_audio_with_the_link_state(tmp_path):
    _tx, rx = _record(tmp_path)
    with open(rx, "rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        schemas = {s.name for s in summary.schemas.values()}
        chans = {c.topic for c in summary.channels.values()}
        assert "foxglove.CompressedAudio" in schemas
        assert set(topics("station").values()) <= chans
        msgs = list(reader.iter_messages(topics=[topics("station")["rx"]]))
        first = json.loads(msgs[0][2].data)
        assert first["format"] == "opus" and set(first["timestamp"]) == {"sec", "nsec"} and first["data"]
        links = [json.loads(m.data)["to"] for _s, _c, m in reader.iter_messages(topics=[topics("station")["link"]])]
    assert links == ["UP", "LOST"]
    assert len(msgs) == 80


def test_qa_decodes_a_time_range_in_place(tmp_path):
    tx, rx = _record(tmp_path)
    t0 = ms(1000)
    heard = track(rx, t0, t0 + ms(1000), "rx")
    assert heard.size == RATE
    # silence until 0.3 s + 20 ms of transit, then the tone (codec delay a few ms)
    assert rms_dbfs(heard[: int(0.30 * RATE)]) < -60
    body = heard[int(0.40 * RATE): int(0.75 * RATE)]
    assert tone_power(body, 1000.0) > 0.9 and rms_dbfs(body) > -20
    onset = int(np.flatnonzero(np.abs(heard) > 0.05)[0])
    assert abs(onset / RATE - 0.32) < 0.015
    spoken = track(tx, t0, t0 + ms(1000), "tx")
    onset_tx = int(np.flatnonzero(np.abs(spoken) > 0.05)[0])
    assert abs((onset - onset_tx) / RATE - 0.020) < 0.002
    # the command-line path: a time range of the file alone (its own first packet is 0 s)
    pcm, what = export([str(rx)], 0.1, 0.4, "rx")
    assert pcm.size == int(0.3 * RATE) and "station" in what
