"""Masters and force feedback across real processes (issue #17): a bridge (the simulated haptic device,
rehearsal/haptic.py) drives a headless console, presses the tool into the simulated tissue and feels it; a
stalled force stream fades; a second bridge never drives; the SpaceMouse at the hidapi boundary (a fake `hid`
module in the console process) drives the arms and its unplug holds them with a FAULT that says what to do."""

from __future__ import annotations

import bisect
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from crossproc import Session, TelemetryTap

from base.config import load_config
from base.procs import free_ports, start_role
from console.force import ForceSettings
from console.master import MasterButtons, MasterHand
from console.masters.network import encode_master_message
from transport.zmqlink import master_publisher

pytestmark = pytest.mark.fault

ROOT = Path(__file__).resolve().parents[1]
FAKE_HID = Path(__file__).resolve().parent / "fakehid"
GAIN, MAX_N = 0.2, 0.2
HAPTIC = ["bedside.telemetry_hz=1000", "teleop.motion_scale=0.5", f"console.force_gain={GAIN}",
          f"console.force_max_n={MAX_N}", "console.force_smoothing_hz=0", "console.master_timeout_ms=1000"]
"""The simulated device is a Python process on a shared (2-core, often loaded) machine: 1 s of silence before a
FAULT, so a starved simulation does not end the press these tests are about."""


def _bridge_sets() -> tuple[list[str], str, str]:
    b, f = free_ports(2)
    bridge, force = f"tcp://127.0.0.1:{b}", f"tcp://127.0.0.1:{f}"
    return ["console.master=bridge", f"console.bridge_endpoint={bridge}",
            f"console.bridge_force_endpoint={force}"], bridge, force


def start_device(tmp: Path, bridge: str, force: str, *args: str):
    report = tmp / "device.json"
    cmd = [sys.executable, "-m", "rehearsal.haptic", "--bridge", bridge, "--force", force, "--report", str(report),
           *args]
    return start_role("device", [], command=cmd), report


def _arm(summary_events: list[dict], name: str) -> list[str]:
    return [e["name"] for e in summary_events if str(e.get("name", "")).startswith(name)]


@pytest.fixture
def haptic(tmp_path, request):
    extra, bridge, force = _bridge_sets()
    s = Session(tmp_path, extra=HAPTIC, con_extra=extra + list(getattr(request, "param", [])))
    try:
        s.start_bedside()
        s.start_console()
        yield s, bridge, force
    finally:
        s.close()


@pytest.mark.parametrize("haptic", [["console.force_passivity=false"]], indirect=True)
def test_a_tip_pressed_into_tissue_pushes_the_device_back_scaled_and_saturated(haptic, tmp_path):
    """Stage 1: the tool ~2 mm into the tissue: the device feels GAIN x measured_cf, pointing out of the tissue.
    Stage 2: deeper: the force saturates at console.force_max_n. The bridge drives the headless console (no
    window, no heartbeats). Each steady bedside telemetry is matched with the force the device received for it
    (its measured time), so nothing here depends on how fast the machine is. Passivity off here: its damper
    would change the force whenever the hand moves (its own tests: tests/test_force.py, the bench)."""
    s, bridge, force = haptic
    # hand travel x motion scale 0.5 - 15 mm standoff: 34 mm -> ~2 mm into the tissue, 44 mm -> ~7 mm.
    dev, report = start_device(tmp_path, bridge, force, "--start-s", "3", "--press-mm", "34", "--ramp-s", "1.0",
                               "--press2-at-s", "6.5", "--press2-mm", "44")
    log_path = tmp_path / "telemetry.json"
    keys = s.key_overrides[0].split("=", 1)[1]
    tap = start_role("telemetry-log", [], command=[sys.executable, str(Path(__file__).parent / "telemetry_log.py"),
                                                   "127.0.0.1", str(s.ports[1]), keys, "12", str(log_path)])
    try:
        s.wait_engaged()
        tap.proc.wait(30)
        dev.stop()
    finally:
        tap.stop()
    logged = json.loads(log_path.read_text())
    assert all(fx == 0.0 and fy == 0.0 for _, fx, fy, _ in logged)  # the tissue pushes along its normal only
    seen = [(int(t), fz) for t, _, _, fz in logged]
    r = json.loads(report.read_text())
    assert s.console is not None
    s.console.stop(timeout=30)  # a loaded machine may need more than 5 s to write the summary
    con = s.console_summary()
    assert con["master"]["name"].startswith("network:"), con["master"]
    assert con["commands_applied"] > 1000, s.diagnostics()
    meas = sorted((f[4], f) for f in r["forces"] if f[5] and f[4])
    keys = [m for m, _ in meas]
    matched = []
    for (_, a), (ts, cf), (_, b) in zip(seen, seen[1:], seen[2:], strict=False):
        if cf < 0.1 or abs(a - cf) > 0.05 * cf or abs(b - cf) > 0.05 * cf:
            continue  # only a steady press: a neighbouring force sample is then the same force
        j = bisect.bisect_left(keys, ts)
        near = min((k for k in (j - 1, j) if 0 <= k < len(keys)), key=lambda k: abs(keys[k] - ts), default=None)
        if near is not None and abs(keys[near] - ts) < 2_000_000:  # the console's clock-offset estimate
            f = meas[near][1]
            matched.append((f[3], cf, f[1:4]))
    pressed = matched
    assert pressed, (seen[-5:], s.diagnostics())
    below = [m for m in pressed if GAIN * m[1] < 0.9 * MAX_N]
    above = [m for m in pressed if GAIN * m[1] > 1.1 * MAX_N]
    holds = [f"{e['name']} ({e['reason']})" for e in con["events"] if str(e.get("name", "")).endswith("->HELD")]
    assert below and above, (len(below), len(above), [round(cf, 3) for _, cf in seen[::10]], holds)
    for fz, _cf, f in pressed:
        # the camera at home looks straight down: the patient's +z (the tissue pushing the tip up) is the master's
        # +z (toward the surgeon): opposite to the press (0, 0, -1), nothing sideways
        assert f[0] == 0.0 and f[1] == 0.0 and fz > 0, f
    for fz, cf, _ in below:
        assert fz == pytest.approx(GAIN * cf, rel=0.05), (fz, cf)  # scaled (a neighbouring sample: 5 %)
    for fz, _, _ in above:
        assert fz == pytest.approx(MAX_N, rel=1e-9)  # saturated
    assert r["force_rate_hz"] is not None and r["force_rate_hz"] > 200, r["force_rate_hz"]  # the bench: >= 500


