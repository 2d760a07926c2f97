"""Voice over every path (link.paths; voice/paths.py): the first copy of each packet is played, later copies are
counted per path and never reach the jitter buffer, a dead path costs no gap, another key's packet is never a
copy; the per-path voice endpoints are configured and checked; and, across processes, a tone keeps coming through
two emulated paths while one is cut, and every path's voice socket refuses what the single one refused."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import pytest
import zmq
import zmq.auth
from conftest import ms
from voice_peers import curve_client, until_refused

from base.config import ConfigError, link_paths, load_config, voice_paths
from base.procs import free_ports, start_role
from voice import wire
from voice.audio_io import FRAME, tone
from voice.intercom import VoiceEndpoint, VoiceSettings, VoiceState
from voice.jitter import Out
from voice.paths import RING, VoicePaths

F = ms(10)


def _talk(a: VoiceEndpoint, seconds: float, t0: int = 0) -> list[tuple[int, bytes]]:
    """(send time, packet) for `seconds` of a tone from an open-mic end."""
    x = tone(440.0, seconds)
    return [(t0 + i * F, p) for i in range(x.size // FRAME)
            for p in a.on_mic_frame(x[i * FRAME:(i + 1) * FRAME], t0 + i * F)]


# ------------------------------------------------------------------------------------------------ pure


def test_first_copy_wins_and_copies_are_counted_per_path_never_late():
    a = VoiceEndpoint("console", VoiceSettings(mode="open"))
    b = VoiceEndpoint("station", n_paths=2)
    sent = _talk(a, 1.0)
    for i, (t, p) in enumerate(sent):  # the faster path changes every 10 packets; the other copy comes 4 ms later
        first, second = (0, 1) if (i // 10) % 2 == 0 else (1, 0)
        b.on_packet(p, t + ms(2), first, "surgeon:alice")
        assert not b.last_copy
        b.on_packet(p, t + ms(6), second, "surgeon:alice")
        assert b.last_copy
        b.playout(t + ms(8))
    snap = b.snapshot(sent[-1][0] + ms(10))
    n = len(sent)
    assert snap["duplicates"] == n and snap["lost"] == 0
    assert b.jitter.stats.received == n and b.jitter.stats.late == 0 and b.jitter.stats.duplicate == 0
    assert [p["first"] for p in snap["paths"]] == [50, 50] and [p["copies"] for p in snap["paths"]] == [50, 50]
    assert [p["state"] for p in snap["paths"]] == ["UP", "UP"] and snap["received"] == 2 * n


def test_a_path_cut_mid_talk_costs_no_gap_no_concealment_and_the_link_stays_up():
    """Path 0 (the faster) dies for 1.5 s, then comes back: every frame is played, none concealed; path 0 is LOST
    after lost_ms and UP again, the voice link never leaves UP."""
    a = VoiceEndpoint("console", VoiceSettings(mode="open"))
    b = VoiceEndpoint("station", VoiceSettings(lost_ms=500.0), n_paths=2)
    sent = _talk(a, 3.0)
    kinds, transitions = [], []
    cut = (ms(1000), ms(2500))
    for t, p in sent:
        if not cut[0] <= t < cut[1]:
            transitions += b.on_packet(p, t + ms(1), 0, "station")
        transitions += b.on_packet(p, t + ms(3), 1, "station")
        transitions += b.tick(t + ms(4))
        kinds.append(b.playout(t + ms(5))[1])
    played = kinds[kinds.index(Out.PACKET):]
    assert Out.CONCEAL not in played and Out.SILENCE not in played
    assert b.jitter.stats.concealed == 0 and b.jitter.stats.late == 0 and b.snapshot()["lost"] == 0
    assert [tr.to_state for tr in transitions] == [VoiceState.UP] and b.link.state == VoiceState.UP
    events = [(k, up) for k, up, _t in b.drain_path_events()]
    assert events == [(0, True), (1, True), (0, False), (0, True)]
    paths = b.snapshot()["paths"]
    assert paths[1]["first"] >= 150  # path 1 carried the cut (1.5 s of 10 ms frames)


def test_path_state_lost_after_lost_ms_and_shown_per_path():
    ep = VoiceEndpoint("console", VoiceSettings(lost_ms=500.0), n_paths=2)
    ka = VoiceEndpoint("station").keepalive(ms(1000))[0]
    ep.on_packet(ka, ms(100), 0)
    ep.on_packet(ka, ms(100), 1)
    ep.on_packet(ka, ms(700), 1)
    ep.tick(ms(700))
    snap = ep.snapshot(ms(700))
    assert [p["state"] for p in snap["paths"]] == ["LOST", "UP"] and snap["link"] == "UP"
    assert snap["paths"][0]["heard_ms_ago"] == 600.0 and snap["paths"][1]["heard_ms_ago"] == 0.0
    assert VoiceEndpoint("console", n_paths=2).snapshot()["paths"][1]["state"] == "-"


def test_another_keys_packet_is_never_a_copy():
    """Lanes per sender key: seq 5 from bob on path 1 is not alice's seq 5 from path 0 (and leaves hers alone)."""
    vp = VoicePaths(2)
    assert vp.first_copy("surgeon:alice", 0, 5, 111, 0)
    assert vp.first_copy("surgeon:bob", 1, 5, 111, 0)
    assert not vp.first_copy("surgeon:alice", 1, 5, 111, 0)
    assert not vp.first_copy("surgeon:bob", 0, 5, 111, 0)
    assert vp.counters["duplicates"] == 2 and vp.counters["restarts"] == 0


