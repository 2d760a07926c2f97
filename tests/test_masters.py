"""Master devices: scripted inputs, keyboard+mouse, SpaceMouse (with a fake HID device), network master."""

from __future__ import annotations

import struct
import sys
import time
import types

import pytest
import zmq
from test_teleop_world import World

from base.geometry import IDENTITY_Q, Pose, q_angle, q_from_axis_angle
from console.master import MasterButtons, MasterError, MasterHand, ScriptedMaster, ScriptEvent, pulse
from console.masters.keyboard import KeyboardMouseMaster
from console.masters.network import (
    FORCE_SIZE,
    SIZE,
    ForceMessage,
    MessageError,
    NetworkMaster,
    NetworkMasterState,
    decode_force_message,
    decode_master_message,
    encode_force_message,
    encode_master_message,
)
from console.masters.spacemouse import SpaceMouseMaster, open_device, parse_report

MS = 1_000_000


# ---------------------------------------------------------------------- scripted


def test_scripted_master_keeps_its_old_arguments() -> None:
    m = ScriptedMaster("circle", 0, radius_m=0.02, period_s=2.0, engage_at_s=0.1, reengage_every_s=None)
    s = m.read(120 * MS)
    assert s.buttons.engage and s.buttons.operator_present and s.valid
    assert not m.read(300 * MS).buttons.engage


def test_scripted_inputs_change_levels_at_their_times() -> None:
    m = ScriptedMaster("still", engage_at_s=None, script=[
        *pulse("clutch", 1.0, 0.5), ScriptEvent(2.0, "valid", False), ScriptEvent(2.5, "operator_present", False),
        *pulse("engage", 3.0), ScriptEvent(3.5, "camera", True)])
    at = {t: m.read(int(t * 1e9)) for t in (0.5, 1.2, 1.6, 2.1, 2.6, 3.01, 3.6)}
    assert not at[0.5].buttons.clutch and at[1.2].buttons.clutch and not at[1.6].buttons.clutch
    assert at[1.6].valid and not at[2.1].valid
    assert at[2.1].buttons.operator_present and not at[2.6].buttons.operator_present
    assert at[3.01].buttons.engage and not at[3.6].buttons.engage and at[3.6].buttons.camera
    assert m.read(int(0.5e9)).valid  # levels are recomputed from the script, never mutated


def test_scripted_unknown_input_is_refused() -> None:
    with pytest.raises(MasterError, match="unknown scripted input"):
        ScriptedMaster(script=[ScriptEvent(1.0, "turbo", True)])


# ---------------------------------------------------------------------- keyboard and mouse


def test_keyboard_held_keys_move_the_active_hand_over_injected_time() -> None:
    kb = KeyboardMouseMaster(speed_mm_s=50.0)
    kb.key_down("Right")
    kb.read(0)
    kb.read(100 * MS)
    s = kb.read(200 * MS)
    assert s.hands[0].pose.position[0] == pytest.approx(0.08 + 0.01)
    kb.key_up("right")
    kb.key_down("tab")  # now the left hand
    kb.key_down("pageup")
    s = kb.read(300 * MS)
    assert s.hands[1].pose.position[2] == pytest.approx(-0.005)
    assert s.hands[0].pose.position[0] == pytest.approx(0.09)
    s = kb.read(10_000 * MS)  # a stalled GUI: at most 0.1 s of motion
    assert s.hands[1].pose.position[2] == pytest.approx(-0.01)


def test_keyboard_mouse_drag_wheel_rotation_and_gripper() -> None:
    kb = KeyboardMouseMaster(mm_per_px=0.5, deg_per_px=0.5, wheel_mm=2.0)
    kb.mouse_drag(10, -20)  # right and up on screen
    kb.wheel(1)
    p = kb.read(0).hands[0].pose.position
    assert p == pytest.approx((0.085, 0.01, -0.002))
    kb.mouse_drag(20, 0, left=False, right=True)
    assert q_angle(kb.read(0).hands[0].pose.orientation, IDENTITY_Q) == pytest.approx(0.1745, abs=1e-3)
    kb.key_down("x")
    for t in range(4):
        g = kb.read(t * 100 * MS).hands[0].gripper
    assert g == pytest.approx(0.8)


def test_keyboard_buttons_presence_and_focus_loss() -> None:
    kb = KeyboardMouseMaster()
    for k in ("space", "c", "v", "Return", "escape", "backspace"):
        kb.key_down(k)
    b = kb.read(0).buttons
    assert b == MasterButtons(operator_present=True, clutch=True, camera=True, engage=True, disengage=True,
                              estop=True)
    kb.release_all()
    assert kb.read(0).buttons == MasterButtons()
    sticky = KeyboardMouseMaster(sticky_presence=True)
    sticky.key_down("space")
    sticky.key_up("space")
    assert sticky.read(0).buttons.operator_present
    sticky.key_down("space")
    assert not sticky.read(0).buttons.operator_present


