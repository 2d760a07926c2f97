"""The one state-machine mechanism: a transition table, a machine that fires triggers through it, a diagram.

Why one: engagement (console/engagement.py), the bedside session (bedside/agent.py), the console's link
(console/engine.py) and the window supervisor (console/uilink.py) all answer "may this happen now, and what
follows?" the same way, so they share one table type, one `fire`, one error and one log line.

* A `TransitionTable` maps (state, trigger) to the next state; states and triggers are enums. Nothing else
  changes a machine's state.
* `StateMachine.fire` raises `TransitionError` on any (state, trigger) the table lacks: a programming
  error, never silently ignored. Every transition is logged (machine, from, trigger, to, reason, text; a
  WARNING when it enters one of the table's `alarm` states) and returned as a `Transition`, which the owner
  turns into its own event (a TeleopEvent, a bedside EVENT, an EngineEvent).
* `diagram` renders any table as Mermaid `stateDiagram-v2` text in a fixed order; docs/state-machines.md
  embeds it for every machine and `teleop diagrams --check` (and tests/test_state_machines.py) fail when
  the two drift apart.

Pure: `now_ns` is passed in; the only side effect is the log line.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

from transport.messages import Reason

log = logging.getLogger("safety.statemachine")

S = TypeVar("S", bound=Enum)
T = TypeVar("T", bound=Enum)


def label(member: Enum) -> str:
    """How a state or trigger is written in logs, errors and diagrams: its string value, else its name."""
    return member.value if isinstance(member.value, str) else member.name


class TransitionError(RuntimeError):
    """A trigger the machine's table does not allow in its current state (the one error for every machine)."""

    def __init__(self, machine: str, state: Enum, trigger: object) -> None:
        self.machine = machine
        self.state = state
        self.trigger = trigger
        shown = label(trigger) if isinstance(trigger, Enum) else trigger
        super().__init__(f"{machine}: {shown!r} is not allowed in {label(state)}")


@dataclass(frozen=True, slots=True)
class Transition(Generic[S, T]):
    """One transition as it happened: the owner turns it into its own event."""

    t_ns: int
    machine: str
    from_state: S
    trigger: T
    to_state: S
    reason: Reason
    text: str


class TransitionTable(Mapping[tuple[S, T], S], Generic[S, T]):
    """(state, trigger) -> next state, read-only, with the machine's initial state and its alarm states.

    `name` names the table in docs and diagnostics; `alarm` lists the states whose entry is logged as a
    WARNING (a hold, a lost link). A malformed table raises ValueError when the module defining it loads.
    """

    def __init__(self, name: str, initial: S, edges: Mapping[tuple[S, T], S], alarm: Iterable[S] = ()) -> None:
        if not edges:
            raise ValueError(f"transition table {name!r} is empty")
        self.name = name
        self.initial = initial
        self.state_type: type[S] = type(initial)
        self.trigger_type: type[T] = type(next(iter(edges))[1])
        self.alarm: frozenset[S] = frozenset(alarm)
        for (src, trig), dst in edges.items():
            if not (isinstance(src, self.state_type) and isinstance(dst, self.state_type)
                    and isinstance(trig, self.trigger_type)):
                raise ValueError(f"transition table {name!r}: ({src!r}, {trig!r}) -> {dst!r} mixes enum types; "
                                 f"states are {self.state_type.__name__}, triggers {self.trigger_type.__name__}")
        bad = [s for s in self.alarm if not isinstance(s, self.state_type)]
        if bad:
            raise ValueError(f"transition table {name!r}: alarm states {bad!r} are not {self.state_type.__name__}")
        self._edges: dict[tuple[S, T], S] = dict(edges)

    def __getitem__(self, key: tuple[S, T]) -> S:
        return self._edges[key]

    def __iter__(self) -> Iterator[tuple[S, T]]:
        return iter(self._edges)

    def __len__(self) -> int:
        return len(self._edges)

    def __repr__(self) -> str:
        return f"TransitionTable({self.name!r}, {len(self)} transitions)"


class StateMachine(Generic[S, T]):
    """One machine's state, the reason it is there and since when; only `fire` changes them."""

    def __init__(self, table: TransitionTable[S, T], name: str, now_ns: int = 0, reason: Reason = Reason.STARTUP,
                 text: str = "", logger: logging.Logger | None = None) -> None:
        self.table = table
        self.name = name
        self.state: S = table.initial
        self.reason = reason
        self.text = text
        self.since_ns = now_ns
        self._log = logger or log

    def can(self, trigger: T) -> bool:
        """Whether `fire(trigger)` would be allowed now."""
        return isinstance(trigger, self.table.trigger_type) and (self.state, trigger) in self.table

    def fire(self, now_ns: int, trigger: T, reason: Reason = Reason.NONE, text: str = "") -> Transition[S, T]:
        """Move on `trigger` as the table says, log it, and return the transition; TransitionError if not allowed."""
        dst = self.table.get((self.state, trigger)) if isinstance(trigger, self.table.trigger_type) else None
        if dst is None:
            raise TransitionError(self.name, self.state, trigger)
        tr = Transition(now_ns, self.name, self.state, trigger, dst, reason, text)
        self.state = dst
        self.reason = reason
        self.text = text
        self.since_ns = now_ns
        self._log.log(logging.WARNING if dst in self.table.alarm else logging.INFO, "%s %s -> %s on %s (%s): %s",
                      self.name, label(tr.from_state), label(dst), label(trigger), reason.name, text)
        return tr


def diagram(table: TransitionTable) -> str:
    """The table as Mermaid `stateDiagram-v2` text: the initial state, then every transition ordered by the
    enums' definition order (source state, then trigger), so the text depends on the table only."""
    states = {s: i for i, s in enumerate(table.state_type)}
    triggers = {t: i for i, t in enumerate(table.trigger_type)}
    lines = ["stateDiagram-v2", f"    [*] --> {label(table.initial)}"]
    for (src, trig), dst in sorted(table.items(), key=lambda e: (states[e[0][0]], triggers[e[0][1]])):
        lines.append(f"    {label(src)} --> {label(dst)}: {label(trig)}")
    return "\n".join(lines)