def test_a_restarted_sender_is_not_taken_for_copies():
    vp = VoicePaths(1)
    for s in range(300):
        assert vp.first_copy("station", 0, s, 1000 + s, 0)
    assert vp.first_copy("station", 0, 0, 99_000, 0)  # seq 0 again, sent at another time: a new sender
    assert vp.first_copy("station", 0, 1, 99_010, 0) and vp.counters["restarts"] == 1
    assert not vp.first_copy("station", 0, 1, 99_010, 0)
    far = VoicePaths(1)  # far behind the newest (beyond the ring): a restart too, never a copy
    far.first_copy("station", 0, 10 * RING, 1, 0)
    assert far.first_copy("station", 0, 0, 2, 0) and far.counters["restarts"] == 1
    wrap = VoicePaths(1)  # the u32 sequence wraps
    assert wrap.first_copy("s", 0, 0xFFFFFFFF, 1, 0) and wrap.first_copy("s", 0, 0, 2, 0)
    assert not wrap.first_copy("s", 0, 0xFFFFFFFF, 1, 0) and wrap.counters["gaps"] == 0


def test_a_gap_on_one_path_filled_by_the_other_is_not_lost():
    vp = VoicePaths(2)
    for s in (0, 1, 3):                       # path 0 skipped 2 (its send queue was full)
        assert vp.first_copy("p", 0, s, s, 0)
    assert vp.counters["gaps"] == 1 and vp.lost == 1
    assert vp.first_copy("p", 1, 2, 2, 0)     # path 1 brings it
    assert vp.lost == 0 and vp.counters["filled"] == 1
    assert not vp.first_copy("p", 1, 3, 3, 0)
    assert vp.first_copy("p", 0, 6, 6, 0) and vp.lost == 2  # 4 and 5 came on no path


def test_lanes_are_bounded():
    vp = VoicePaths(1)
    for k in range(50):
        vp.first_copy(f"surgeon:k{k}", 0, 1, 1, k)
    assert len(vp._lanes) <= 8 and "surgeon:k49" in vp._lanes


def test_the_panel_line_names_each_path():
    from console.ui.voice_panel import paths_line

    ep = VoiceEndpoint("console", VoiceSettings(lost_ms=500.0), n_paths=2)
    ka = VoiceEndpoint("station").keepalive(ms(1000))[0]
    assert paths_line(VoiceEndpoint("console").snapshot()["paths"]) == ""
    ep.on_packet(ka, ms(100), 0)
    ep.on_packet(ka, ms(900), 1)
    ep.tick(ms(912))
    assert paths_line(ep.snapshot(ms(912))["paths"]) == "path0 LOST 812 ms ago · path1 UP"


# ------------------------------------------------------------------------------------------------ config


def test_voice_endpoint_per_path_is_the_fifth_field_or_voice_port():
    cfg = load_config(None, ["link.paths=10.9.2.1,127.0.0.1:6001:6002:6003:6005", "voice.port=5599",
                             "link.bind_host=10.9.1.1", "voice.station_host=10.9.1.7"])
    assert [p.voice_port for p in link_paths(cfg.link, "console")] == [None, None, 6005]
    assert voice_paths(cfg, "console") == (("10.9.1.7", 5599), ("10.9.2.1", 5599), ("127.0.0.1", 6005))
    assert voice_paths(cfg, "station") == (("10.9.1.1", 5599), ("10.9.2.1", 5599), ("127.0.0.1", 6005))
    with pytest.raises(ConfigError, match=r"link\.paths"):
        load_config(None, ["link.paths=127.0.0.1:6001:6002:6003:99"])
    with pytest.raises(ConfigError, match=r"link\.paths: 127\.0\.0\.1:6001 is used twice"):
        load_config(None, ["link.paths=127.0.0.1:6001:6002:6003:6001"])