def test_keyboard_drives_the_controller_end_to_end() -> None:
    w = World()
    kb = KeyboardMouseMaster(speed_mm_s=50.0)
    cam = q_from_axis_angle((0, 0, 1), 0.0)
    kb.snap(0, cam)

    def tick(n: int = 1) -> None:
        for _ in range(n):
            w.apply(w.ctl.step(w.now, kb.read(w.now), w.view()))
            w.now += MS

    kb.key_down("space")
    tick(5)
    kb.key_down("return")
    tick()
    kb.key_up("return")
    tick(3)
    assert w.state("PSM1") == "FOLLOWING"
    kb.key_down("right")
    tick(200)  # 10 mm of hand motion: 2 mm at the tool
    kb.key_up("right")
    tick(20)
    assert w.tools[0].position[0] == pytest.approx(0.08 + 0.002, abs=1e-4)
    kb.release_all()
    tick(2)
    assert w.state("PSM1") == "HELD"


# ---------------------------------------------------------------------- SpaceMouse


class FakeHid:
    def __init__(self, reports: list[bytes]) -> None:
        self.reports = list(reports)
        self.closed = False
        self.fail = False

    def read(self, n: int) -> list[int]:
        if self.fail:
            raise OSError("device unplugged")
        return list(self.reports.pop(0)) if self.reports else []

    def close(self) -> None:
        self.closed = True


def report(rid: int, *vals: int) -> bytes:
    return bytes([rid]) + b"".join(v.to_bytes(2, "little", signed=True) for v in vals)


def test_parse_report_layouts() -> None:
    assert parse_report(report(1, 10, -20, 30)) == ("translation", (10, -20, 30))
    assert parse_report(report(1, 1, 2, 3, 4, 5, 6)) == ("motion", (1, 2, 3, 4, 5, 6))
    assert parse_report(report(2, -1, 0, 350)) == ("rotation", (-1, 0, 350))
    assert parse_report(bytes([3, 0b10, 0])) == ("buttons", (2,))
    assert parse_report(b"")[0] == "other" and parse_report(bytes([23, 100]))[0] == "other"


def test_spacemouse_deflection_is_a_velocity_with_a_dead_band() -> None:
    dev = FakeHid([report(1, 350, 0, -350), report(2, 0, 0, 0)])
    sm = SpaceMouseMaster(device=dev, speed_mm_s=100.0, deadband=0.0)
    sm.read(0)
    s = sm.read(100 * MS)
    # x right stays x; z down (negative = up) becomes +y in the master frame
    assert s.hands[0].pose.position == pytest.approx((0.08 + 0.01, 0.01, 0.0))
    dev.reports.append(report(1, 10, 10, 10))  # inside the default dead band: no drift
    sm.deadband = 0.08
    p = sm.read(200 * MS).hands[0].pose.position
    assert sm.read(300 * MS).hands[0].pose.position == p


def test_spacemouse_buttons_alone_or_from_another_device() -> None:
    sm = SpaceMouseMaster(device=FakeHid([bytes([3, 0b11])]))
    b = sm.read(0).buttons
    assert b.operator_present and b.engage and not b.clutch  # alone: left = deadman, right = engage
    kb = KeyboardMouseMaster()
    kb.key_down("space")
    sm2 = SpaceMouseMaster(device=FakeHid([bytes([3, 0b11])]), buttons_from=kb)
    b = sm2.read(0).buttons
    assert b.operator_present and not b.clutch


def test_spacemouse_read_failure_marks_the_device_invalid() -> None:
    dev = FakeHid([])
    sm = SpaceMouseMaster(device=dev)
    assert sm.read(0).valid
    dev.fail = True
    s = sm.read(MS)
    assert not s.valid and "unplugged" in sm.fault
    sm.close()
    assert dev.closed


def test_spacemouse_absent_library_or_device_gives_a_clear_message(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "hid", None)
    with pytest.raises(MasterError, match=r"pip install 'teleop-console\[spacemouse\]'"):
        open_device()
    fake = types.SimpleNamespace(enumerate=lambda: [{"vendor_id": 0x1234, "path": b"x"}], device=object)
    monkeypatch.setitem(sys.modules, "hid", fake)
    with pytest.raises(MasterError, match="no 3Dconnexion SpaceMouse found"):
        SpaceMouseMaster()


# ---------------------------------------------------------------------- network


HANDS = (MasterHand(Pose((0.1, 0.2, 0.3), q_from_axis_angle((0, 0, 1), 0.5)), 0.25),
         MasterHand(Pose((-0.1, 0.0, 0.0), IDENTITY_Q), 1.0))


