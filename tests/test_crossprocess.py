"""Real processes on loopback: the demo, and the watchdogs on both ends when the other end dies or stalls."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from crossproc import Session, TelemetryTap

from transport.messages import ArmMode, OperatingState, Reason

pytestmark = pytest.mark.fault


@pytest.fixture
def session(tmp_path):
    s = Session(tmp_path, con_extra=["console.engage_at_s=0.3"])
    yield s
    s.close()


def test_headless_demo_reports_a_clean_run():
    out = subprocess.run([sys.executable, "-m", "teleop.cli", "demo", "--headless", "--seconds", "3", "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    assert s["errors"] == []
    assert s["commands_sent"] > 1500  # ~2.8 s at 1 kHz after engaging
    assert s["commands_applied"] == s["commands_sent"] - s["lost"] - s["commands_rejected"]
    assert s["commands_rejected"] == 0 and s["lost"] == 0
    assert s["freezes"] == []
    assert s["rtt_us"]["p50"] > 0


def test_killing_the_console_freezes_the_bedside(session):
    session.start_bedside()
    session.start_console()
    session.wait_engaged()
    tap = TelemetryTap("127.0.0.1", session.ports[1], session)
    try:
        deadline = time.monotonic() + 10
        while tap.latest().arms[0].mode is not ArmMode.FOLLOWING:
            assert time.monotonic() < deadline, session.diagnostics()
        time.sleep(0.3)
        before = tap.latest().arms[0].measured_cp
        time.sleep(0.1)
        assert tap.latest().arms[0].measured_cp != before  # following: the tool moves
        t_kill = time.monotonic_ns()
        session.console.signal(signal.SIGKILL)
        freeze = session.wait_event(lambda r: r.get("type") == "freeze" and r["t_ns"] >= t_kill, 5.0)
        assert freeze is not None, session.diagnostics()
        assert freeze["reason"] == "LINK_LOST"
        time.sleep(0.1)
        t1 = tap.latest()
        assert t1.operating_state is OperatingState.PAUSED and t1.reason is Reason.LINK_LOST
        time.sleep(0.3)
        t2 = tap.latest()
        assert [a.measured_cp for a in t2.arms] == [a.measured_cp for a in t1.arms]  # held still
    finally:
        tap.close()
    counters = session.bedside_summary()["counters"]
    assert counters.get("backlog_executed", 0) == 0


def test_stopping_the_console_freezes_the_bedside_and_nothing_queued_runs(session):
    session.start_bedside()
    session.start_console()
    session.wait_engaged()
    time.sleep(0.3)
    session.console.signal(signal.SIGSTOP)
    freeze = session.wait_event(lambda r: r.get("type") == "freeze", 5.0)
    assert freeze is not None, session.diagnostics()
    time.sleep(1.0)
    session.console.signal(signal.SIGCONT)
    time.sleep(0.8)
    con = session.console_summary()
    bed = session.bedside_summary()
    assert bed["counters"].get("backlog_executed", 0) == 0
    assert len(bed["freezes"]) == 1  # it never resumed: no re-engage was pressed
    names = [(e["source"], e["name"]) for e in con["events"]]
    assert ("link", "LOST") in names, names  # the console noticed its own stall, not just the bedside


def test_killing_the_bedside_shows_link_lost_on_the_console(session):
    session.start_bedside()
    session.start_console()
    session.wait_engaged()
    time.sleep(0.3)
    session.bedside.signal(signal.SIGKILL)
    time.sleep(0.5)
    con = session.console_summary()
    lost = [e for e in con["events"] if e["source"] == "link" and e["name"] == "LOST"]
    assert lost and lost[0]["reason"] == "LINK_LOST", con["events"]
    assert con["link"] == "LOST"


def test_bad_configuration_is_refused_before_anything_starts():
    out = subprocess.run([sys.executable, "-m", "teleop.cli", "bedside", "--set", "bedside.watchdog_ms=0"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "bedside.watchdog_ms" in out.stderr and "minimum" in out.stderr
    out = subprocess.run([sys.executable, "-m", "teleop.cli", "console", "--set", "console.nonsense=1"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "console.nonsense" in out.stderr


def test_a_killed_bedside_takes_its_video_sender_and_recorder_with_it(tmp_path):
    """An orphaned video sender would go on streaming live-looking pictures from a bedside nobody controls, and
    hold its port against a restarted bedside; both children die with their parent (PR_SET_PDEATHSIG)."""
    from faults import SMALL_VIDEO, pid_listening_on

    s = Session(tmp_path, extra=SMALL_VIDEO, video=True)
    try:
        bed = s.start_bedside()
        fields = dict(f.split("=", 1) for f in bed.ready.split()[1:] if "=" in f)
        children = [pid_listening_on(s.ports[2]), int(fields["recorder_pid"])]
        assert bed.pid not in children and all(children), (bed.ready, children)
        bed.signal(signal.SIGKILL)
        deadline = time.monotonic() + 20
        alive = children
        while alive and time.monotonic() < deadline:
            time.sleep(0.1)
            alive = [p for p in children if _running(p)]
        assert not alive, f"children of the killed bedside still running: {alive}"
    finally:
        s.close()


def _running(pid: int) -> bool:
    """Alive and not a zombie (a reaped-later child of a dead parent counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
