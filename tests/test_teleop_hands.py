"""The arm swap: which instrument each hand drives (console/hands.py) and what a swap does to the arms
(console/controller.py). Injected time, an ideal bedside (test_teleop_world.World)."""

from __future__ import annotations

import math
from itertools import permutations

import pytest
from test_teleop_world import ECM, MS, TOOLS0, World, fast_cfg

from base.geometry import q_from_axis_angle, v_dist
from console.hands import ARMS_OF, ASSIGNMENT, INITIAL, Assignment, Hand, HandAssignment, SwapTrigger
from console.master import ScriptedMaster, pulse
from console.masters.keyboard import KeyboardMouseMaster
from console.ui.status import arm_lines
from safety.statemachine import TransitionError
from transport.messages import ARM_NAMES, INSTRUMENT_ARMS, Reason

PSM1, PSM2, PSM3 = 0, 1, 2


def mask_arms(mask: int) -> set[str]:
    return {ARM_NAMES[i] for i in range(len(ARM_NAMES)) if mask >> i & 1}


# ---------------------------------------------------------------------- the assignment machine


def test_every_assignment_puts_the_two_hands_on_two_different_instruments() -> None:
    assert set(ARMS_OF.values()) == set(permutations(INSTRUMENT_ARMS, 2)) and len(Assignment) == 6
    assert ARMS_OF[INITIAL] == ("PSM1", "PSM2")
    for (state, trigger), dst in ASSIGNMENT.items():
        hand = Hand.RIGHT if trigger is SwapTrigger.SWAP_RIGHT else Hand.LEFT
        before, after = ARMS_OF[state], ARMS_OF[dst]
        idle = (set(INSTRUMENT_ARMS) - set(before)).pop()
        assert after[hand] == idle and after[1 - hand] == before[1 - hand]  # only that hand moved, to the idle one
    assert len(ASSIGNMENT) == len(Assignment) * len(SwapTrigger)  # every swap is allowed from every assignment


def test_the_swap_moves_one_hand_to_the_idle_instrument_and_back() -> None:
    h = HandAssignment(0)
    assert (h.mapping(), h.idle) == ({"right": "PSM1", "left": "PSM2"}, "PSM3")
    tr = h.swap(5, Hand.LEFT)
    assert (tr.from_state, tr.to_state, tr.reason) == (INITIAL, Assignment.R_PSM1_L_PSM3, Reason.CONSOLE_REQUEST)
    assert (h.mapping(), h.idle, h.hand_of("PSM3"), h.hand_of("PSM2")) == (
        {"right": "PSM1", "left": "PSM3"}, "PSM2", Hand.LEFT, None)
    h.swap(6, Hand.RIGHT)
    assert h.mapping() == {"right": "PSM2", "left": "PSM3"} and h.idle == "PSM1"
    assert h.hand_of("ECM") is None
    with pytest.raises(TransitionError):
        h.fire(7, "swap left")  # not the table's trigger type: refused, never ignored


# ---------------------------------------------------------------------- the controller


def following(w: World) -> World:
    w.engage()
    assert w.state("PSM1") == w.state("PSM2") == "FOLLOWING" and w.state("PSM3") == "DISABLED"
    return w


def test_engage_takes_the_hands_instruments_and_never_the_idle_one() -> None:
    w = following(World())
    assert w.out.arm_mask == 0b0011
    line = w.ctl.snapshot()["arms"]["PSM3"]
    assert line["hand"] is None and line["guidance"].startswith("idle: holds; press the arm-swap pedal")


def test_a_swap_leaves_the_old_arm_holding_and_the_new_one_aligns_before_it_follows() -> None:
    w = following(World())
    w.tick(10)
    w.turn(1, q_from_axis_angle((0.0, 0.0, 1.0), math.radians(20)))  # the left hand is turned off PSM3's tool
    psm2_before = w.tools[PSM2]
    out = w.press("swap")
    assert w.state("PSM2") == "IDLE" and w.state("PSM3") == "ALIGNING"
    assert mask_arms(out.arm_mask) == {"PSM1"}
    swap = next(e for e in w.events if e.name == "swap")
    assert (swap.from_state, swap.to_state, swap.arm) == ("R_PSM1_L_PSM2", "R_PSM1_L_PSM3", "PSM3")
    assert "left hand now drives PSM3; PSM2 holds" in swap.text
    w.move(1, (0.02, 0.0, 0.0))
    w.tick(50)
    assert w.state("PSM3") == "ALIGNING" and not w.out.arm_mask >> PSM3 & 1  # misaligned: never follows
    assert "rotate the master" in w.ctl.snapshot()["arms"]["PSM3"]["guidance"]
    psm3_before = w.tools[PSM3]
    w.turn(1, TOOLS0[PSM3].orientation)  # aligned: PSM3 starts from its own pose
    out = w.tick()
    assert w.state("PSM3") == "FOLLOWING" and out.setpoints[PSM3] == psm3_before
    w.move(1, (0.0, 0.01, 0.0))  # the left hand now moves PSM3, and only PSM3
    w.tick(100)
    assert v_dist(w.tools[PSM3].position, psm3_before.position) == pytest.approx(0.002, abs=1e-6)
    assert w.tools[PSM2] == psm2_before and mask_arms(w.out.arm_mask) == {"PSM1", "PSM3"}
    assert w.ctl.snapshot()["hands"] == {"right": "PSM1", "left": "PSM3"}


