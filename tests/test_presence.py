"""The window's presence ends when the surgeon leaves (docs/safety.md, "surgeon walks away").

Which signal (console.presence, base/config.py): 'toggle' (default) = Space or the Present button toggles it,
and it ends when the window loses focus (console/ui/window.py releases every key) or after
console.presence_idle_s without any key or mouse input; 'held' = present only while Space (a pedal mapped to
it) is held. Driven through the keyboard master (console/masters/keyboard.py) into the real controller with
injected time: once presence ends, the arms hold within one control period of the debounce."""

from __future__ import annotations

import pytest
from test_teleop_world import MS, World, fast_cfg

from base.config import ConfigError, load_config
from console.masters.keyboard import KeyboardMouseMaster
from transport.messages import ConsoleFlags

IDLE_S = 2.0  # the smallest console.presence_idle_s: the rule is the same at 20 s
OFF_MS = 30.0


def run(w: World, kb: KeyboardMouseMaster, ms: int):
    """`ms` control ticks (1 kHz), the keyboard master's presence feeding the controller each tick."""
    out = None
    for _ in range(ms):
        w.set(operator_present=kb.read(w.now).buttons.operator_present)
        out = w.tick()
    return out


def engaged(kb: KeyboardMouseMaster) -> World:
    w = World(fast_cfg(presence_off_ms=OFF_MS, presence_on_ms=200.0))
    run(w, kb, 250)
    w.set(engage=True)
    run(w, kb, 3)
    w.set(engage=False)
    run(w, kb, 3)
    assert w.state("PSM1") == "FOLLOWING"
    return w


def test_toggled_presence_ends_after_the_idle_time_and_the_arms_hold_within_one_period():
    kb = KeyboardMouseMaster(0, sticky_presence=True, idle_s=IDLE_S)
    kb.key_down("space")
    kb.key_up("space")
    w = engaged(kb)
    # the surgeon works: any input keeps presence
    for _ in range(3):
        kb.mouse_drag(1.0, 0.0)
        run(w, kb, int(IDLE_S * 1000) - 100)
    assert w.state("PSM1") == "FOLLOWING"
    # the surgeon walks away: no input since the last drag
    last_input = w.now - (int(IDLE_S * 1000) - 100) * MS
    while kb.read(w.now).buttons.operator_present:
        run(w, kb, 1)
    ended = w.now
    assert ended - last_input <= IDLE_S * 1e9 + 2 * MS and kb.idle_ended == 1
    out = run(w, kb, int(OFF_MS))  # the debounce the controller applies to every presence input
    while w.state("PSM1") == "FOLLOWING":
        out = run(w, kb, 1)
    held_at = w.now
    assert held_at - ended <= (OFF_MS + 1) * MS  # the debounce plus one control period
    assert out.arm_mask == 0 and not out.flags & ConsoleFlags.OPERATOR_PRESENT
    assert w.ctl.snapshot()["arms"]["PSM1"]["reason"] == "OPERATOR_ABSENT"


def test_a_key_resting_on_the_keyboard_is_no_presence():
    kb = KeyboardMouseMaster(0, sticky_presence=True, idle_s=IDLE_S)
    kb.key_down("space")
    kb.key_up("space")
    kb.key_down("up")  # something leans on an arrow key
    w = engaged(kb)
    run(w, kb, int(IDLE_S * 1000) + 100)
    assert not kb.present_latched and w.state("PSM1") == "HELD"


def test_leaving_the_window_ends_presence_at_once():
    kb = KeyboardMouseMaster(0, sticky_presence=True, idle_s=IDLE_S)
    kb.key_down("space")
    kb.key_up("space")
    w = engaged(kb)
    kb.release_all()  # what the window does when it loses focus
    out = run(w, kb, int(OFF_MS) + 1)
    assert w.state("PSM1") == "HELD" and out.arm_mask == 0


def test_held_presence_ends_when_the_key_is_let_go():
    kb = KeyboardMouseMaster(0, sticky_presence=False)
    kb.key_down("space")
    w = engaged(kb)
    kb.key_up("space")
    out = run(w, kb, int(OFF_MS) + 1)
    assert w.state("PSM1") == "HELD" and out.arm_mask == 0


@pytest.mark.parametrize("bad", ["console.presence=pedal", "console.presence_idle_s=1", "console.presence_idle_s=601"])
def test_presence_settings_are_range_checked(bad):
    with pytest.raises(ConfigError, match=bad.split("=")[0]):
        load_config(None, [bad])