def test_a_stalled_force_stream_fades_to_zero_within_its_bound(haptic, tmp_path):
    """The bedside stops (SIGSTOP): no telemetry, no new force. On the console's own clock (the stamps in every
    force message), the force fades from `force_stale_ms` on and is exactly zero `stale + fade` after its last
    sample arrived; it never holds at its last value."""
    s, bridge, force = haptic
    dev, report = start_device(tmp_path, bridge, force, "--start-s", "3", "--press-mm", "38", "--ramp-s", "1.0")
    try:
        s.wait_engaged()
        time.sleep(5.0)
        assert s.bedside is not None
        s.bedside.signal(signal.SIGSTOP)  # telemetry stops: the force stream stalls
        time.sleep(0.5)
        s.bedside.signal(signal.SIGCONT)
        time.sleep(0.3)
        dev.stop()
    finally:
        if s.bedside is not None:
            s.bedside.signal(signal.SIGCONT)
    r = json.loads(report.read_text())
    st = ForceSettings.from_config(load_config(None, HAPTIC).console)
    forces = r["forces"]  # (t_s, fx, fy, fz, measured_ns, fresh, send_ns, rx_ns)
    pressed = [f for f in forces if f[5] and f[3] > 0.05]
    assert pressed, "never felt the tissue"
    ages = [(f[6] - f[7], f[3]) for f in forces if f[7]]
    stale = [(age, fz) for age, fz in ages if age > st.stale_ns]
    assert stale and max(age for age, _ in stale) > st.zero_after_ns + 100_000_000  # the stall was seen
    assert all(fz == 0.0 for age, fz in stale if age >= st.zero_after_ns)  # zero from the bound on
    fading = [fz for age, fz in stale if age < st.zero_after_ns - 5_000_000]
    assert fading and 0.0 < min(fading) < 0.5 * max(fading) <= 0.5 * MAX_N, "faded, neither held nor cut"
    assert all(not f[5] for f in forces if f[6] - f[7] > st.stale_ns and f[7])  # flagged not fresh


def test_a_second_bridge_never_drives_and_the_window_port_is_not_the_bridge_s(haptic, tmp_path):
    """Two masters at once: a second source on the bridge port is refused (counted), so the arms follow only the
    first; the window's keyboard port (console.master_port) is not read when console.master = bridge."""
    import zmq

    s, bridge, force = haptic
    dev, _ = start_device(tmp_path, bridge, force, "--start-s", "30")
    ctx = zmq.Context.instance()
    intruder = master_publisher(ctx, bridge)
    try:
        s.wait_engaged()
        far = MasterHand(__import__("base.geometry", fromlist=["Pose"]).Pose((0.3, 0.3, 0.3)), 0.0)
        for i in range(300):
            intruder.send(encode_master_message(10**6 + i, time.monotonic_ns(), (far, far),
                                                MasterButtons(operator_present=True), source=424242))
            time.sleep(0.002)
        dev.stop()
    finally:
        intruder.close(0)
    assert s.console is not None
    s.console.stop(timeout=30)  # a loaded machine may need more than 5 s to write the summary
    con = s.console_summary()
    assert con["master"]["conflicts"] > 0, con["master"]
    assert not [e for e in con["events"] if e.get("reason") == "LIMIT"], "the intruder moved the arms"
    assert con["commands_rejected"] == 0


