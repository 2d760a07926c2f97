"""ConsoleEngine against the real BedsideAgent, wired in memory with a fake clock: no sockets, no sleeps."""

from __future__ import annotations

from conftest import ms

from bedside.agent import BedsideAgent
from console.controller import TeleopController
from console.engine import ConsoleEngine, LinkState
from console.master import ScriptedMaster, pulse
from transport import codec
from transport.messages import AckStatus, Enable, EStop, OperatingState, Ping, Reason


class Wire:
    """Console and bedside logic joined by lists; `up`/`down` switch each direction of the link."""

    def __init__(self, cfg, script=(), engage_at_s: float = 0.3) -> None:
        self.t = 0
        self.agent = BedsideAgent(cfg.bedside, 0, first_epoch=40)
        self.engine = ConsoleEngine(cfg, TeleopController(cfg.teleop, 0), 0)
        self.master = ScriptedMaster("circle", 0, engage_at_s=engage_at_s, script=list(script))
        self.up = self.down = True
        self.held_telemetry: list[bytes] = []

    def run(self, dur_ms: float) -> None:
        end = self.t + ms(dur_ms)
        while self.t < end:
            self.t += ms(1)
            self.agent.tick(self.t)
            for frame in self.engine.step(self.t, self.master.read(self.t)):
                if self.up:
                    for out in self.agent.on_message(self.t, b"console", frame, "surgeon:test"):
                        if self.down:
                            self.engine.on_bytes(self.t, out.data)
            if self.t % ms(5) == 0 and self.down:
                self.engine.on_bytes(self.t, self.agent.telemetry(self.t))
            for ev in self.agent.drain_events():
                if self.down:
                    self.engine.on_bytes(self.t, codec.encode(ev))

    def arm_states(self) -> set[str]:
        """The states of the arms a hand or the camera drives (the idle instrument is never engaged)."""
        snap = self.engine.controller.snapshot()
        return {a["state"] for name, a in snap["arms"].items() if name != snap["idle"]}


def test_engage_handshake_then_following(cfg):
    w = Wire(cfg)
    w.run(200)
    assert w.engine.link is LinkState.UP and w.engine.epoch == 0
    w.run(400)
    assert w.engine.epoch == 40 and w.agent.state is OperatingState.ENABLED
    assert "FOLLOWING" in w.arm_states()
    sent, applied = w.engine.counters["commands_sent"], w.engine.counters["applied"]
    assert sent > 200 and applied == sent
    assert w.engine.rtt_ms() is not None and w.engine.offset_ns(w.t) == 0  # same fake clock both ends


def test_downlink_loss_holds_both_ends_and_return_needs_engage(cfg):
    w = Wire(cfg)
    w.run(700)
    assert "FOLLOWING" in w.arm_states()
    w.down = False  # acks and telemetry vanish; commands still arrive
    w.run(99)
    assert w.engine.link is LinkState.UP
    w.run(2)
    assert w.engine.link is LinkState.LOST and w.engine.epoch == 0
    assert w.arm_states() == {"HELD"}
    w.run(60)  # the console stopped commanding: the bedside's own watchdog fires too
    assert w.agent.state is OperatingState.PAUSED and w.agent.reason is Reason.LINK_LOST
    w.down = True
    w.run(500)
    assert w.engine.link is LinkState.UP
    assert w.arm_states() == {"HELD"} and w.agent.state is OperatingState.PAUSED  # nothing resumed by itself


def test_reengage_after_loss_starts_from_the_held_pose(cfg):
    w = Wire(cfg, script=pulse("engage", 2.0))
    w.run(700)
    w.down = False
    w.run(200)
    held = [a.measured for a in w.agent.arms]
    w.down = True
    w.run(1400)  # engage pressed again at 2.0 s
    assert w.engine.epoch == 41 and "FOLLOWING" in w.arm_states()
    first = [a.setpoint for a in w.agent.arms]
    for h, f in zip(held, first, strict=True):
        assert abs(h.position[0] - f.position[0]) < 0.01  # continuous motion from where it stopped
    assert w.agent.counters.get("rejected_rejected_step", 0) == 0  # the bedside never saw a jump


def test_old_telemetry_does_not_cancel_a_new_session(cfg):
    w = Wire(cfg)
    w.run(200)
    stale = w.agent.telemetry(w.t)  # published while DISABLED, before the ENABLE
    w.run(400)
    assert w.engine.epoch == 40
    w.engine.on_bytes(w.t, stale)  # arrives late on the other socket
    assert w.engine.epoch == 40 and w.engine.session_ready


def test_console_estop_reaches_the_bedside_and_latches(cfg):
    w = Wire(cfg, script=pulse("estop", 1.0, 0.2))
    w.run(1100)
    assert w.agent.estop and w.agent.state is OperatingState.PAUSED
    assert w.arm_states() == {"HELD"}
    w.run(1000)
    assert w.agent.state is OperatingState.PAUSED  # no engage, no reset: nothing moves


def test_a_refused_estop_reset_is_told_to_the_surgeon(cfg):
    """Another surgeon latched the bedside's console e-stop and is in control: this console's own press and reset
    leave that latch standing (REJECTED_NOT_CONTROLLER), and the surgeon is told why, not left guessing."""
    w = Wire(cfg, script=pulse("estop", 0.6, 0.1), engage_at_s=10.0)
    other = (b"ctl", "surgeon:other")
    assert codec.decode(w.agent.on_message(0, other[0], codec.encode(Enable(0, 1, 0)), other[1])[0].data).status \
        is AckStatus.ENABLED
    w.run(500)
    w.agent.on_message(w.t, other[0], codec.encode(EStop(0, 2, w.t, True)), other[1])
    w.run(300)  # this console presses its e-stop too
    w.agent.on_message(w.t, other[0], codec.encode(Ping(0, 3, w.t)), other[1])  # the controller is there
    w.engine.controller.reset_estop(w.t)
    w.run(50)
    assert w.agent.estop_console
    (ev,) = [e for e in w.engine.events if e.name == "reset_refused"]
    assert ev.source == "estop" and "another surgeon latched it" in ev.text
