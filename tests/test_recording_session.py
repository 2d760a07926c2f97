"""Black-box recording of real sessions, read back with the `mcap` library alone (no teleop code).

A bedside with video and a headless console (plus a console-side video receiver, as the window has) run
for a few seconds; every catalogue channel must be in each file with its schema, and the counts must match
what the processes themselves reported. Then the kills: the whole bedside process group (recorder included)
and the recorder alone must leave files that read, missing at most the last second.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from crossproc import Session
from mcap.exceptions import EndOfFile
from mcap.reader import NonSeekingReader, make_reader

from base.config import load_config
from recording.catalog import SCHEMAS, channels
from video.receiver import VideoReceiver

pytestmark = pytest.mark.fault

SMALL_VIDEO = ["video.width=320", "video.height=240", "video.fps=30", "video.adaptive=false"]
ENGAGE = ["console.engage_at_s=1.0"]


def ready_field(line: str, key: str) -> str:
    return dict(f.split("=", 1) for f in line.split()[1:] if "=" in f)[key]


def read_file(path: Path) -> tuple[list[tuple[str, str, int, dict]], bool]:
    """(topic, schema name, log_time, message) for every message, and whether the file ended torn."""
    out = []
    with open(path, "rb") as f:
        try:
            for schema, channel, message in NonSeekingReader(f).iter_messages(log_time_order=False):
                out.append((channel.topic, schema.name if schema else "", message.log_time, json.loads(message.data)))
        except EndOfFile:
            return out, True
    return out, False


def one_file(directory: Path, role: str) -> Path:
    files = sorted(directory.glob(f"{role}-*.mcap"))
    assert len(files) == 1, files
    return files[0]


def test_a_recorded_session_has_every_channel_and_the_counts_the_processes_reported(tmp_path) -> None:
    s = Session(tmp_path, video=True, extra=SMALL_VIDEO, con_extra=ENGAGE)
    rx = None
    try:
        s.start_bedside()
        s.start_console()
        assert s.console is not None
        cfg = load_config(None, s.con_sets)
        rx = VideoReceiver(cfg, recorder=ready_field(s.console.ready, "recorder_video"))  # as the window does
        s.wait_engaged()
        time.sleep(2.0)
        rx.close()
        video_rx = rx.counters
        rx = None
        con = s.console_summary()
        bed = s.bedside_summary()
    finally:
        if rx is not None:
            rx.close()
        s.close()

    for role in ("bedside", "console"):
        path = one_file(s.recordings, role)
        with open(path, "rb") as f:
            reader = make_reader(f)
            summary = reader.get_summary()
            assert summary is not None, f"{path} was not closed cleanly"
            have = {(c.topic, summary.schemas[c.schema_id].name) for c in summary.channels.values()}
            for ch in channels(role, "h264"):
                assert (ch.topic, ch.schema) in have, ch
            for sch in summary.schemas.values():
                assert sch.encoding == "jsonschema"
                assert json.loads(sch.data) == SCHEMAS[sch.name]
            assert {c.message_encoding for c in summary.channels.values()} == {"json"}
        with open(path, "rb") as f:
            meta = list(make_reader(f).iter_metadata())
        assert meta and meta[0].name == "teleop.session" and meta[0].metadata["role"] == role
        assert "[recording]" in meta[0].metadata["config_toml"]

    bmsgs, torn = read_file(one_file(s.recordings, "bedside"))
    assert not torn
    b = Counter(t for t, *_ in bmsgs)
    bc = bed["counters"]
    acks_sent = sum(v for k, v in bc.items() if k.startswith("ack_") and k != "ack_dropped") - bc.get("ack_dropped", 0)
    assert b["/bedside/command"] == bc["received"]
    assert b["/bedside/ack"] == acks_sent
    assert b["/bedside/telemetry"] > 200 and b["/bedside/counters"] >= 2
    for arm in ("PSM1", "PSM2", "ECM"):
        assert b[f"/bedside/{arm}/measured_cp"] == b["/bedside/telemetry"]
    assert b["/bedside/event"] >= 2 and b["/bedside/config"] == 1
    assert b["/bedside/video"] == b["/bedside/video/frame"] > 10
    status = [m for t, _, _, m in bmsgs if t == "/bedside/recording"][-1]
    assert status["dropped"]["control"] == 0 and status["invalid"] == 0

    cmsgs, torn = read_file(one_file(s.recordings, "console"))
    assert not torn
    c = Counter(t for t, *_ in cmsgs)
    cc = con["counters"]
    servo = sum(1 for t, _, _, m in cmsgs if t == "/console/command" and m["type"] == "servo_cp")
    assert cc["commands_sent"] - cc.get("send_would_block", 0) <= servo <= cc["commands_sent"]
    assert c["/console/command"] == b["/bedside/command"]  # one host: nothing lost in between
    assert c["/console/ack"] == cc["acks"]
    assert c["/console/telemetry"] == cc["telemetry"]
    assert c["/console/event"] == len(con["events"])
    assert c["/console/link"] >= 20
    assert 0 < c["/console/PSM1/servo_cp"] <= servo // 10 + 2  # ≤ 100 Hz
    status = [m for t, _, _, m in cmsgs if t == "/console/recording"][-1]
    assert status["dropped"]["control"] == 0
    # Video is what a starved recorder sheds first; whatever it sheds is counted and recorded.
    assert (c["/console/video"] + status["dropped"]["video"] == c["/console/video/frame"] + status["dropped"]["video"]
            == video_rx["decoded"] + video_rx["decode_errors"])
    assert c["/console/video"] > 10
    assert c["/console/video"] <= b["/bedside/video"]
    frames = [m for t, _, _, m in cmsgs if t == "/console/video/frame"]
    assert all(m["received_ns"] >= m["send_ns"] - 10**9 for m in frames)
    assert all(m["age_ms"] is None or 0 <= m["age_ms"] < 5000 for m in frames)
    fox = next(m for t, sch, _, m in cmsgs if t == "/console/video" and sch == "foxglove.CompressedVideo")
    assert fox["format"] == "h264" and fox["frame_id"] == "endoscope_stereo" and fox["data"]


def _engaged_session(tmp_path: Path, bed_prefix: list[str] | None = None) -> Session:
    s = Session(tmp_path, con_extra=ENGAGE, bed_prefix=bed_prefix)
    s.start_bedside()
    s.start_console()
    s.wait_engaged()
    time.sleep(1.5)
    return s


@pytest.mark.skipif(shutil.which("setsid") is None, reason="needs setsid(1)")
def test_sigkill_of_the_whole_bedside_group_leaves_a_readable_file_missing_at_most_a_second(tmp_path) -> None:
    s = _engaged_session(tmp_path, bed_prefix=["setsid"])  # its own process group: bedside + recorder
    try:
        assert s.bedside is not None
        kill_wall = time.time_ns()
        os.killpg(s.bedside.pid, signal.SIGKILL)
        s.bedside.proc.wait(5)
    finally:
        s.close()
    msgs, _torn = read_file(one_file(s.recordings, "bedside"))
    last = max(t for _, _, t, _ in msgs)
    print(f"whole group killed: last message {(kill_wall - last) / 1e6:.0f} ms before the kill")
    assert kill_wall - last < 1_000_000_000, (kill_wall - last) / 1e6
    topics = Counter(t for t, *_ in msgs)
    assert topics["/bedside/command"] > 500 and topics["/bedside/ack"] > 500


def test_sigkill_of_the_bedside_lets_its_recorder_close_the_file(tmp_path) -> None:
    s = _engaged_session(tmp_path)
    try:
        assert s.bedside is not None
        kill_wall = time.time_ns()
        s.bedside.signal(signal.SIGKILL)  # the recorder gets SIGTERM from the kernel (PR_SET_PDEATHSIG)
        s.bedside.proc.wait(5)
        path = one_file(s.recordings, "bedside")
        deadline = time.monotonic() + 10
        summary = None
        while summary is None and time.monotonic() < deadline:
            try:
                with open(path, "rb") as f:
                    summary = make_reader(f).get_summary()
            except Exception:  # not closed yet
                pass
            if summary is None:  # never spin: the recorder runs at nice +10 and must get the CPU to close
                time.sleep(0.1)
        why = f"{path} ({path.stat().st_size} bytes) has no summary 10 s after the kill\n{s.diagnostics()}"
    finally:
        s.close()
    assert summary is not None and summary.statistics.message_count > 1000, why
    assert kill_wall - summary.statistics.message_end_time < 1_000_000_000


def test_sigkill_of_the_recorder_loses_at_most_a_chunk_and_control_goes_on(tmp_path) -> None:
    s = _engaged_session(tmp_path)
    try:
        assert s.bedside is not None and s.console is not None
        kill_wall = time.time_ns()
        os.kill(int(ready_field(s.bedside.ready, "recorder_pid")), signal.SIGKILL)
        time.sleep(1.0)
        assert s.bedside.proc.poll() is None
        s.console_summary()
        bed = s.bedside_summary()
    finally:
        s.close()
    msgs, torn = read_file(one_file(s.recordings, "bedside"))
    assert torn or msgs
    recorded = sum(1 for t, *_ in msgs if t == "/bedside/command")
    # Control went on without its recorder: the bedside kept answering for the second after the kill (at
    # least the console's 50 Hz pings; 1 kHz servo_cp unless this loaded host froze the session meanwhile).
    assert bed["counters"]["received"] >= recorded + 25
    chunk_ms = load_config().recording.chunk_ms
    last = max(t for _, _, t, _ in msgs)
    # A starved recorder (nice +10 on a loaded host) may be behind its queue: the loss is then one chunk plus
    # that backlog, which the file itself shows (a status message's time minus the newest data before it).
    lag, newest = 0, 0
    for topic, _, t, _ in msgs:
        if topic == "/bedside/recording":
            lag = max(0, t - newest)
        else:
            newest = max(newest, t)
    print(f"recorder killed: last message {(kill_wall - last) / 1e6:.0f} ms before the kill, "
          f"recorder backlog then {lag / 1e6:.0f} ms")
    assert kill_wall - last < (chunk_ms + 500) * 1_000_000 + lag, (kill_wall - last) / 1e6