def test_spacemouse_drives_the_arms_and_its_unplug_holds_them_with_guidance(tmp_path):
    """console.master = spacemouse with a fake `hid` module (tests/fakehid/hid.py) in the console process: the
    deadman button and engage, a push of the cap that moves PSM1, then the device vanishes (read error)."""
    script = tmp_path / "hid-script.json"
    script.write_text(json.dumps({"events": [
        {"t": 0.3, "report": [3, 1]},               # deadman held
        {"t": 1.0, "report": [3, 3]}, {"t": 1.2, "report": [3, 1]},  # engage pressed and released
        {"t": 2.0, "report": [3, 3]}, {"t": 2.2, "report": [3, 1]},  # again (if the link was not up at 1 s)
        {"t": 2.5, "report_every": [1, 200, 0, 0, 0, 0, 0], "until": 3.5},  # push right for 1 s
        {"t": 3.6, "report": [1, 0, 0, 0, 0, 0, 0]},
        {"t": 4.5, "unplug": True},
    ]}))
    env = {"PYTHONPATH": f"{FAKE_HID}{os.pathsep}{ROOT}", "FAKE_HID_SCRIPT": str(script)}
    s = Session(tmp_path, con_extra=["console.master=spacemouse"])
    try:
        s.start_bedside()
        s.console = start_role("console", ["console", "--headless", "--summary", str(s.con_summary),
                                           *[a for o in s.con_sets for a in ("--set", o)]], env=env)
        tap = TelemetryTap("127.0.0.1", s.ports[1], s)
    except BaseException:
        s.close()
        raise
    try:
        s.wait_engaged()
        x0 = tap.latest().arms[0].measured_cp.position[0]
        time.sleep(4.0)
        x1 = tap.latest().arms[0].measured_cp.position[0]
        s.console.stop(timeout=30)  # a loaded machine may need more than 5 s to write the summary
        con = s.console_summary()
    finally:
        tap.close()
        s.close()
    assert con["master"]["name"] == "spacemouse"
    assert x1 - x0 > 0.002, (x0, x1)  # pushed right: the tool moved right (camera at home looks down)
    held = [e for e in con["events"] if str(e.get("name", "")).endswith("->HELD") and e.get("reason") == "FAULT"]
    assert held and "unplugged" in held[0]["text"] and "plug it back in" in held[0]["text"], con["events"][-10:]


def test_switching_from_the_scripted_master_to_a_bridge_holds_and_the_bridge_re_engages(tmp_path):
    """The real runner (in a thread) against a real bedside: `request_master("bridge")` while following holds
    every arm with a logged `master switched` event; the simulated device's engage then re-aligns and follows."""
    import threading

    from base.runtime import StopFlag
    from console.engine import LinkState
    from console.master import ScriptedMaster
    from console.runner import ConsoleRunner

    extra, bridge, force = _bridge_sets()
    s = Session(tmp_path, extra=HAPTIC)
    try:
        s.start_bedside()
        cfg = load_config(None, [*s.con_sets, *[e for e in extra if not e.startswith("console.master=")]])
        master = ScriptedMaster("still", time.monotonic_ns() + 3600 * 10**9, engage_at_s=0.4)
        runner = ConsoleRunner(cfg, master=master)
    except BaseException:
        s.close()
        raise
    stop = StopFlag(install_signals=False)
    thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    thread.start()
    dev = None
    try:
        end = time.monotonic() + 10
        while runner.engine.link is not LinkState.UP and time.monotonic() < end:
            time.sleep(0.005)
        master.start_ns = time.monotonic_ns()
        s.wait_engaged()
        ctl = runner.engine.controller
        end = time.monotonic() + 10
        while ctl.snapshot()["arms"]["PSM1"]["state"] != "FOLLOWING" and time.monotonic() < end:
            time.sleep(0.01)
        runner.request_master("bridge")
        end = time.monotonic() + 5
        while not [e for e in list(runner.engine.events) if e.source == "master"] and time.monotonic() < end:
            time.sleep(0.01)
        switched = [e for e in list(runner.engine.events) if e.source == "master"]
        assert switched and switched[0].name == "switched", switched
        assert ctl.snapshot()["arms"]["PSM1"]["state"] == "HELD"
        assert runner.master.name.startswith("network:")
        dev, _ = start_device(tmp_path, bridge, force, "--start-s", "30", "--engage-until-s", "30")
        end = time.monotonic() + 15
        while ctl.snapshot()["arms"]["PSM1"]["state"] != "FOLLOWING" and time.monotonic() < end:
            time.sleep(0.01)
        assert ctl.snapshot()["arms"]["PSM1"]["state"] == "FOLLOWING", [e.name for e in runner.engine.events[-10:]]
    finally:
        if dev is not None:
            dev.stop()
        stop.set()
        thread.join(10)
        runner.finish()
        s.close()
