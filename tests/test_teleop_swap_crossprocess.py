"""The arm swap across real processes: `teleop bedside`, the console engine (`teleop console --ui`) and the
scripted surgeon at its window (rehearsal/surgeon.py) pressing the arm-swap pedal on the network-master
stream, with a monitor's SUB recording every telemetry setpoint (tests/faults.py)."""

from __future__ import annotations

import math
import time

import pytest
from faults import Rig

pytestmark = pytest.mark.fault

PSM1, PSM2, PSM3 = 0, 1, 2


def test_the_scripted_surgeon_swaps_to_psm3_which_follows_while_psm2_holds(tmp_path) -> None:
    rig = Rig(tmp_path)
    try:
        rig.start()
        rig.engage()
        win = rig.window
        assert win is not None and win.hands() == {"right": "PSM1", "left": "PSM2"}
        time.sleep(0.5)
        t_swap = win.swap()
        swapped = win.wait(lambda w: w.hands() == {"right": "PSM1", "left": "PSM3"} and w.following(), 10.0)
        assert swapped, f"never following after the swap: {win.arm_states(True)} {rig.console_events()[-6:]}"
        t_follow = time.monotonic_ns()
        time.sleep(1.5)  # the scripted hands go round their circles: PSM1 and PSM3 follow them
        assert rig.telemetry is not None
        after = [x for x in rig.telemetry.samples if x[0] >= t_follow and x[1] == "ENABLED"]
        assert len(after) > 100
        psm2 = {x[3][PSM2] for x in after}
        assert len(psm2) == 1, f"PSM2 moved after it was swapped out: {sorted(psm2)[:3]}"
        travel = max(math.dist(a[3][PSM3], b[3][PSM3]) for a in after for b in after)
        assert travel > 1.0, f"PSM3 did not follow the left hand ({travel:.2f} mm)"
        rig.assert_no_jump(t_swap)  # neither the swap nor the capture of PSM3 jumped
        swaps = [e for e in rig.console_events("teleop", t_swap) if e["name"] == "swap"]
        assert len(swaps) == 1 and "left hand now drives PSM3; PSM2 holds" in swaps[0]["text"]
        _, bed = rig.finish()
        assert not bed["counters"].get("rejected_rejected_arm"), bed["counters"]
        assert not bed["freezes"] or {f["reason"] for f in bed["freezes"]} == {"CONSOLE_REQUEST"}, bed["freezes"]
    finally:
        rig.close()
