"""An ideal bedside and engine around TeleopController, driven by injected time (shared by teleop tests).

`World` plays the engine's part: it builds the BedsideView, grants a session one tick after the controller
asks for one (if the link is up and no bedside e-stop), ends it when asked or when the link drops, and moves
each commanded arm exactly to its setpoint (an ideal arm: measured_cp = the last accepted setpoint). The
tests at the bottom check the harness itself.
"""

from __future__ import annotations

import dataclasses
import math

from base.config import TeleopConfig
from base.geometry import IDENTITY_Q, Pose, Quat, Vec3, v_add
from console.controller import BedsideView, TeleopController, TeleopOutput
from console.master import MasterButtons, MasterHand, MasterSample
from transport.messages import ECM_INDEX, N_ARMS, CartesianSetpoint, OperatingState, Reason

MS = 1_000_000
TOOLS0 = (
    CartesianSetpoint((0.08, 0.0, -0.10), IDENTITY_Q, 0.3),
    CartesianSetpoint((-0.08, 0.0, -0.10), IDENTITY_Q, 0.3),
    CartesianSetpoint((-0.06, 0.08, -0.10), IDENTITY_Q, 0.3),
    CartesianSetpoint((0.0, -0.06, -0.04), IDENTITY_Q, 0.0),
)
"""PSM1, PSM2, PSM3, ECM (wire order, transport.messages.ARM_NAMES)."""
ECM = ECM_INDEX
ECM_MASK = 1 << ECM_INDEX
HANDS0 = (Pose((0.08, 0.0, 0.0), IDENTITY_Q), Pose((-0.08, 0.0, 0.0), IDENTITY_Q))


def fast_cfg(**over) -> TeleopConfig:
    """Defaults, but short debounce/settle times so scenarios stay short."""
    base = dict(presence_on_ms=0.0, presence_off_ms=0.0, latency_settle_s=0.05, tremor_enabled=False)
    base.update(over)
    return TeleopConfig(**base)


class World:
    def __init__(self, cfg: TeleopConfig | None = None, tools=TOOLS0, hands=HANDS0, now_ns: int = 0) -> None:
        self.cfg = cfg or fast_cfg()
        self.ctl = TeleopController(self.cfg, now_ns)
        self.now = now_ns
        self.tools: list[CartesianSetpoint | None] = list(tools)
        self.hands: list[Pose] = list(hands)
        self.grippers = [0.3, 0.3]
        self.buttons = MasterButtons(operator_present=True)
        self.valid = True
        self.link_ok = True
        self.session = False
        self.rtt: float | None = 20.0
        self.bedside_estop = False
        self.bedside_state = OperatingState.DISABLED
        self.bedside_reason = Reason.STARTUP
        self.out: TeleopOutput | None = None
        self.events: list = []

    # ---------------------------------------------------------------- inputs

    def set(self, **buttons) -> None:
        self.buttons = dataclasses.replace(self.buttons, **buttons)

    def move(self, hand: int, delta: Vec3) -> None:
        self.hands[hand] = Pose(v_add(self.hands[hand].position, delta), self.hands[hand].orientation)

    def turn(self, hand: int, q: Quat) -> None:
        self.hands[hand] = Pose(self.hands[hand].position, q)

    def view(self) -> BedsideView:
        return BedsideView(self.link_ok, self.session and self.link_ok, self.rtt, tuple(self.tools),
                           self.bedside_state, self.bedside_reason, self.bedside_estop)

    def sample(self) -> MasterSample:
        hands = (MasterHand(self.hands[0], self.grippers[0]), MasterHand(self.hands[1], self.grippers[1]))
        return MasterSample(self.now, hands, self.buttons, self.valid)

    # ---------------------------------------------------------------- time

    def tick(self, n: int = 1, dt_ms: float = 1.0) -> TeleopOutput:
        for _ in range(n):
            out = self.ctl.step(self.now, self.sample(), self.view())
            self.apply(out)
            self.now += int(dt_ms * MS)
        assert self.out is not None
        return self.out

    def apply(self, out: TeleopOutput) -> None:
        self.out = out
        self.events.extend(out.events)
        if not self.link_ok:
            self.session = False
        if out.release_session:
            self.session = False
            self.bedside_state, self.bedside_reason = OperatingState.DISABLED, Reason.CONSOLE_REQUEST
        elif out.want_session and self.link_ok and not self.bedside_estop:
            self.session = True
            self.bedside_state, self.bedside_reason = OperatingState.ENABLED, Reason.NONE
        if self.session:
            for i in range(N_ARMS):
                if out.arm_mask >> i & 1:
                    self.tools[i] = out.setpoints[i]

    def press(self, name: str, n: int = 1) -> TeleopOutput:
        """Hold a momentary button for `n` ticks, then release it for one."""
        self.set(**{name: True})
        self.tick(n)
        self.set(**{name: False})
        return self.tick()

    def engage(self, settle: int = 3) -> TeleopOutput:
        self.press("engage")
        return self.tick(settle)

    def state(self, arm: str = "PSM1") -> str:
        return self.ctl.snapshot()["arms"][arm]["state"]

    def names(self) -> list[str]:
        return [e.name for e in self.events]


# ---------------------------------------------------------------------- the harness itself


def test_world_grants_a_session_and_moves_only_commanded_arms() -> None:
    w = World()
    w.engage()
    assert w.session and w.state("PSM1") == "FOLLOWING" and w.state("ECM") == "CLUTCHED"
    w.move(0, (0.01, 0.0, 0.0))
    w.tick(100)
    assert math.isclose(w.tools[0].position[0], 0.08 + 0.002, abs_tol=1e-9)
    assert w.tools[2] == TOOLS0[2] and w.tools[ECM] == TOOLS0[ECM]


def test_world_drops_the_session_with_the_link() -> None:
    w = World()
    w.engage()
    w.link_ok = False
    w.tick()
    assert not w.view().session_ready
