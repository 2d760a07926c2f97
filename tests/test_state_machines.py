"""The one state-machine mechanism (safety/statemachine.py), the five machines on it, and their docs' diagrams."""

from __future__ import annotations

import argparse
import json
import logging
import random
from enum import Enum, StrEnum
from pathlib import Path

import pytest
from conftest import ms

from bedside.agent import SESSION, BedsideAgent, SessionTrigger
from console.controller import TeleopController
from console.engagement import TRANSITIONS
from console.engine import LINK, ConsoleEngine, EngineEvent, LinkState
from console.hands import ASSIGNMENT
from console.uilink import WINDOW, UiSupervisor, WindowState
from safety.statemachine import StateMachine, Transition, TransitionError, TransitionTable, diagram
from teleop import diagrams_cmd
from teleop.cli import build_parser
from transport.messages import EventKind, OperatingState, Reason
from voice.intercom import VOICE_LINK

DOC = Path(__file__).parent.parent / "docs" / "state-machines.md"


class Lamp(Enum):
    OFF = "OFF"
    ON = "ON"
    BROKEN = "BROKEN"


class Act(StrEnum):
    SWITCH = "switch"
    SMASH = "smash"


LAMP_EDGES = {
    (Lamp.OFF, Act.SWITCH): Lamp.ON,
    (Lamp.ON, Act.SWITCH): Lamp.OFF,
    (Lamp.OFF, Act.SMASH): Lamp.BROKEN,
    (Lamp.ON, Act.SMASH): Lamp.BROKEN,
}
LAMP = TransitionTable("lamp", Lamp.OFF, LAMP_EDGES, alarm={Lamp.BROKEN})


# ---------------------------------------------------------------------- the docs


def test_docs_show_each_machine_as_its_table_says() -> None:
    stale = diagrams_cmd.stale(DOC.read_text(encoding="utf-8"))
    assert not stale, f"docs/state-machines.md is stale for {stale}: run `teleop diagrams --write`"


def test_every_machine_is_in_the_docs_registry_once() -> None:
    names = [t.name for t in diagrams_cmd.MACHINES]
    assert len(set(names)) == len(names) == 6
    assert {id(t) for t in diagrams_cmd.MACHINES} == {id(t) for t in (TRANSITIONS, ASSIGNMENT, SESSION, LINK,
                                                                       WINDOW, VOICE_LINK)}


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    diagrams_cmd.add_arguments(p)
    return p.parse_args(list(argv))


def test_diagrams_check_names_the_stale_machine_and_write_fixes_only_the_blocks(tmp_path, capsys) -> None:
    doc = tmp_path / "state-machines.md"
    good = DOC.read_text(encoding="utf-8")
    doc.write_text(good.replace("    UP --> LOST: silence\n", ""), encoding="utf-8")  # the table moved on
    assert diagrams_cmd.run(_args("--check", "--doc", str(doc))) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "console link" in err and "teleop diagrams --write" in err
    assert "engagement" not in err
    assert diagrams_cmd.run(_args("--write", "--doc", str(doc))) == 0
    assert doc.read_text(encoding="utf-8") == good
    assert diagrams_cmd.run(_args("--check", "--doc", str(doc))) == 0


def test_diagrams_write_names_a_missing_marker(tmp_path, capsys) -> None:
    doc = tmp_path / "state-machines.md"
    doc.write_text(DOC.read_text(encoding="utf-8").replace("<!-- diagram: console window -->", ""), encoding="utf-8")
    assert diagrams_cmd.run(_args("--write", "--doc", str(doc))) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "<!-- diagram: console window -->" in err


def test_diagrams_is_a_teleop_subcommand(capsys) -> None:
    args = build_parser().parse_args(["diagrams"])
    assert args._module is diagrams_cmd
    assert diagrams_cmd.run(args) == 0
    assert capsys.readouterr().out.count("```mermaid") == 6


# ---------------------------------------------------------------------- the mechanism


def test_fire_moves_as_the_table_says_and_returns_the_transition() -> None:
    m = StateMachine(LAMP, "desk lamp", now_ns=5)
    assert (m.state, m.reason, m.since_ns) == (Lamp.OFF, Reason.STARTUP, 5)
    tr = m.fire(10, Act.SWITCH, Reason.CONSOLE_REQUEST, "reading")
    assert tr == Transition(10, "desk lamp", Lamp.OFF, Act.SWITCH, Lamp.ON, Reason.CONSOLE_REQUEST, "reading")
    assert (m.state, m.reason, m.text, m.since_ns) == (Lamp.ON, Reason.CONSOLE_REQUEST, "reading", 10)