def test_network_message_round_trip() -> None:
    b = MasterButtons(operator_present=True, camera=True, estop=True)
    data = encode_master_message(7, 123456789, HANDS, b)
    assert len(data) == SIZE == 200
    m = decode_master_message(data)
    assert (m.seq, m.send_ns, m.valid, m.buttons) == (7, 123456789, True, b)
    assert m.hands[0].pose.position == HANDS[0].pose.position and m.hands[0].gripper == 0.25
    assert q_angle(m.hands[0].pose.orientation, HANDS[0].pose.orientation) < 1e-9


@pytest.mark.parametrize("mangle", ["short", "magic", "version", "nan", "quat"])
def test_network_malformed_messages_are_refused(mangle: str) -> None:
    data = bytearray(encode_master_message(1, 0, HANDS, MasterButtons()))
    if mangle == "short":
        data = data[:-1]
    elif mangle == "magic":
        data[0:4] = b"XXXX"
    elif mangle == "version":
        data[4] = 9
    elif mangle == "nan":
        data[20:28] = bytes.fromhex("000000000000f87f")
    else:
        data[44:52] = struct.pack("<d", 3.0)  # the first hand's qx: no longer a unit quaternion
    with pytest.raises(MessageError):
        decode_master_message(bytes(data))


def test_network_state_staleness_order_and_restart() -> None:
    st = NetworkMasterState(timeout_ms=50)
    assert not st.sample(0).valid  # nothing yet
    present = MasterButtons(operator_present=True)
    assert st.feed(0, encode_master_message(10, 0, HANDS, present))
    assert st.sample(50 * MS).valid and st.sample(50 * MS).buttons.operator_present
    stale = st.sample(51 * MS)
    assert not stale.valid and not stale.buttons.operator_present
    assert not st.feed(60 * MS, encode_master_message(9, 0, HANDS, present))  # older: dropped
    assert st.feed(2000 * MS, encode_master_message(3, 0, HANDS, present))  # sender restarted after 1 s
    assert not st.feed(2001 * MS, b"junk") and st.dropped == 2
    faulty = NetworkMasterState()
    assert faulty.feed(0, encode_master_message(1, 0, HANDS, present, valid=False))
    assert not faulty.sample(0).valid  # the sender's own fault flag is passed on


def test_network_version_1_is_still_accepted_and_version_2_carries_velocity_source_and_deadman() -> None:
    b = MasterButtons(operator_present=True)
    v1 = struct.pack("<4sBBHIq16d", b"TMST", 1, 1, 1, 5, 0, *HANDS[0].pose.position, *HANDS[0].pose.orientation,
                     0.25, *HANDS[1].pose.position, *HANDS[1].pose.orientation, 1.0)
    m1 = decode_master_message(v1)
    assert (m1.version, m1.velocities, m1.source, m1.deadman, m1.buttons) == (1, None, 0, False, b)
    v1_as_2 = bytearray(v1)
    v1_as_2[4] = 2
    with pytest.raises(MessageError):  # a version byte that does not match the length
        decode_master_message(bytes(v1_as_2))
    vel = ((0.01, -0.02, 0.0), (0.0, 0.0, 0.5))
    m2 = decode_master_message(encode_master_message(6, 0, HANDS, b, velocities=vel, source=77, deadman=True))
    assert (m2.version, m2.velocities, m2.source, m2.deadman) == (2, vel, 77, True)
    with pytest.raises(MessageError, match="velocity"):
        decode_master_message(encode_master_message(6, 0, HANDS, b, velocities=((1e3, 0, 0), (0, 0, 0))))
    st = NetworkMasterState()
    st.feed(0, encode_master_message(1, 0, HANDS, b, velocities=vel, deadman=True))
    s = st.sample(MS)
    assert s.presence_immediate and s.velocities == vel


def test_network_state_one_source_drives_a_second_is_refused_until_the_first_is_gone() -> None:
    """Two bridges on the same port (two masters at once) never take turns: the second is refused and counted."""
    st = NetworkMasterState(timeout_ms=50)
    b = MasterButtons(operator_present=True)
    assert st.feed(0, encode_master_message(1, 0, HANDS, b, source=1))
    other = MasterHand(Pose((0.5, 0.5, 0.5), IDENTITY_Q), 0.0)
    assert not st.feed(MS, encode_master_message(100, 0, (other, other), b, source=2))
    assert st.conflicts == 1 and st.sample(2 * MS).hands[0].pose.position == HANDS[0].pose.position
    assert st.feed(2 * MS, encode_master_message(2, 0, HANDS, b, source=1))  # the driving one goes on
    assert not st.sample(500 * MS).valid  # the first went silent: stale, held
    assert not st.feed(500 * MS, encode_master_message(101, 0, (other, other), b, source=2))  # not yet 1 s
    assert st.feed(1100 * MS, encode_master_message(102, 0, (other, other), b, source=2))  # silent > 1 s: taken over
    assert st.sample(1100 * MS).hands[0] == other