def test_the_first_command_after_a_swap_back_is_the_tools_pose() -> None:
    w = following(World())
    w.press("swap")
    w.tick(5)
    w.press("swap")  # back to PSM2, which held meanwhile
    assert w.state("PSM2") in ("ALIGNING", "FOLLOWING") and w.state("PSM3") == "IDLE"
    w.tick(3)
    assert w.state("PSM2") == "FOLLOWING" and w.out.setpoints[PSM2] == w.tools[PSM2]


def test_a_swap_is_refused_while_the_arms_are_held_and_changes_nothing() -> None:
    w = following(World())
    w.link_ok = False
    w.tick()
    assert w.state("PSM2") == "HELD"
    w.press("swap")
    assert w.ctl.hands.state is INITIAL and w.state("PSM3") == "DISABLED"
    refused = [e for e in w.events if e.name == "swap refused"]
    assert refused and refused[-1].reason is Reason.LINK_LOST and "link to the bedside lost" in refused[-1].text
    w.link_ok = True
    w.tick()
    w.press("swap")  # link back, arms still held: engage first
    assert w.ctl.hands.state is INITIAL
    assert "PSM2 is held (LINK_LOST): press engage first, then swap" in w.events[-1].text
    w.engage()
    w.press("swap")
    assert w.ctl.hands.state is Assignment.R_PSM1_L_PSM3


def test_a_swap_while_disengaged_changes_which_arms_engage_takes() -> None:
    w = World()
    w.press("swap")
    assert w.ctl.hands.mapping() == {"right": "PSM1", "left": "PSM3"}
    assert {w.state(a) for a in ARM_NAMES} == {"DISABLED"}  # nothing engaged, nothing moves
    w.engage()
    assert (w.state("PSM1"), w.state("PSM2"), w.state("PSM3")) == ("FOLLOWING", "DISABLED", "FOLLOWING")
    assert mask_arms(w.out.arm_mask) == {"PSM1", "PSM3"}


def test_disengage_releases_the_idle_arm_too() -> None:
    w = following(World())
    w.press("swap")
    w.press("disengage")
    assert {w.state(a) for a in ARM_NAMES} == {"DISABLED"} and not w.session  # the session was released


def test_the_swap_hand_comes_from_configuration() -> None:
    w = following(World(fast_cfg(swap_hand="right")))
    w.press("swap")
    assert w.ctl.hands.mapping() == {"right": "PSM3", "left": "PSM2"} and w.state("PSM1") == "IDLE"


def test_a_swap_during_camera_mode_keeps_the_instruments_still() -> None:
    w = following(World())
    w.set(camera=True)
    w.tick(3)
    assert w.state("ECM") == "FOLLOWING"
    w.press("swap")
    assert w.state("PSM3") == "CAMERA" and w.state("PSM2") == "IDLE"
    assert mask_arms(w.out.arm_mask) == {"ECM"}
    w.set(camera=False)
    w.tick(3)
    assert w.state("PSM3") == "FOLLOWING" and w.state("ECM") == "CLUTCHED"


def test_a_held_swap_pedal_swaps_once() -> None:
    w = following(World())
    w.set(swap=True)
    w.tick(200)
    assert w.ctl.hands.state is Assignment.R_PSM1_L_PSM3
    w.set(swap=False)
    w.tick()
    assert len([e for e in w.events if e.name == "swap"]) == 1


# ---------------------------------------------------------------------- masters and the HUD


def test_the_keyboard_s_key_is_the_arm_swap_pedal() -> None:
    m = KeyboardMouseMaster()
    assert not m.read(0).buttons.swap
    m.key_down("s")
    assert m.read(MS).buttons.swap
    m.key_up("s")
    assert not m.read(2 * MS).buttons.swap


def test_a_scripted_master_presses_the_swap_pedal() -> None:
    m = ScriptedMaster("still", 0, engage_at_s=None, script=pulse("swap", 1.0))
    assert [m.read(int(t * 1e9)).buttons.swap for t in (0.9, 1.01, 1.2)] == [False, True, False]


def test_the_hud_says_which_arm_each_hand_drives() -> None:
    w = following(World())
    w.press("swap")
    w.turn(1, TOOLS0[PSM3].orientation)
    w.tick(3)
    lines = {line.name: line for line in arm_lines(w.ctl.snapshot())}
    assert lines["PSM1"].text == "tool follows your right hand"
    assert lines["PSM3"].text == "tool follows your left hand"
    assert lines["PSM2"].text.startswith("idle: holds") and lines["PSM2"].state == "IDLE"
    assert lines["ECM"].text.startswith("endoscope holds")
    assert ARM_NAMES.index("ECM") == ECM