def test_a_pair_the_table_lacks_raises_and_changes_nothing() -> None:
    m = StateMachine(LAMP, "desk lamp", now_ns=5)
    m.fire(6, Act.SMASH, Reason.FAULT, "dropped")
    for trigger in (Act.SWITCH, Act.SMASH, "smash", OperatingState.ENABLED):  # also: not this table's enum
        assert not m.can(trigger)
        with pytest.raises(TransitionError) as exc:
            m.fire(7, trigger)
        assert isinstance(exc.value, RuntimeError)
        assert "desk lamp" in str(exc.value) and "BROKEN" in str(exc.value)
        assert (exc.value.machine, exc.value.state, exc.value.trigger) == ("desk lamp", Lamp.BROKEN, trigger)
    assert "'switch'" in str(TransitionError("desk lamp", Lamp.BROKEN, Act.SWITCH))
    assert (m.state, m.reason, m.text, m.since_ns) == (Lamp.BROKEN, Reason.FAULT, "dropped", 6)


def test_a_trigger_must_be_the_tables_enum_not_a_look_alike() -> None:
    m = StateMachine(LAMP, "desk lamp")
    assert Act.SWITCH == "switch" and not m.can("switch")  # a StrEnum compares equal to its value
    with pytest.raises(TransitionError):
        m.fire(1, "switch")
    assert m.state is Lamp.OFF


def test_can_asks_the_table() -> None:
    m = StateMachine(LAMP, "desk lamp")
    assert m.can(Act.SWITCH) and m.can(Act.SMASH)
    m.fire(1, Act.SMASH)
    assert not m.can(Act.SWITCH) and not m.can(Act.SMASH)


def test_every_transition_is_logged_with_its_reason_warning_into_an_alarm_state(caplog) -> None:
    owner = logging.getLogger("tests.lamp")
    m = StateMachine(LAMP, "desk lamp", logger=owner)
    with caplog.at_level(logging.INFO, logger="tests.lamp"):
        m.fire(1, Act.SWITCH, Reason.CONSOLE_REQUEST, "reading")
        m.fire(2, Act.SMASH, Reason.FAULT, "dropped")
    records = [r for r in caplog.records if r.name == "tests.lamp"]
    assert [r.getMessage() for r in records] == [
        "desk lamp OFF -> ON on switch (CONSOLE_REQUEST): reading",
        "desk lamp ON -> BROKEN on smash (FAULT): dropped",
    ]
    assert [r.levelno for r in records] == [logging.INFO, logging.WARNING]


def test_diagram_text_depends_on_the_table_only() -> None:
    expected = "\n".join([
        "stateDiagram-v2",
        "    [*] --> OFF",
        "    OFF --> ON: switch",
        "    OFF --> BROKEN: smash",
        "    ON --> OFF: switch",
        "    ON --> BROKEN: smash",
    ])
    assert diagram(LAMP) == expected
    items = list(LAMP_EDGES.items())
    for seed in range(5):
        random.Random(seed).shuffle(items)
        assert diagram(TransitionTable("lamp", Lamp.OFF, dict(items), alarm={Lamp.BROKEN})) == expected


def test_malformed_tables_are_refused_when_defined() -> None:
    with pytest.raises(ValueError, match="empty"):
        TransitionTable("t", Lamp.OFF, {})
    with pytest.raises(ValueError, match="mixes enum types"):
        TransitionTable("t", Lamp.OFF, {(Lamp.OFF, Act.SWITCH): Lamp.ON, (Lamp.ON, SessionTrigger.ENABLE): Lamp.OFF})
    with pytest.raises(ValueError, match="mixes enum types"):
        TransitionTable("t", Lamp.OFF, {(Lamp.OFF, Act.SWITCH): OperatingState.ENABLED})
    with pytest.raises(ValueError, match="alarm"):
        TransitionTable("t", Lamp.OFF, {(Lamp.OFF, Act.SWITCH): Lamp.ON}, alarm={OperatingState.FAULT})


