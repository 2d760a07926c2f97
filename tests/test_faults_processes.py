"""Process faults, each against real processes, each asserting the safety outcome (docs/reliability.md):
arms held within the documented time, the right alarm and recorded event, no backlog executed, nothing
resumes until the surgeon engages again, and no jump when they do.

* console SIGKILL, console SIGSTOP/SIGCONT, bedside SIGKILL (then a new bedside), video sender SIGSTOP/SIGCONT.
"""

from __future__ import annotations

import signal
import time

import pytest
from faults import LOAD_MARGIN_MS, Rig, pid_listening_on, report

from base.config import load_config

pytestmark = pytest.mark.fault


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path)
    yield r
    r.close()


def _bedside_freeze(rig: Rig, t_fault: int) -> dict:
    """The bedside's own record: freeze reason LINK_LOST, measured from the last valid command."""
    f = rig.freeze_after(t_fault)
    assert f["reason"] == "LINK_LOST", f
    bound = rig.watchdog_ms + LOAD_MARGIN_MS
    assert f["latency_ms"] <= bound, f
    assert (f["t_ns"] - t_fault) / 1e6 <= bound, f  # the last valid command came before the fault
    return f


def test_console_sigkill_freezes_the_bedside_and_only_a_new_engage_resumes(rig):
    rig.start()
    rig.engage()
    time.sleep(0.5)
    t_kill = time.monotonic_ns()
    rig.s.console.signal(signal.SIGKILL)
    f = _bedside_freeze(rig, t_kill)
    rig.console_lost()
    rig.attach(None)  # the surgeon restarts the console: it connects, but nothing moves by itself
    rig.window.wait(lambda w: (w.state or {}).get("link") == "UP", 10)
    rig.assert_stays_held(1.0, f["t_ns"])
    press = rig.engage()
    enabled = rig.enabled_after(press, 5)
    assert enabled is not None and enabled["epoch"] != 0
    step = rig.assert_no_jump(press)
    _, bed = rig.finish()
    assert bed["counters"].get("backlog_executed", 0) == 0
    assert [x["reason"] for x in bed["freezes"] if x["reason"] != "CONSOLE_REQUEST"] == ["LINK_LOST"]
    report("console SIGKILL", freeze_ms=round(f["latency_ms"], 1), bedside_event=f"freeze {f['reason']}",
           backlog_executed=0, reengage_step_mm=round(step, 3), recovered_after="new console + engage")


def test_console_sigstop_freezes_and_the_backlog_it_sends_on_sigcont_never_runs(rig):
    rig.start()
    rig.engage()
    time.sleep(0.5)
    t_stop = time.monotonic_ns()
    rig.s.console.signal(signal.SIGSTOP)
    f = _bedside_freeze(rig, t_stop)
    time.sleep(1.0)
    t_cont = time.monotonic_ns()
    rig.s.console.signal(signal.SIGCONT)
    held = rig.held_event("LINK_LOST", t_stop)  # the console's own watchdog, checked before its backlog
    assert any(e["name"] == "LOST" for e in rig.console_events("link", t_stop))
    rig.window.wait(lambda w: (w.state or {}).get("link") == "UP", 10)
    rig.assert_stays_held(1.0, f["t_ns"])
    press = rig.engage()
    assert rig.enabled_after(press, 5) is not None
    step = rig.assert_no_jump(press)
    _, bed = rig.finish()
    c = bed["counters"]
    assert c.get("backlog_executed", 0) == 0
    assert [x["reason"] for x in bed["freezes"] if x["reason"] != "CONSOLE_REQUEST"] == ["LINK_LOST"]
    report("console SIGSTOP 1 s", freeze_ms=round(f["latency_ms"], 1), console_alarm=held["name"] + " LINK_LOST",
           console_alarm_after_cont_ms=round((held["t_ns"] - t_cont) / 1e6, 1),
           backlog_received=c.get("backlog_received", 0), received_while_frozen=c.get("received_while_frozen", 0),
           backlog_executed=0, reengage_step_mm=round(step, 3))


def test_bedside_sigkill_shows_link_lost_and_a_new_bedside_waits_for_the_surgeon(rig):
    rig.start()
    rig.engage()
    time.sleep(0.5)
    timeout_ms = load_config(None, rig.s.con_sets).link.console_timeout_ms
    t_kill = time.monotonic_ns()
    rig.s.bedside.signal(signal.SIGKILL)
    held = rig.held_event("LINK_LOST", t_kill)
    lost = next(e for e in rig.console_events("link", t_kill) if e["name"] == "LOST")
    lost_ms = (lost["t_ns"] - t_kill) / 1e6
    assert lost_ms <= timeout_ms + LOAD_MARGIN_MS, lost
    rig_events = rig.console_events("teleop", t_kill)
    rig.s.bedside.stop()
    rig.s.start_bedside()  # same ports: the console reconnects by itself …
    t_new = time.monotonic_ns()
    assert rig.window.wait(lambda w: (w.state or {}).get("link") == "UP", 15), rig.window.state
    rig.assert_stays_held(1.0, t_new)  # … but the arms stay held
    press = rig.engage()
    assert rig.enabled_after(press, 5) is not None
    step = rig.assert_no_jump(press)
    _, bed = rig.finish()
    assert bed["counters"].get("backlog_executed", 0) == 0
    first = next(e for e in rig_events if e["name"].endswith("->HELD"))
    report("bedside SIGKILL", console_lost_ms=round(lost_ms, 1), console_alarm=held["name"] + " LINK_LOST",
           first_hold=f"{first['name']} {first['reason']}: {first['text']}",
           reengage_step_mm=round(step, 3), recovered_after="bedside restart + engage")


def test_stopped_video_sender_holds_the_arms_until_the_surgeon_reengages(tmp_path):
    rig = Rig(tmp_path, video=True)
    try:
        rig.start()
        rig.engage()
        time.sleep(0.5)
        stale_ms = load_config(None, rig.s.con_sets).video.stale_ms
        sender = pid_listening_on(rig.s.ports[2])
        t_stop = time.monotonic_ns()
        import os

        os.kill(sender, signal.SIGSTOP)
        try:
            held = rig.held_event("VIDEO_STALE", t_stop)
            hold_ms = (held["t_ns"] - t_stop) / 1e6
            # 200 ms after the last picture; one picture (30 fps) may still be in flight at the stop
            assert hold_ms <= stale_ms + 34 + LOAD_MARGIN_MS, hold_ms
            time.sleep(0.3)
            moved = rig.telemetry.max_setpoint_step_mm(held["t_ns"] + 20_000_000)
            assert moved == 0.0, moved  # held: the bedside's setpoints stand still
        finally:
            os.kill(sender, signal.SIGCONT)
        assert rig.window.wait(lambda w: (w.state or {}).get("video", {}).get("ok"), 10), rig.window.state
        rig.assert_stays_held(1.0, t_stop)  # the picture is back; the hold stays latched
        press = rig.engage()
        step = rig.assert_no_jump(press)
        freezes = [r for r in rig.s.seen + rig.s.events.new() if r.get("type") == "freeze" and r["t_ns"] >= t_stop]
        assert freezes == []  # the console held the arms; the session itself never broke
        _, bed = rig.finish()
        assert bed["counters"].get("backlog_executed", 0) == 0
        report("video sender SIGSTOP", hold_ms=round(hold_ms, 1), console_alarm=held["name"] + " VIDEO_STALE",
               text=held["text"], bedside_freeze=None, reengage_step_mm=round(step, 3))
    finally:
        rig.close()
