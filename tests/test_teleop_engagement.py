"""The per-arm engagement table: what is allowed, what is not, and that the docs show this very table."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from console.engagement import ENGAGED, TRANSITIONS, ArmState, Engagement, Trigger
from safety.statemachine import TransitionError, diagram
from transport.messages import Reason


def at(state: ArmState) -> Engagement:
    e = Engagement("PSM1")
    e.state = state
    return e


@pytest.mark.parametrize(("key", "dst"), list(TRANSITIONS.items()), ids=lambda v: str(v))
def test_every_table_entry_fires_and_records_its_reason(key, dst) -> None:
    src, trig = key
    e = at(src)
    tr = e.fire(123, trig, Reason.LATENCY, "why")
    assert (tr.from_state, tr.to_state, e.state) == (src, dst, dst)
    assert (e.reason, e.text, e.since_ns) == (Reason.LATENCY, "why", 123)


def test_a_trigger_the_table_lacks_raises() -> None:
    missing = [(s, t) for s in ArmState for t in Trigger if (s, t) not in TRANSITIONS]
    assert missing
    for s, t in missing:
        with pytest.raises(TransitionError):
            at(s).fire(0, t)


def test_following_is_reached_only_through_aligning() -> None:
    assert {src for (src, _), dst in TRANSITIONS.items() if dst is ArmState.FOLLOWING} == {ArmState.ALIGNING}


def test_held_is_left_only_by_an_explicit_engage_or_disengage() -> None:
    held = ArmState.HELD
    exits = {trig for (src, trig), dst in TRANSITIONS.items() if src is held and dst is not held}
    assert exits == {Trigger.ENGAGE, Trigger.DISENGAGE}
    assert TRANSITIONS[(ArmState.HELD, Trigger.ENGAGE)] is ArmState.ALIGNING


def test_every_engaged_state_can_be_held_and_disengaged() -> None:
    for s in ENGAGED | {ArmState.HELD}:
        assert TRANSITIONS[(s, Trigger.HOLD)] is ArmState.HELD
        assert TRANSITIONS[(s, Trigger.DISENGAGE)] is ArmState.DISABLED


def test_transitions_are_logged_with_their_reason(caplog) -> None:
    e = Engagement("PSM2")
    with caplog.at_level(logging.INFO, logger="console.engagement"):
        e.fire(0, Trigger.ENGAGE, Reason.CONSOLE_REQUEST, "pressed")
        e.fire(1, Trigger.HOLD, Reason.OPERATOR_ABSENT, "gone")
    assert "PSM2 DISABLED -> ALIGNING on engage (CONSOLE_REQUEST): pressed" in caplog.text
    held = [r for r in caplog.records if "HELD" in r.getMessage()]
    assert held and held[0].levelno == logging.WARNING and "OPERATOR_ABSENT" in held[0].getMessage()


def test_docs_show_the_diagram_generated_from_the_table() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "state-machines.md").read_text(encoding="utf-8")
    assert diagram(TRANSITIONS) in doc, "run `teleop diagrams --write` to regenerate docs/state-machines.md"
