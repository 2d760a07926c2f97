"""Voice intercom, real parts: a tone from the console's microphone to the station's speaker and back, through
real Opus, CurveZMQ and a real sound server (PulseAudio null sinks, PortAudio's `pulse` device) in separate
processes; and the voice channel's refusal of monitor, QA and unknown keys."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
import zmq.auth
from voice_peers import curve_client, until_refused

from base.config import load_config
from base.procs import free_ports, start_role
from voice import wire
from voice.audio_io import RATE, tone
from voice.levels import rms_dbfs, tone_power
from voice.link import VoiceLink
from voice.soundserver import PulseServer

SINKS = ("mic_console", "spk_station", "spk_console")
START_S = 120.0
"""READY may take long on a loaded 2-core machine (other suites running): a slow start is not what is tested."""


@pytest.fixture(scope="module")
def sound_server(tmp_path_factory):
    """A private PulseAudio with three null sinks; started if not running, stopped after. Skips (saying why)
    only if the Debian packages are not installed."""
    why = PulseServer.missing()
    if why:
        pytest.skip(why)
    server = PulseServer(tmp_path_factory.mktemp("pulse"), SINKS)
    server.start()
    yield server
    server.stop()


def _sets(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def _record(server: PulseServer, source: str, path: Path) -> tuple[subprocess.Popen, Path]:
    """`parec` from `source` into a file (a pipe nobody reads would fill and stall it)."""
    with open(path, "wb") as f:
        proc = subprocess.Popen(["parec", f"--device={source}", "--format=float32le", f"--rate={RATE}",
                                 "--channels=1", "--raw", "--latency-msec=20"], stdout=f,
                                env={**server.env_base, "PATH": "/usr/bin:/bin"})
    return proc, path


def _heard(rec: tuple[subprocess.Popen, Path]) -> np.ndarray:
    proc, path = rec
    proc.terminate()
    proc.wait(10)
    data = path.read_bytes()
    return np.frombuffer(data[: len(data) // 4 * 4], dtype="<f4")


@pytest.mark.slow
def test_tone_from_console_mic_to_station_speaker_and_back(sound_server, tmp_path, key_overrides):
    """Console mic = monitor of sink `mic_console` (the test plays a 1 kHz tone into it); the station plays into
    `spk_station` and its mic hears that sink (a loop at the far end), so the tone comes back to the console's
    speaker `spk_console`. Both speakers are recorded and must carry the tone."""
    port = free_ports(1)[0]
    overrides = [*key_overrides, f"voice.port={port}", "voice.mode=open", f"recording.dir={tmp_path / 'rec'}"]
    summaries = {side: tmp_path / f"{side}.json" for side in ("station", "console")}
    roles = []
    try:
        roles.append(start_role("voice-station", ["voice", "--input", "pulse", "--output", "pulse", "--summary",
                                                  str(summaries["station"]), *_sets(overrides)],
                                env=sound_server.env("spk_station", "spk_station.monitor"), timeout=START_S))
        roles.append(start_role("voice-console", ["voice", "--side", "console", "--input", "pulse", "--output",
                                                  "pulse", "--summary", str(summaries["console"]), *_sets(overrides)],
                                env=sound_server.env("spk_console", "mic_console.monitor"), timeout=START_S))
        for r, side in zip(roles, ("station", "console"), strict=True):  # both ends hear each other (keepalives)
            assert _wait_line(r, f"voice_link[{side}] ", 60) and _wait_line(r, "-> UP", 60), r.stderr_text()
        at_station = _record(sound_server, "spk_station.monitor", tmp_path / "station.f32")
        at_console = _record(sound_server, "spk_console.monitor", tmp_path / "console.f32")
        time.sleep(0.5)
        x = tone(1000.0, 4.0, amplitude=0.3)
        subprocess.run(["pacat", "--playback", "--device=mic_console", "--format=float32le", f"--rate={RATE}",
                        "--channels=1", "--raw"], input=x.astype("<f4").tobytes(), env={**sound_server.env_base},
                       timeout=30, check=True)
        time.sleep(0.8)
        heard = {"station": _heard(at_station), "console": _heard(at_console)}
    finally:
        for r in reversed(roles):
            r.stop(10)
    diag = "\n".join(r.stderr_text()[-2000:] for r in roles)
    for where, y in heard.items():
        assert y.size > RATE, f"{y.size} samples recorded at the {where}'s speaker\n{diag}"
        # some 100 ms the speaker played is the tone (level and pitch), not noise or concealment; a loaded machine
        # may glitch elsewhere in the 4 s
        frames = y[: y.size // 4800 * 4800].reshape(-1, 4800)
        toned = [f for f in frames if rms_dbfs(f) > -30 and tone_power(f, 1000.0) > 0.8]
        loudest = max(rms_dbfs(f) for f in frames)
        assert len(toned) >= 3, f"{where}: the 1 kHz tone did not come through (loudest {loudest:.1f} dBFS)\n{diag}"
    for side, path in summaries.items():
        s = json.loads(path.read_text())
        assert s["received"] > 100 and s["bad"] == 0 and s["decoder_errors"] == 0, (side, s)
        assert Path(s["recording"]).exists()


def _wait_line(role, text: str, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in role.stderr_text():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_killing_the_station_shows_voice_lost_at_the_console_and_it_comes_back(tmp_path, key_overrides):
    """A voice end that dies (SIGKILL: no goodbye) is seen as VOICE LINK LOST at the other end within
    voice.lost_ms; a restarted station brings it back UP without touching the console."""
    port = free_ports(1)[0]
    sets = _sets([*key_overrides, f"voice.port={port}", "voice.mode=open", "recording.enabled=false"])
    head = ["voice", "--input", "silence", "--output", "null"]
    station = start_role("voice-station", [*head, *sets], timeout=START_S)
    console = start_role("voice-console", [*head, "--side", "console", *sets], timeout=START_S)
    try:
        assert _wait_line(console, "voice_link[console] CONNECTING -> UP"), console.stderr_text()
        station.proc.kill()
        station.proc.wait(10)
        assert _wait_line(console, "voice_link[console] UP -> LOST"), console.stderr_text()
        assert "no voice packet for 500 ms" in console.stderr_text()
        station = start_role("voice-station", [*head, *sets], timeout=START_S)
        assert _wait_line(console, "voice_link[console] LOST -> UP"), console.stderr_text()
    finally:
        console.stop(10)
        station.stop(10)


@pytest.mark.slow
def test_a_headless_console_with_voice_runs_it_as_a_child_and_ends_it(tmp_path, key_overrides):
    """voice.enabled on a headless console: its voice end runs as a child process (not in the 1 kHz loop), is
    heard by the station, and ends with the console (the station then sees the voice link lost)."""
    from base.procs import port_overrides

    ctrl, telem, video, vport = free_ports(4)
    sets = _sets([*key_overrides, *port_overrides(ctrl, telem, video), f"voice.port={vport}",
                  "recording.enabled=false"])
    station = start_role("voice-station", ["voice", "--input", "silence", "--output", "null", *sets], timeout=START_S)
    bedside = start_role("bedside", ["bedside", "--no-video", *sets], timeout=START_S)
    try:
        console = start_role("console", ["console", "--headless", "--seconds", "240", *sets, "--set",
                                         "voice.enabled=true", "--set", "voice.input=tone:440", "--set",
                                         "voice.output=null", "--set", "voice.mode=open"], timeout=START_S)
        assert _wait_line(station, "talking with surgeon:surgeon", 180), station.stderr_text() + console.stderr_text()
        assert _wait_line(station, "voice_link[station] LOST -> UP", 30), station.stderr_text()
        assert console.stop(60) == 0
        assert _wait_line(station, "voice_link[station] UP -> LOST", 30), station.stderr_text()
    finally:
        bedside.stop(10)
        station.stop(10)


def test_voice_refuses_monitor_qa_and_unknown_keys(tmp_path, key_overrides):
    keys_dir = Path(next(o for o in key_overrides if o.startswith("security.keys_dir=")).split("=", 1)[1])
    port = free_ports(1)[0]
    cfg = load_config(None, [*key_overrides, f"voice.port={port}", "recording.enabled=false"])
    station = VoiceLink(cfg, "station", input_spec="silence", output_spec="null")
    station.start()
    ctx = zmq.Context()
    try:
        server_pub, _ = zmq.auth.load_certificate(keys_dir / "bedside.key")
        stranger_pub, stranger_sec = zmq.curve_keypair()
        pairs = {name: zmq.auth.load_certificate(keys_dir / "clients" / f"{name}.key_secret")
                 for name in ("monitor", "qa")}
        pairs["stranger"] = (stranger_pub, stranger_sec)
        bad = [curve_client(ctx, port, pub, sec, server_pub) for pub, sec in pairs.values()]
        ka = wire.encode(wire.VoicePacket(wire.Kind.KEEPALIVE, wire.Flags.NONE, 0, 0, 0))
        snap = until_refused(station, bad, 3, ka)
        assert snap["refused_handshakes"] >= 3, snap
        assert snap["received"] == 0 and snap["link"] != "UP", snap
        why = {r["why"] for r in station._server_sec.auth.refusals if r["domain"] == "voice"}
        assert any("monitor" in w for w in why) and any("qa" in w for w in why) and "unknown key" in why, why
        # the surgeon's key is admitted on the same socket
        good = curve_client(ctx, port, *zmq.auth.load_certificate(keys_dir / "clients" / "surgeon.key_secret"),
                       server_pub)
        deadline = time.monotonic() + 10
        while station.snapshot()["received"] == 0 and time.monotonic() < deadline:
            good.send(ka)
            time.sleep(0.05)
        assert station.snapshot()["received"] > 0 and station.snapshot()["link"] == "UP"
        assert station.snapshot()["refused"] == 0
        for s in [*bad, good]:
            s.close(0)
    finally:
        station.close()
        ctx.term()


def test_voice_user_errors_are_one_line(key_overrides, tmp_path):
    """A device that does not exist, a key or a file that is not there, a recording directory that cannot be: one
    line naming it, exit 2, no traceback, and no empty recording left behind."""
    from base.procs import teleop_command

    port = free_ports(1)[0]
    base = _sets([*key_overrides, f"voice.port={port}", f"recording.dir={tmp_path}"])
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for extra, word in ((["--input", "no-such-microphone", "--output", "null"], "no-such-microphone"),
                        (["--side", "console", "--input", "silence", "--output", "null", "--set",
                          "security.identity=nobody"], "nobody"),
                        (["--input", "file:/nonexistent.wav", "--output", "null"], "nonexistent.wav"),
                        (["--input", "silence", "--output", "null", "--set", f"recording.dir={blocker}/x"],
                         "recording.dir")):
        r = subprocess.run(teleop_command("voice", *base, *extra, "--seconds", "1"), capture_output=True, text=True,
                           timeout=60)
        lines = [ln for ln in r.stderr.splitlines() if ln.startswith("teleop:")]
        assert r.returncode == 2 and len(lines) == 1 and word in lines[0], r.stderr
        assert "Traceback" not in r.stderr
    assert not list(tmp_path.glob("voice-*.mcap"))