@pytest.mark.parametrize("table", diagrams_cmd.MACHINES, ids=lambda t: t.name)
def test_every_entry_of_every_machine_fires(table: TransitionTable) -> None:
    for (src, trig), dst in table.items():
        m = StateMachine(table, table.name)
        m.state = src
        assert m.fire(1, trig, Reason.NONE, "t").to_state is dst and m.state is dst
    missing = [(s, t) for s in table.state_type for t in table.trigger_type if (s, t) not in table]
    for s, t in missing:
        m = StateMachine(table, table.name)
        m.state = s
        with pytest.raises(TransitionError):
            m.fire(1, t)


# ---------------------------------------------------------------------- the machines' guarantees


def test_nothing_resumes_by_itself() -> None:
    """Only an explicit enable enters ENABLED; a lost link or window comes back only on traffic/heartbeat."""
    assert {t for (_, t), dst in SESSION.items() if dst is OperatingState.ENABLED} == {SessionTrigger.ENABLE}
    assert {t for (s, t) in LINK if s is LinkState.LOST} == {"traffic"}
    assert {t for (s, t) in WINDOW if s is WindowState.LOST} == {"heartbeat"}
    assert {dst for (s, _), dst in SESSION.items() if s is OperatingState.FAULT} == {OperatingState.FAULT}


def test_the_bedside_publishes_each_transition_as_an_event_and_refuses_one_its_table_lacks(cfg) -> None:
    agent = BedsideAgent(cfg.bedside, 0, first_epoch=7)
    agent.raise_estop(ms(1), "local")
    ev = [e for e in agent.drain_events() if e.kind is EventKind.STATE_CHANGE]
    assert [(e.from_state, e.to_state, e.reason) for e in ev] == [
        (OperatingState.DISABLED, OperatingState.PAUSED, Reason.ESTOP)]
    assert (agent.state, agent.reason) == (OperatingState.PAUSED, Reason.ESTOP)
    with pytest.raises(TransitionError, match="bedside"):
        agent._transition(ms(2), SessionTrigger.PAUSE, Reason.LINK_LOST, "only ENABLED can pause")
    assert agent.state is OperatingState.PAUSED and not agent.drain_events()


def test_the_engine_turns_link_transitions_into_its_link_events(cfg, caplog) -> None:
    agent = BedsideAgent(cfg.bedside, 0)
    engine = ConsoleEngine(cfg, TeleopController(cfg.teleop, 0), 0)
    with caplog.at_level(logging.INFO, logger="console.engine"):
        engine.on_bytes(ms(1), agent.telemetry(ms(1)))
        assert engine.link is LinkState.UP and engine.link.value == "UP"
        engine.on_bytes(ms(1) + ms(cfg.link.console_timeout_ms), b"not a frame")  # silence, then garbage
    assert engine.link is LinkState.LOST
    link = [e for e in engine.events if e.source == "link"]
    assert link[0] == EngineEvent(ms(1), "link", "UP", Reason.NONE, "traffic from the bedside (was CONNECTING)")
    assert (link[1].name, link[1].reason) == ("LOST", Reason.LINK_LOST) and len(link) == 2
    assert "link UP -> LOST on silence (LINK_LOST)" in caplog.text


def test_the_window_supervisor_moves_through_its_table(caplog) -> None:
    class Ctl:
        def inhibit(self, now_ns, reason, active, text=""):
            pass

    ui = UiSupervisor(Ctl(), gui_timeout_ms=250, stale_ms=200, stuck_ms=500)
    beat = json.dumps({"type": "heartbeat", "seq": 1}).encode()
    with caplog.at_level(logging.INFO, logger="console.ui"):
        assert ui.window.state is WindowState.WAITING
        ui.on_bytes(ms(10), beat, 0)
        assert ui.window.state is WindowState.ATTACHED
        ui.tick(ms(261))
        assert ui.window.state is WindowState.LOST and ui.window.reason is Reason.GUI_LOST
        ui.on_bytes(ms(300), beat, 0)
        assert ui.window.state is WindowState.ATTACHED
    assert "window WAITING -> ATTACHED on heartbeat (NONE): window attached" in caplog.text
    assert "window ATTACHED -> LOST on silence (GUI_LOST): console window silent for 251 ms" in caplog.text
    assert "window LOST -> ATTACHED on heartbeat (NONE): window heartbeat back" in caplog.text
