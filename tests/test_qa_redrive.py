"""`teleop replay FILE --to-bedside`: a real `teleop bedside` process re-driven with a recorded command
stream reproduces the recorded arm trajectory within the stated tolerance (qa.redrive.DEFAULT_TOLERANCE_MM),
and a bedside that refuses (e-stop) is reported, never bypassed."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
from crossproc import Session, sets

from base.procs import teleop_command
from qa.redrive import DEFAULT_TOLERANCE_MM
from qa.session import Session as QaSession
from qa.synth import synthesize

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    """3 s: engage, follow, clutch, a step-limit rejection, an 80 ms stall the watchdog freezes on."""
    return synthesize(tmp_path_factory.mktemp("rec"), seconds=3.0, video=None)


def _replay(sess: Session, files, out, *more: str) -> tuple[int, dict, str]:
    ctrl = sess.ports[0]
    cmd = teleop_command("replay", *map(str, files), "--to-bedside", f"127.0.0.1:{ctrl}", "--json", str(out),
                         *sets(sess.bed_sets), *more)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    return p.returncode, json.loads(out.read_text()) if out.exists() else {}, p.stdout + p.stderr


def test_redrive_reproduces_the_recorded_trajectory(rec, tmp_path):
    sess = Session(tmp_path, extra=["recording.enabled=false"])
    sess.start_bedside()
    try:
        rc, res, text = _replay(sess, [rec.console, rec.bedside], tmp_path / "r.json")
    finally:
        sess.close()
    assert rc == 0, text
    assert res["ok"] and res["tolerance_mm"] == DEFAULT_TOLERANCE_MM == 1.0
    for arm in ("PSM1", "PSM2", "PSM3", "ECM"):
        assert res["per_arm"][arm]["max_mm"] <= DEFAULT_TOLERANCE_MM, text
    # the bedside applied the same rules to the same stream: the step limit, the watchdog freeze
    assert res["acks"].get("REJECTED_STEP") == 1 and res["acks"].get("ENABLED") == 2, text
    assert len(res["freezes"]) == res["recorded_freezes"] == 1, text
    assert "REPRODUCED" in text


def test_a_bedside_in_estop_is_reported_not_bypassed(rec, tmp_path):
    sess = Session(tmp_path, extra=["recording.enabled=false"])
    bed = sess.start_bedside()
    try:
        bed.signal(signal.SIGUSR1)  # the bedside team's e-stop
        time.sleep(0.3)
        rc, res, text = _replay(sess, [rec.bedside], tmp_path / "r.json")
    finally:
        sess.close()
    assert rc == 1, text
    assert not res["ok"] and res["acks"].get("REJECTED_ESTOP", 0) >= 2
    assert "APPLIED" not in res["acks"]
    assert any("refused" in p and "ENABLE" in p for p in res["problems"]), text


def test_redrive_of_a_real_recording(tmp_path):
    """A recording made by the real recorder (`teleop demo --headless`) re-driven into a fresh bedside."""
    rec_dir = tmp_path / "recordings"
    demo = subprocess.run(teleop_command("demo", "--headless", "--seconds", "3", "--set",
                                         f"recording.dir={rec_dir}"), capture_output=True, text=True, timeout=120)
    files = sorted(rec_dir.glob("*.mcap"))
    if demo.returncode != 0 or len(files) < 2:
        pytest.skip(f"the demo made no recordings (recorder not available?): {demo.stderr[-500:]}")
    sess = Session(tmp_path, extra=["recording.enabled=false"])
    sess.start_bedside()
    try:
        rc, res, text = _replay(sess, files, tmp_path / "r.json")
    finally:
        sess.close()
    assert rc == 0, text
    acks = QaSession(files).acks("console")
    applied = int((acks["status"] == "APPLIED").sum())  # how much of the demo was actually following
    assert applied > 100, "the demo recorded too little motion to compare"
    assert res["acks"].get("APPLIED", 0) >= 0.95 * applied, text
    assert max(d["max_mm"] for d in res["per_arm"].values()) <= DEFAULT_TOLERANCE_MM