def test_network_sample_faults_say_what_to_do() -> None:
    st = NetworkMasterState(timeout_ms=50)
    assert "no sample from the master bridge yet" in st.sample(0).fault
    st.feed(0, encode_master_message(1, 0, HANDS, MasterButtons(), valid=False))
    assert "invalid" in st.sample(MS).fault
    assert "no sample from the master bridge for 100 ms" in st.sample(100 * MS).fault


def test_force_message_round_trip_and_refusals() -> None:
    m = ForceMessage(3, 9, 1000, 900, 950, ((0.0, 0.1, -0.2), (0.0, 0.0, 0.0)), True, (False, True))
    data = encode_force_message(m)
    assert len(data) == FORCE_SIZE == 88 and decode_force_message(data) == m
    with pytest.raises(MessageError):
        decode_force_message(data[:-1])
    bad = bytearray(data)
    bad[40:48] = bytes.fromhex("000000000000f87f")
    with pytest.raises(MessageError, match="non-finite"):
        decode_force_message(bytes(bad))


def test_network_master_over_zeromq() -> None:
    ctx = zmq.Context()
    try:
        nm = NetworkMaster("inproc://master-test", bind=True, ctx=ctx)
        pub = ctx.socket(zmq.PUB)
        pub.connect("inproc://master-test")
        s = nm.read(0)
        deadline = time.monotonic() + 5.0  # bounded retries for the subscription to arrive, no timing assert
        seq = 0
        while not s.valid and time.monotonic() < deadline:
            seq += 1
            pub.send(encode_master_message(seq, 0, HANDS, MasterButtons(clutch=True)))
            time.sleep(0.01)
            s = nm.read(seq * MS)
        assert s.valid and s.buttons.clutch and s.hands[0].pose.position == (0.1, 0.2, 0.3)
        pub.close(0)
        nm.close()
    finally:
        ctx.term()


def test_network_master_bind_failure_is_a_master_error() -> None:
    with pytest.raises(MasterError, match="cannot bind"):
        NetworkMaster("tcp://256.0.0.1:1")


# ---------------------------------------------------------------------- the example bridge for vendors


def _example_bridge():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "docs" / "example_bridge.py"
    spec = importlib.util.spec_from_file_location("example_bridge", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return path, mod


def test_the_example_bridge_speaks_the_reference_protocol() -> None:
    _, ex = _example_bridge()
    vel = ((0.01, 0.0, -0.02), (0.0, 0.0, 0.0))
    hands = tuple((*h.pose.position, *h.pose.orientation, h.gripper) for h in HANDS)
    b = MasterButtons(operator_present=True, engage=True)
    ours = encode_master_message(5, 77, HANDS, b, True, vel, 9, deadman=True)
    assert ex.encode_sample(5, 77, hands, vel, {"operator_present": True, "engage": True}, True, 9) == ours
    m = ForceMessage(1, 2, 3, 4, 5, ((0.1, 0.2, 0.3), (0.0, -1.0, 0.0)), True, (True, False))
    assert ex.decode_force(encode_force_message(m)) == m.forces
    assert ex.decode_force(b"short") is None


def test_the_example_bridge_drives_a_network_master_across_processes() -> None:
    import subprocess

    from base.procs import free_ports

    path, _ = _example_bridge()
    b, f = free_ports(2)
    nm = NetworkMaster(f"tcp://127.0.0.1:{b}", force_endpoint=f"tcp://127.0.0.1:{f}")
    proc = subprocess.Popen([sys.executable, str(path), "--bridge", f"tcp://127.0.0.1:{b}", "--force",
                             f"tcp://127.0.0.1:{f}"])
    try:
        deadline = time.monotonic() + 20.0  # bounded wait for the process to start, no timing assert
        engaged = False
        s = nm.read(time.monotonic_ns())
        while time.monotonic() < deadline and not (s.valid and engaged):
            time.sleep(0.01)
            s = nm.read(time.monotonic_ns())
            engaged = engaged or s.buttons.engage
            nm.send_force(ForceMessage(1, 0, 0, 0, 0, ((0.0, 0.0, 0.1), (0.0, 0.0, 0.0))))
        assert s.valid and engaged and s.buttons.operator_present and s.presence_immediate
        assert s.velocities == ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)) and nm.state.last.source != 0
        assert proc.poll() is None  # the force messages did not upset it
    finally:
        proc.terminate()
        proc.wait(10)
        nm.close()
