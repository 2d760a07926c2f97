"""Teleoperation safety across real processes: e-stop at either end, and a rising RTT (issue #3)."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from crossproc import Session

from base.config import load_config
from base.runtime import StopFlag
from console.engine import LinkState
from console.master import ScriptedMaster, pulse
from console.runner import ConsoleRunner
from rehearsal.linkemu import LinkProfile, LinkProxy

pytestmark = pytest.mark.fault


class InProcessConsole:
    """The real console runner (engine, controller, sockets) in a thread, with a scripted master."""

    def __init__(self, overrides: list[str], script=(), engage_at_s: float = 0.4) -> None:
        self.cfg = load_config(None, overrides)
        # The script's clock starts once the link is up: an engage pressed before that is refused, as it must
        # be, and in CI's full run the link once took longer than `engage_at_s` to come up.
        master = ScriptedMaster("circle", time.monotonic_ns() + 3600 * 10**9, engage_at_s=engage_at_s,
                                script=list(script))
        self.runner = ConsoleRunner(self.cfg, master=master)
        self.stop = StopFlag(install_signals=False)
        self.thread = threading.Thread(target=self.runner.run, args=(self.stop,), daemon=True)
        self.thread.start()
        end = time.monotonic() + 10
        while self.runner.engine.link is not LinkState.UP and time.monotonic() < end:
            time.sleep(0.005)
        master.start_ns = time.monotonic_ns()

    def events(self, source: str | None = None) -> list:
        return [e for e in list(self.runner.engine.events) if source is None or e.source == source]

    def close(self) -> dict:
        self.stop.set()
        self.thread.join(10)
        self.runner.finish()
        return self.runner.summary()


@pytest.fixture
def session(tmp_path):
    s = Session(tmp_path)
    s.start_bedside()
    yield s
    s.close()


def _freeze(session: Session) -> dict:
    rec = session.wait_event(lambda r: r.get("type") == "freeze", 5.0)
    assert rec is not None, session.diagnostics()
    return rec


def test_console_estop_holds_every_arm_within_a_control_period(session):
    con = InProcessConsole(session.con_sets, script=pulse("estop", 1.5, 0.3))
    try:
        session.wait_engaged()
        freeze = _freeze(session)
        assert freeze["reason"] == "ESTOP"
        pressed = [e for e in con.events("teleop") if "estop" in e.name.lower() or e.reason.name == "ESTOP"]
        assert pressed, [e.name for e in con.events()]
        latency_ms = (freeze["t_ns"] - pressed[0].t_ns) / 1e6
        # The e-stop travels as its own message: one control period, far inside the watchdog margin.
        assert latency_ms <= 1.0 + session_watchdog_ms(session), latency_ms
        time.sleep(0.5)
        assert con.runner.engine.bedside_estop  # latched at the bedside too
        assert not any(r.get("to") == "ENABLED" for r in session.events.new())  # nothing re-engaged
    finally:
        con.close()


def session_watchdog_ms(session: Session) -> float:
    return float(session.bedside.ready.split("watchdog_ms=")[1].split()[0])


def test_bedside_estop_holds_the_arms_and_the_console_follows(session):
    con = InProcessConsole(session.con_sets)
    try:
        session.wait_engaged()
        time.sleep(0.3)
        t0 = time.monotonic_ns()
        os.kill(session.bedside.pid, signal.SIGUSR1)  # the bedside team's e-stop button
        freeze = _freeze(session)
        assert freeze["reason"] == "ESTOP"
        assert (freeze["t_ns"] - t0) / 1e6 <= 1.0 + session_watchdog_ms(session)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            snap = con.runner.engine.controller.snapshot()
            if all(a["state"] != "FOLLOWING" for a in snap["arms"].values()):
                break
            time.sleep(0.02)
        snap = con.runner.engine.controller.snapshot()
        assert all(a["state"] != "FOLLOWING" for a in snap["arms"].values()), snap
    finally:
        con.close()
    bed = session.bedside_summary()
    assert bed["counters"].get("backlog_executed", 0) == 0


def test_rising_rtt_first_lowers_the_scale_then_holds(session):
    ctrl, telem, _ = session.ports
    ramp = LinkProfile(delay_ms=0.0, ramp_to_ms=160.0, ramp_s=8.0)  # one way: RTT 0 -> 320 ms
    p_ctrl = LinkProxy(0, ("127.0.0.1", ctrl), ramp, ramp)
    p_tele = LinkProxy(0, ("127.0.0.1", telem), ramp, ramp)
    overrides = [o for o in session.con_sets if not o.startswith(("link.control_port", "link.telemetry_port"))]
    overrides += [f"link.control_port={p_ctrl.port}", f"link.telemetry_port={p_tele.port}"]
    con = InProcessConsole(overrides)
    try:
        session.wait_engaged()
        deadline = time.monotonic() + 20
        held = None
        while time.monotonic() < deadline and held is None:
            held = next((e for e in con.events("teleop") if "HELD" in e.name and e.reason.name == "LATENCY"), None)
            time.sleep(0.05)
        assert held is not None, [f"{e.name} {e.reason.name}" for e in con.events()]
        warned = [e for e in con.events("teleop") if e.name.startswith("latency warn")]
        assert warned and warned[0].t_ns < held.t_ns  # the scale came down before following stopped
        assert "scale" in warned[0].text or "scale" in warned[0].name or warned[0].reason.name == "LATENCY"
        lat = con.runner.engine.controller.snapshot()["latency"]
        assert lat["rtt_ms"] is None or lat["rtt_ms"] > 100
    finally:
        con.close()
        p_ctrl.close()
        p_tele.close()
    bed = session.bedside_summary()
    # the console's policy acted first: the bedside never had to refuse a command as stale
    assert bed["counters"].get("rejected_rejected_stale", 0) == 0


def test_follows_over_a_london_gibraltar_link_without_freezing(session):
    """Regression: the first command of a session arrives a round trip after ENABLE (60 ms here)."""
    from rehearsal.linkemu import SCENARIOS

    ctrl, telem, _ = session.ports
    prof = SCENARIOS["london-gibraltar"]
    p_ctrl = LinkProxy(0, ("127.0.0.1", ctrl), prof, prof)
    p_tele = LinkProxy(0, ("127.0.0.1", telem), prof, prof)
    overrides = [o for o in session.con_sets if not o.startswith(("link.control_port", "link.telemetry_port"))]
    overrides += [f"link.control_port={p_ctrl.port}", f"link.telemetry_port={p_tele.port}"]
    con = InProcessConsole(overrides, engage_at_s=1.5)
    try:
        session.wait_engaged()
        deadline = time.monotonic() + 10
        while True:
            snap = con.runner.engine.controller.snapshot()
            if "FOLLOWING" in {a["state"] for a in snap["arms"].values()}:
                break
            assert time.monotonic() < deadline, (snap, [f"{e.name} {e.reason.name}" for e in con.events()])
            time.sleep(0.05)
        time.sleep(1.0)
        rtt = con.runner.engine.rtt_ms()
        assert rtt is not None and 50 < rtt < 250  # 2 × 27.5 ms one way, plus jitter and processing
    finally:
        summary = con.close()
        p_ctrl.close()
        p_tele.close()
    assert summary["commands_rejected"] == 0
    bed = session.bedside_summary()
    assert [f for f in bed["freezes"] if f["reason"] != "CONSOLE_REQUEST"] == []
