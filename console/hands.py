"""Which instrument each hand drives, and the arm swap that changes it.

Theory of operation
-------------------
A surgeon has two hands (right = 0, left = 1) and the bedside three instrument arms (PSM1-PSM3). Each hand
drives exactly one instrument, never the one the other hand drives, so one instrument is always idle: it
drives nothing and holds where it is. The state of this machine is the assignment itself, (right hand's
instrument, left hand's instrument), and its only triggers are the swaps: `swap right` / `swap left` moves
that hand to the idle instrument, and the one it leaves becomes idle. Every assignment and every swap is in
`ASSIGNMENT` (the one mechanism, safety/statemachine.py), so a swap the table lacks raises TransitionError,
each one is logged with its reason and docs/state-machines.md draws the table (`teleop diagrams`).

The swap input is the da Vinci's arm-swap pedal, not the dVRK's quick clutch tap: a pedal of its own cannot be
mistaken for a short clutch (a surgeon re-indexing quickly would otherwise change instruments), and its
rising edge needs no timing threshold that a 100 Hz haptic bridge or a keyboard's auto-repeat could blur. It
moves the hand `teleop.swap_hand` names (default left, the da Vinci's usual third-arm hand).

What a swap does to the arms is the controller's (console/controller.py) and engagement's
(console/engagement.py): the arm left behind goes IDLE (never commanded: it holds), the arm taken goes
through ALIGNING exactly as at engage, so it follows only once the master's orientation matches the tool's
and starts from the tool's own pose: it never jumps. Pure: `now_ns` is passed in.
"""

from __future__ import annotations

import logging
from enum import IntEnum, StrEnum
from itertools import permutations

from safety.statemachine import StateMachine, Transition, TransitionTable
from transport.messages import INSTRUMENT_ARMS, N_HANDS, Reason

log = logging.getLogger("console.hands")


class Hand(IntEnum):
    """Index of a master hand in a MasterSample: hands[0] is the right hand."""

    RIGHT = 0
    LEFT = 1

    @property
    def label(self) -> str:
        return self.name.lower()


class SwapTrigger(StrEnum):
    SWAP_RIGHT = "swap right"
    SWAP_LEFT = "swap left"


SWAP_OF = {Hand.RIGHT: SwapTrigger.SWAP_RIGHT, Hand.LEFT: SwapTrigger.SWAP_LEFT}


def assignment_label(right: str, left: str) -> str:
    """The state's name: which instrument the right hand, then the left hand, drives (a Mermaid identifier)."""
    return f"R_{right}_L_{left}"


Assignment = StrEnum("Assignment", {assignment_label(r, lf): assignment_label(r, lf)  # type: ignore[misc]
                                    for r, lf in permutations(INSTRUMENT_ARMS, N_HANDS)})
"""Every way to put two hands on two different instruments: R_PSM1_L_PSM2, R_PSM1_L_PSM3, … (six of them)."""

ARMS_OF: dict[Assignment, tuple[str, str]] = {
    Assignment(assignment_label(r, lf)): (r, lf) for r, lf in permutations(INSTRUMENT_ARMS, N_HANDS)}
"""Assignment -> (right hand's instrument, left hand's instrument)."""
HAND_OF: dict[Assignment, dict[str, Hand]] = {
    state: {arm: Hand(i) for i, arm in enumerate(arms)} for state, arms in ARMS_OF.items()}
"""Assignment -> {instrument: the hand that drives it}: `hand_of` is asked ≈ 5 times a tick: 0.03 µs a call,
0.27 µs with the `index` and the Enum call `Hand(i)` it made each time."""


def _after_swap(arms: tuple[str, str], hand: Hand) -> Assignment:
    idle = next(a for a in INSTRUMENT_ARMS if a not in arms)
    new = list(arms)
    new[hand] = idle
    return Assignment(assignment_label(new[0], new[1]))


INITIAL = Assignment(assignment_label(INSTRUMENT_ARMS[0], INSTRUMENT_ARMS[1]))
"""Right hand PSM1, left hand PSM2, PSM3 idle: the assignment every console starts with."""

ASSIGNMENT: TransitionTable[Assignment, SwapTrigger] = TransitionTable("hand assignment", INITIAL, {
    (state, SWAP_OF[hand]): _after_swap(arms, hand) for state, arms in ARMS_OF.items() for hand in Hand
})


class HandAssignment(StateMachine[Assignment, SwapTrigger]):
    """The current assignment; only `swap` changes it (through the table)."""

    def __init__(self, now_ns: int = 0) -> None:
        super().__init__(ASSIGNMENT, "hands", now_ns, Reason.STARTUP, "right hand PSM1, left hand PSM2", logger=log)

    def arm_of(self, hand: Hand) -> str:
        """The instrument `hand` drives."""
        return ARMS_OF[self.state][hand]

    def hand_of(self, arm: str) -> Hand | None:
        """The hand that drives instrument `arm`, or None: it is idle (or it is not an instrument)."""
        return HAND_OF[self.state].get(arm)

    @property
    def idle(self) -> str:
        """The instrument no hand drives."""
        arms = ARMS_OF[self.state]
        return next(a for a in INSTRUMENT_ARMS if a not in arms)

    def swap(self, now_ns: int, hand: Hand, reason: Reason = Reason.CONSOLE_REQUEST) -> Transition:
        """Move `hand` to the idle instrument; the one it drove becomes idle."""
        old, new = self.arm_of(hand), self.idle
        return self.fire(now_ns, SWAP_OF[hand], reason, f"{hand.label} hand: {old} -> {new}; {old} idle, holds")

    def mapping(self) -> dict[str, str]:
        """{"right": arm, "left": arm}: what the HUD, the window link and the recording show."""
        return {h.label: self.arm_of(h) for h in Hand}