def test_a_shared_voice_endpoint_is_refused_where_voice_runs():
    """Two paths on one host without a VOICE_PORT would share voice.port: fine while voice is off (control and
    video do not care), a ConfigError naming link.paths as soon as voice runs, and voice.port on a control port
    is refused too."""
    same_host = ["link.paths=127.0.0.1:6001:6002:6003"]
    cfg = load_config(None, same_host)
    with pytest.raises(ConfigError, match=r"link\.paths: path1's voice endpoint 127\.0\.0\.1:5575"):
        voice_paths(cfg, "station")
    with pytest.raises(ConfigError, match=r"path1's voice endpoint"):
        load_config(None, [*same_host, "voice.enabled=true"])
    with pytest.raises(ConfigError, match=r"voice\.port 127\.0\.0\.1:5571"):
        load_config(None, ["voice.port=5571", "voice.enabled=true"])


# ------------------------------------------------------------------------------------------------ processes


def _sets(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def _wait_line(role, text: str, timeout_s: float = 20.0, count: int = 1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if role.stderr_text().count(text) >= count:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_a_tone_through_two_paths_survives_one_cut(tmp_path, key_overrides):
    """`teleop voice` at each end, two paths through the link emulator (path 0 faster), both ends talking (open
    mic, a tone each way). Path 0 is cut for 2.5 s (blackhole: what was sent on it is lost, its connections reset
    at the end): each end logs path 0 LOST and UP again, the voice link does not leave UP during the cut, no packet
    is lost for it (so nothing is concealed for the cut: what was missing on path 0 came on path 1; a frame
    concealed on a loaded machine is a late packet, counted as `late`, and named in the message), and path 1
    carried the cut."""
    from rehearsal.linkemu import LinkEmulator, LinkProfile

    v0, v1, c1, t1, d1 = free_ports(5)
    fast, slow = LinkProfile(delay_ms=1.0), LinkProfile(delay_ms=4.0)
    emu = LinkEmulator({"path0/voice": (0, ("127.0.0.1", v0), fast, fast),
                        "path1/voice": (0, ("127.0.0.1", v1), slow, slow)})
    # a 30 ms minimum playout buffer: the step to the slower path (3 ms) must not be what is measured; 1.5 s to call
    # a path (or the link) lost: a niced process starved for 0.5 s on a loaded 2-core machine is not a cut
    common = [*key_overrides, "voice.mode=open", "recording.enabled=false", "voice.jitter_min_ms=30",
              "voice.lost_ms=1500"]
    station_sets = _sets([*common, f"voice.port={v0}", f"link.paths=127.0.0.1:{c1}:{t1}:{d1}:{v1}"])
    console_sets = _sets([*common, f"voice.port={emu.port('path0/voice')}",
                          f"link.paths=127.0.0.1:{c1}:{t1}:{d1}:{emu.port('path1/voice')}"])
    summaries = {side: tmp_path / f"{side}.json" for side in ("station", "console")}
    roles = {}
    try:
        roles["station"] = start_role("voice-station", ["voice", "--input", "tone:600", "--output", "null",
                                                        "--summary", str(summaries["station"]), *station_sets],
                                      timeout=120)
        roles["console"] = start_role("voice-console", ["voice", "--side", "console", "--input", "tone:1000",
                                                        "--output", "null", "--summary", str(summaries["console"]),
                                                        *console_sets], timeout=120)
        for side, r in roles.items():
            assert _wait_line(r, f"voice_link[{side}] ") and _wait_line(r, "voice path1 UP"), r.stderr_text()
        time.sleep(1.0)
        window = emu.add_outage(2.5, "blackhole", links=("path0/voice",))
        for side, r in roles.items():
            assert _wait_line(r, "voice path0 LOST", 10), (side, r.stderr_text())
        for side, r in roles.items():  # back after the cut: ZeroMQ reconnects, a new CURVE handshake
            assert _wait_line(r, "voice path0 UP", 15, count=2), (side, r.stderr_text())
        assert time.monotonic_ns() > window.end_ns
        time.sleep(0.5)
        before_stop = {side: r.stderr_text() for side, r in roles.items()}  # stopping one end makes the other LOST
    finally:
        for r in roles.values():
            r.stop(10)
        emu.close()
    summary = {side: json.loads(summaries[side].read_text()) for side in roles}
    for side, far in (("station", "console"), ("console", "station")):
        s, text = summary[side], before_stop[side]
        in_cut = [round((t - window.start_ns) / 1e6) for t in s["concealed_ns"]
                  if window.start_ns <= t <= window.end_ns + ms(500)]
        why = (f"{side}: {json.dumps({k: s[k] for k in ('lost', 'concealed', 'late', 'duplicates', 'paths')})}, "
               f"concealed during the cut at {in_cut} ms; the far end's paths: {summary[far]['paths']}")
        # no LOST while the emulator cut path 0 (a process, or the emulator, starved for voice.lost_ms on a loaded
        # machine silences every path: that is not the cut, and is not judged outside it)
        lost_at = [_log_mono_ns(ln) for ln in text.splitlines() if f"voice_link[{side}] UP -> LOST" in ln]
        assert not [t for t in lost_at if window.start_ns <= t <= window.end_ns], why + text[-2000:]
        # nothing lost for the cut: a packet no path delivered is one the far end could not even queue on path 1
        # (its send queue full: that machine starved), never one the cut took
        assert s["lost"] <= summary[far]["paths"][1]["send_dropped"], why
        assert s["bad"] == 0 and s["decoder_errors"] == 0, why
        # path 1 carried the cut (250 packets in 2.5 s; path 0, the faster, wins nearly all others); sanity bounds
        # only: a starved machine sends less
        assert s["paths"][1]["first"] >= 50 and s["duplicates"] > 50 and s["played"] > 100, why


def _log_mono_ns(line: str) -> int:
    """A log line's wall-clock stamp (`2026-12-02 09:49:53,631 …`) on this host's monotonic clock."""
    stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return time.monotonic_ns() - round((time.time() - stamp) * 1e9)


def test_every_paths_voice_socket_refuses_monitor_and_unknown_keys(key_overrides):
    """The station's voice socket on path 1 has the CURVE and role checks of path 0: a monitor key and an unknown
    key are refused there, the surgeon's key is admitted, and answered on the path it came by; another surgeon key
    on path 0 is not taken for the talker (lanes and talkers are per key, not per path)."""
    from voice.link import VoiceLink

    keys_dir = Path(next(o for o in key_overrides if o.startswith("security.keys_dir=")).split("=", 1)[1])
    v0, v1, c1, t1, d1 = free_ports(5)
    cfg = load_config(None, [*key_overrides, f"voice.port={v0}", f"link.paths=127.0.0.1:{c1}:{t1}:{d1}:{v1}",
                             "recording.enabled=false"])
    station = VoiceLink(cfg, "station", input_spec="silence", output_spec="null")
    station.start()
    ctx = zmq.Context()
    socks: list[zmq.Socket] = []
    try:
        server_pub, _ = zmq.auth.load_certificate(keys_dir / "bedside.key")
        bad = {"monitor": zmq.auth.load_certificate(keys_dir / "clients" / "monitor.key_secret"),
               "stranger": zmq.curve_keypair()}
        ka = wire.encode(wire.VoicePacket(wire.Kind.KEEPALIVE, wire.Flags.NONE, 0, 0, 0))
        for port in (v0, v1):
            socks += [curve_client(ctx, port, pub, sec, server_pub) for pub, sec in bad.values()]
        snap = until_refused(station, socks, 4, ka)
        assert snap["refused_handshakes"] >= 4 and snap["received"] == 0 and snap["link"] != "UP", snap
        why = [r["why"] for r in station._server_sec.auth.refusals if r["domain"] == "voice"]
        assert sum("monitor" in w for w in why) >= 2 and why.count("unknown key") >= 2, why
        surgeon = zmq.auth.load_certificate(keys_dir / "clients" / "surgeon.key_secret")
        good = curve_client(ctx, v1, *surgeon, server_pub)
        socks.append(good)
        deadline = time.monotonic() + 10
        while station.snapshot()["paths"][1]["messages"] == 0 and time.monotonic() < deadline:
            good.send(ka)
            time.sleep(0.05)
        snap = station.snapshot()
        assert snap["link"] == "UP" and snap["refused"] == 0 and snap["paths"][0]["state"] == "-", snap
        assert good.poll(3000) and wire.decode(good.recv()).kind == wire.Kind.KEEPALIVE  # answered on path 1
        # another surgeon key on path 0 sending the talker's very bytes is not the talker's copy: it is not heard
        other = curve_client(ctx, v0, *zmq.auth.load_certificate(keys_dir / "clients" / "surgeon-2.key_secret"),
                        server_pub)
        socks.append(other)
        for _ in range(20):  # the talker keeps talking (a quiet talker may be taken over after voice.lost_ms)
            good.send(ka)
            other.send(ka)
            time.sleep(0.02)
        snap = station.snapshot()
        assert station.talker == "surgeon:surgeon" and snap["paths"][0]["messages"] == 0, snap
    finally:
        for s in socks:
            s.close(0)
        station.close()
        ctx.term()
