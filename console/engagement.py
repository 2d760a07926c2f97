"""Per-arm engagement: the named states one arm goes through, and the only transitions allowed.

Theory of operation
-------------------
Every state an arm can be in, and every way out of it, is in `TRANSITIONS` below; nothing else changes an
arm's state. The controller (console/controller.py) decides *when* a trigger happens (a pedal edge, a hold
condition, an engage press); this module decides *whether* it is allowed and what follows. A trigger the
table lacks for the current state raises TransitionError: a programming error, never silently ignored.

    DISABLED   not engaged: no motion, no session wanted.
    ALIGNING   engage pressed: waiting for the bedside session, a fresh tool pose and (instruments) the
               master's orientation to come within tolerance of the tool's; the console says what to do.
    FOLLOWING  the tool follows the master; the only state in which an arm is commanded.
    CLUTCHED   clutch pedal held: the tool holds, the hand may move freely (indexing). For the endoscope
               arm (ECM) this is also "camera pedal up": it holds while the hands drive the instruments.
    CAMERA     camera pedal held (instruments only): the tool holds while the hands drive the endoscope.
    HELD       frozen by a hold condition (link lost, video stale, latency, operator absent, e-stop, bedside
               fault, limit, master fault). Leaving it always takes an explicit ENGAGE from the surgeon.
    IDLE       an instrument the surgeon swapped away from (console/hands.py): no hand drives it, it is never
               commanded and holds where it is. A swap back takes it through ALIGNING, as engage does.

Releasing a pedal goes back through ALIGNING, which re-captures the start poses: the tool resumes from
where it is with no jump. The mechanism is the shared one (safety/statemachine.py): each transition is logged
here (`console.engagement`, WARNING when it enters HELD) with its reason and returned as a Transition.
docs/state-machines.md shows the diagram generated from this table (`teleop diagrams`).
"""

from __future__ import annotations

import logging
from enum import StrEnum

from safety.statemachine import StateMachine, TransitionTable
from transport.messages import Reason

log = logging.getLogger("console.engagement")


class ArmState(StrEnum):
    DISABLED = "DISABLED"
    ALIGNING = "ALIGNING"
    FOLLOWING = "FOLLOWING"
    CLUTCHED = "CLUTCHED"
    CAMERA = "CAMERA"
    HELD = "HELD"
    IDLE = "IDLE"


class Trigger(StrEnum):
    ENGAGE = "engage"
    ALIGNED = "aligned"
    CLUTCH = "clutch"
    CAMERA = "camera"
    RELEASE = "release"
    HOLD = "hold"
    DISENGAGE = "disengage"
    SWAP_OUT = "swap out"
    SWAP_IN = "swap in"


A, T = ArmState, Trigger
TRANSITIONS: TransitionTable[ArmState, Trigger] = TransitionTable("engagement", A.DISABLED, {
    (A.DISABLED, T.ENGAGE): A.ALIGNING,
    (A.HELD, T.ENGAGE): A.ALIGNING,
    (A.ALIGNING, T.ALIGNED): A.FOLLOWING,
    (A.ALIGNING, T.CLUTCH): A.CLUTCHED,
    (A.FOLLOWING, T.CLUTCH): A.CLUTCHED,
    (A.CAMERA, T.CLUTCH): A.CLUTCHED,
    (A.ALIGNING, T.CAMERA): A.CAMERA,
    (A.FOLLOWING, T.CAMERA): A.CAMERA,
    (A.CLUTCHED, T.CAMERA): A.CAMERA,
    (A.CLUTCHED, T.RELEASE): A.ALIGNING,
    (A.CAMERA, T.RELEASE): A.ALIGNING,
    (A.ALIGNING, T.HOLD): A.HELD,
    (A.FOLLOWING, T.HOLD): A.HELD,
    (A.CLUTCHED, T.HOLD): A.HELD,
    (A.CAMERA, T.HOLD): A.HELD,
    (A.HELD, T.HOLD): A.HELD,  # a new, different reason while held: recorded, still held
    (A.ALIGNING, T.DISENGAGE): A.DISABLED,
    (A.FOLLOWING, T.DISENGAGE): A.DISABLED,
    (A.CLUTCHED, T.DISENGAGE): A.DISABLED,
    (A.CAMERA, T.DISENGAGE): A.DISABLED,
    (A.HELD, T.DISENGAGE): A.DISABLED,
    (A.IDLE, T.DISENGAGE): A.DISABLED,
    # The arm swap (console/hands.py): the hand's arm is left idle, the idle one is taken and aligned first.
    (A.ALIGNING, T.SWAP_OUT): A.IDLE,
    (A.FOLLOWING, T.SWAP_OUT): A.IDLE,
    (A.CLUTCHED, T.SWAP_OUT): A.IDLE,
    (A.CAMERA, T.SWAP_OUT): A.IDLE,
    (A.IDLE, T.SWAP_IN): A.ALIGNING,
    (A.DISABLED, T.SWAP_IN): A.ALIGNING,
}, alarm={A.HELD})
del A, T

ENGAGED = frozenset({ArmState.ALIGNING, ArmState.FOLLOWING, ArmState.CLUTCHED, ArmState.CAMERA})
"""States a hold condition moves to HELD."""


class Engagement(StateMachine[ArmState, Trigger]):
    """One arm's state, the reason it is there and since when; the machine's name is the arm's."""

    def __init__(self, arm: str, now_ns: int = 0) -> None:
        super().__init__(TRANSITIONS, arm, now_ns, Reason.STARTUP, "not engaged", logger=log)
