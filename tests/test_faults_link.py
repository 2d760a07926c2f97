"""Link faults through a real `teleop linkemu` (user space: this kernel has no netem) and a real cable cut
in a network namespace (root only). Each test checks the system's reaction against what the emulator
reports it did: the bedside froze inside the documented bound after the outage began, the backlog the
outage delivered was refused, the console raised LINK_LOST, and nothing resumed until the surgeon engaged.
"""

from __future__ import annotations

import time

import pytest
from faults import LOAD_MARGIN_MS, Rig, report

from rehearsal.netns import NetnsHost, netns_available

pytestmark = pytest.mark.fault


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path, link=["--scenario", "lan"])
    yield r
    r.close()


def _wait_link_up(rig: Rig, after_ns: int) -> None:
    ok = rig.window.wait(lambda w: (w.state or {}).get("link") == "UP" and w.state["rx_ns"] > after_ns, 15)
    assert ok, rig.window.state


def test_stall_then_backlog_freezes_and_the_delivered_backlog_never_runs(rig):
    rig.start()
    rig.engage()
    time.sleep(0.5)
    # 0.4 s: shorter than the ZMTP heartbeat timeout (600 ms), so both ends keep the connection and TCP
    # delivers everything at once when it ends (longer, the peers drop the connection: see the blackhole)
    w = rig.linkemu.command("stall 0.4")
    f = rig.freeze_after(w["start_ns"])
    assert f["reason"] == "LINK_LOST"
    bound = rig.watchdog_ms + LOAD_MARGIN_MS
    assert f["latency_ms"] <= bound and (f["t_ns"] - w["start_ns"]) / 1e6 <= bound, f
    held = rig.held_event("LINK_LOST", w["start_ns"])
    _wait_link_up(rig, w["end_ns"])
    rig.assert_stays_held(1.0, f["t_ns"])
    press = rig.engage()
    step = rig.assert_no_jump(press)
    _, bed = rig.finish()
    c = bed["counters"]
    assert c.get("backlog_received", 0) > 0, c  # the stall did deliver a backlog …
    assert c.get("backlog_executed", 0) == 0, c  # … and none of it ran
    end = next(e for e in rig.link_report["events"] if e["event"] == "outage_end")
    assert end["mode"] == "stall" and end["chunks_held_then_delivered"] > 0, end
    report("stall 0.4 s, then backlog", freeze_ms=round(f["latency_ms"], 1),
           freeze_after_stall_start_ms=round((f["t_ns"] - w["start_ns"]) / 1e6, 1),
           console_alarm=held["name"] + " LINK_LOST", backlog_received=c["backlog_received"], backlog_executed=0,
           chunks_held_then_delivered=end["chunks_held_then_delivered"], reengage_step_mm=round(step, 3))


def test_flapping_link_freezes_once_and_never_resumes_by_itself(rig):
    rig.start()
    rig.engage()
    time.sleep(0.5)
    w = rig.linkemu.command("flap 0.2 0.3 6")  # 0.2 s down, 0.3 s up, six times
    f = rig.freeze_after(w["start_ns"])
    assert f["reason"] == "LINK_LOST"
    assert f["latency_ms"] <= rig.watchdog_ms + LOAD_MARGIN_MS, f
    held = rig.held_event("LINK_LOST", w["start_ns"])
    # the state stream (30 Hz) may lag the event that announced the hold
    assert rig.window.wait(lambda win: "FOLLOWING" not in win.arm_states().values(), 2), rig.window.arm_states()
    while time.monotonic_ns() < w["end_ns"]:  # nobody engages while it flaps: nothing may move
        assert "FOLLOWING" not in rig.window.arm_states().values()
        time.sleep(0.05)
    _wait_link_up(rig, w["end_ns"])
    rig.assert_stays_held(1.0, f["t_ns"])
    press = rig.engage(timeout=20)  # may be refused until the latency policy has settled (2 s)
    step = rig.assert_no_jump(press)
    con, bed = rig.finish()
    c = bed["counters"]
    assert c.get("backlog_executed", 0) == 0, c
    assert [x["reason"] for x in bed["freezes"] if x["reason"] != "CONSOLE_REQUEST"] == ["LINK_LOST"]
    ends = [e for e in rig.link_report["events"] if e["event"] == "outage_end"]
    assert len(ends) == 6
    refused = [e for e in con["events"] if e["name"] == "engage refused"]
    report("flapping 0.2 s down / 0.3 s up ×6", freeze_ms=round(f["latency_ms"], 1), bedside_freezes=1,
           console_alarm=held["name"] + " LINK_LOST", link_lost_events=sum(
               1 for e in con["events"] if e["source"] == "link" and e["name"] == "LOST"),
           engage_refusals=len(refused), refusal_reasons=sorted({e["reason"] for e in refused}),
           backlog_received=c.get("backlog_received", 0), backlog_executed=0, reengage_step_mm=round(step, 3))


ok, why = netns_available()


@pytest.mark.netns
@pytest.mark.skipif(not ok, reason=why)
def test_cable_cut_in_a_namespace_freezes_and_recovery_waits_for_the_surgeon(tmp_path):
    with NetnsHost(prefix="tlf", subnet="10.231.81") as ns:
        rig = Rig(tmp_path, bed_prefix=ns.exec_prefix(), bed_host=ns.bed_ip)
        try:
            rig.start()
            rig.engage()
            time.sleep(0.5)
            t_cut = time.monotonic_ns()
            ns.cut()
            t_down = time.monotonic_ns()  # the link is down by now; `ip` itself may take tens of ms to start
            f = rig.freeze_after(t_cut)
            assert f["reason"] == "LINK_LOST"
            bound = rig.watchdog_ms + LOAD_MARGIN_MS
            assert f["latency_ms"] <= bound and (f["t_ns"] - t_down) / 1e6 <= bound, f
            held = rig.held_event("LINK_LOST", t_cut)
            time.sleep(0.5)
            t_restore = time.monotonic_ns()
            ns.restore()  # TCP retransmits what it queued during the cut
            _wait_link_up(rig, t_restore)
            rig.assert_stays_held(1.0, f["t_ns"])
            press = rig.engage()
            step = rig.assert_no_jump(press)
            _, bed = rig.finish()
            c = bed["counters"]
            assert c.get("backlog_executed", 0) == 0, c
            report("cable cut (netns) 0.5 s", freeze_ms=round(f["latency_ms"], 1),
                   console_alarm=held["name"] + " LINK_LOST", backlog_received=c.get("backlog_received", 0),
                   backlog_executed=0, reengage_step_mm=round(step, 3))
        finally:
            rig.close()
