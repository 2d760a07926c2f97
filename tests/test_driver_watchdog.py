"""The independent watchdog: an arm driver holds on its own when the bedside loop stops servicing it.

First the simulated arm alone on a clock the test moves (no thread, no sleep); then the agent on that clock;
then a real `BedsideServer` whose loop is blocked for 300 ms by a hook while a surgeon's stream is following,
with the arm sampled from another thread (docs/architecture.md, "The arm driver contract", the watchdog).
"""

from __future__ import annotations

import threading
import time

import pytest
import zmq
from conftest import ms

from base.config import load_config
from base.procs import free_ports, port_overrides
from base.runtime import StopFlag
from bedside.agent import BedsideAgent
from bedside.arm import DEFAULT_ARMS, SimulatedArm
from bedside.arm_driver import ServiceBound
from safety.limits import limits_from_config
from transport import codec
from transport.messages import (
    AckStatus,
    CartesianSetpoint,
    ConsoleFlags,
    Enable,
    EventKind,
    OperatingState,
    Reason,
    ServoCp,
)

PRESENT = ConsoleFlags.OPERATOR_PRESENT
BOUND_MS = 60


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.t = ms(1000)

    def __call__(self) -> int:
        return self.t


def moved(sp: CartesianSetpoint, dx: float) -> CartesianSetpoint:
    return CartesianSetpoint((sp.position[0] + dx, sp.position[1], sp.position[2]), sp.orientation, sp.jaw)


def _arm(cfg, clock: Clock) -> SimulatedArm:
    limits = limits_from_config(cfg.teleop, cfg.bedside)
    return SimulatedArm(DEFAULT_ARMS[0], limits, ServiceBound(ms(BOUND_MS), clock, thread=False))


def _run(arm: SimulatedArm, clock: Clock, dt_ms: float, step_ms: float = 1.0) -> None:
    """The loop servicing the arm every `step_ms` for `dt_ms`."""
    end = clock.t + ms(dt_ms)
    while clock.t < end:
        clock.t += ms(step_ms)
        arm.advance(step_ms / 1000)


def test_the_simulated_arm_holds_on_its_own_after_its_bound_without_service(cfg):
    clock = Clock()
    arm = _arm(cfg, clock)
    clock.t += ms(10_000)
    assert arm.watch() is None and arm.operating_state().held == ""  # not serviced yet: the loop never ran
    arm.enable()
    start = arm.measured_cp()
    arm.servo_cp(moved(start, 0.004))  # 16 ms of travel at 250 mm/s
    _run(arm, clock, 2)
    moving = arm.measured_cp()
    assert moving != start and arm.operating_state().is_busy
    clock.t += ms(BOUND_MS - 2)  # a tick 59 ms late, inside the bound: still serviced in time
    _run(arm, clock, 1)
    assert arm.operating_state().held == "" and arm.measured_cp() != moving
    moving = arm.measured_cp()
    assert arm.watch() == ms(BOUND_MS)  # the next deadline, one bound after the last service

    clock.t += ms(BOUND_MS + 1)  # the loop stalls; the arm's own watch (its thread) runs on its own clock
    assert arm.watch() is None
    st = arm.operating_state()
    assert st.held == f"held on its own after {BOUND_MS + 1:.1f} ms without service (driver watchdog {BOUND_MS} ms)"
    assert st.state is OperatingState.ENABLED and not st.is_busy
    assert arm.setpoint_cp() == arm.measured_cp() == moving  # stopped where it was, setpoint := measured

    clock.t += ms(240)
    _run(arm, clock, 10)  # the loop resumes: no catch-up toward the old setpoint
    arm.servo_cp(moved(moving, 0.002))  # nor does a command move it: held until the next enable
    _run(arm, clock, 10)
    assert arm.measured_cp() == moving and arm.setpoint_cp() == moving
    assert arm.operating_state().held.startswith(f"held on its own after {BOUND_MS + 1:.1f} ms")

    arm.enable()  # the surgeon engages again: judged from the held pose
    assert arm.operating_state().held == "" and arm.setpoint_cp() == moving
    arm.servo_cp(moved(moving, 0.002))
    _run(arm, clock, 20)
    assert arm.measured_cp() == moved(moving, 0.002)


def test_a_stall_that_starved_the_watch_thread_cannot_move_the_arm_when_the_loop_resumes(cfg):
    """The watch thread never ran (a stall holding the GIL): the first call after the stall judges the gap
    itself, before it integrates anything."""
    clock = Clock()
    arm = _arm(cfg, clock)
    arm.enable()
    start = arm.measured_cp()
    arm.servo_cp(moved(start, 0.004))
    _run(arm, clock, 1)
    at_stall = arm.measured_cp()
    clock.t += ms(300)
    arm.advance(0.01)  # the resumed loop's first tick, with the longest step the agent ever passes
    assert arm.measured_cp() == at_stall and arm.setpoint_cp() == at_stall
    assert "after 300.0 ms without service" in arm.operating_state().held


def test_without_a_clock_a_driver_has_no_watchdog(cfg):
    """Unit tests of the agent invent their time: their drivers must not hold on the host's clock."""
    arm = SimulatedArm(DEFAULT_ARMS[0], limits_from_config(cfg.teleop, cfg.bedside))
    assert arm.watch() is None
    arm.enable()
    assert arm.watch() is None and arm.operating_state().held == ""


class _Console:
    """Drives an agent like the socket loop, on one clock shared with its drivers."""

    def __init__(self, cfg) -> None:
        self.clock = Clock()
        self.agent = BedsideAgent(cfg.bedside, self.clock.t, first_epoch=7, driver_clock=self.clock)
        self.seq = 0

    def send(self, msg) -> AckStatus:
        return codec.decode(self.agent.on_message(self.clock.t, b"c", codec.encode(msg), "surgeon:s")[0].data).status

    def servo(self, sps, dt_ms: float = 1.0) -> AckStatus:
        self.clock.t += ms(dt_ms)
        self.seq += 1
        status = self.send(ServoCp(self.agent.epoch, self.seq, self.clock.t, PRESENT, 0b011, tuple(sps)))
        self.agent.tick(self.clock.t)
        return status

    def tools(self) -> list[CartesianSetpoint]:
        return [a.measured_cp() for a in self.agent.arms]


def test_the_agent_reports_a_drivers_hold_as_a_stall_and_ends_the_session(cfg):
    c = _Console(cfg)
    agent = c.agent
    c.seq += 1
    assert c.send(Enable(0, c.seq, c.clock.t)) is AckStatus.ENABLED
    home = c.tools()
    target = [moved(home[0], 0.004), *home[1:]]
    assert c.servo(target) is AckStatus.APPLIED
    before = c.tools()
    assert before[0] != home[0] and before[0] != target[0]  # on its way

    c.clock.t += ms(300)  # the loop stalls: no tick, no command read; the drivers hold at 60 ms
    agent.tick(c.clock.t)
    assert (agent.state, agent.reason) == (OperatingState.PAUSED, Reason.FAULT)
    text = agent.freezes[-1].text
    assert text.startswith("bedside loop stalled (300.0 ms since its last tick): PSM1 held on its own after")
    assert all(f"{a.name} held on its own" in text for a in agent.arms) and text.endswith("every arm held")
    assert len(agent.freezes) == 1 and agent.counters["driver_holds"] == 1  # the stall, not also LINK_LOST
    ev = [e for e in agent.drain_events() if e.kind is EventKind.STATE_CHANGE][-1]
    assert (ev.to_state, ev.reason, ev.text) == (OperatingState.PAUSED, Reason.FAULT, text)
    for _ in range(20):
        agent.tick(c.clock.t + ms(1))
        c.clock.t += ms(1)
    assert c.tools() == before  # nothing moved toward the old setpoint
    assert c.servo(target).rejected  # the session is over: the surgeon engages again

    c.seq += 1
    assert c.send(Enable(0, c.seq, c.clock.t)) is AckStatus.ENABLED
    assert all(a.operating_state().held == "" for a in agent.arms)
    assert [a.setpoint_cp() for a in agent.arms] == before  # judged from the held pose
    assert c.servo([moved(before[0], 0.001), *before[1:]]) is AckStatus.APPLIED
    assert len(agent.freezes) == 1


def test_a_stall_with_no_session_is_reported_and_changes_no_state(cfg):
    c = _Console(cfg)
    c.agent.tick(c.clock.t)  # the loop's first tick services the drivers: their watchdogs start
    c.clock.t += ms(200)
    c.agent.tick(c.clock.t)
    assert c.agent.state is OperatingState.DISABLED and not c.agent.freezes
    (ev,) = c.agent.drain_events()
    assert (ev.kind, ev.reason) == (EventKind.INFO, Reason.FAULT) and "bedside loop stalled (200.0 ms" in ev.text
    c.clock.t += ms(1)
    c.agent.tick(c.clock.t)
    assert not c.agent.drain_events()  # once


def test_the_driver_bound_is_never_below_the_agents_watchdog(cfg, key_overrides):
    """Any stall of the loop long enough for a driver to hold also silenced the agent's watchdog: a driver hold
    never ends a session the agent would have kept."""
    from base.config import ConfigError

    with pytest.raises(ConfigError, match=r"bedside\.driver_watchdog_ms: 40\.0 is below bedside\.watchdog_ms"):
        load_config(None, [*key_overrides, "bedside.driver_watchdog_ms=40"])
    assert cfg.bedside.driver_watchdog_ms >= cfg.bedside.watchdog_ms


# ---------------------------------------------------------------------- a real bedside loop, stalled on purpose


@pytest.mark.fault
def test_a_stalled_bedside_loop_holds_the_arms_on_their_own_and_reports_it(tmp_path, key_overrides, monkeypatch):
    """A surgeon's stream is following; one servo_cp gives PSM1 4 mm to go (16 ms at 250 mm/s), and the loop's
    step hook then blocks the step after the arms advanced for 300 ms. Sampled from another thread: the tool does
    not move during the stall, its driver holds on its own (setpoint := measured) while the loop is still
    blocked; when the loop resumes, the agent reports the stall as a FAULT freeze before it reads the commands
    that piled up, ends the session, and the tool has not moved."""
    import bedside.server as server_mod
    from transport.security import client_security
    from transport.zmqlink import control_client, tcp

    monkeypatch.setattr(server_mod, "realtime_gc", lambda: None)  # the test process's collector is not ours
    ctrl_port, telem_port = free_ports(2)
    cfg = load_config(None, [*key_overrides, *port_overrides(ctrl_port, telem_port), "bedside.realtime_priority=0",
                             f"logging.stall_dir={tmp_path / 'stalls'}"])
    log_path = tmp_path / "events.jsonl"
    stall = {"armed": False, "start": 0, "end": 0}
    target: tuple[CartesianSetpoint, ...] = ()

    def block_once(_now: int) -> None:  # the hook: one step of the loop blocks for 300 ms
        if stall["armed"] and not stall["start"] and psm1.setpoint_cp() == target[0]:
            stall["start"] = time.monotonic_ns()
            time.sleep(0.3)
            stall["end"] = time.monotonic_ns()

    server = server_mod.BedsideServer(cfg, event_log=str(log_path), video=False, step_hook=block_once)
    stop = StopFlag(install_signals=False)
    loop = threading.Thread(target=server.run, args=(stop,), name="bedside-loop", daemon=True)
    psm1 = server.agent.arms[0]
    samples: list[tuple[int, CartesianSetpoint, CartesianSetpoint, str]] = []
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            held = psm1.operating_state().held  # first: once it is set, the setpoint read after is the held one
            samples.append((time.monotonic_ns(), psm1.measured_cp(), psm1.setpoint_cp(), held))
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, name="sampler", daemon=True)
    keys_dir = key_overrides[0].split("=", 1)[1]
    sock = control_client(zmq.Context.instance(), tcp("127.0.0.1", ctrl_port), client_security(keys_dir, "surgeon"))
    seq = 0

    def request(msg) -> object:
        sock.send(codec.encode(msg))
        assert sock.poll(5000), "no ack from the bedside"
        return codec.decode(sock.recv())

    try:
        loop.start()
        sampler.start()
        seq += 1
        ack = request(Enable(0, seq, time.monotonic_ns()))
        assert ack.status is AckStatus.ENABLED
        epoch = ack.epoch
        home = tuple(a.measured_cp() for a in server.agent.arms)
        for _ in range(50):  # following: the same pose at 1 kHz
            seq += 1
            assert request(ServoCp(epoch, seq, time.monotonic_ns(), PRESENT, 0b1011, home)).status \
                is AckStatus.APPLIED
            time.sleep(0.001)
        seq += 1
        target = (moved(home[0], 0.004), *home[1:])
        stall["armed"] = True
        assert request(ServoCp(epoch, seq, time.monotonic_ns(), PRESENT, 0b1011, target)).status is AckStatus.APPLIED
        for _ in range(100):  # the console goes on streaming: these queue behind the stall
            seq += 1
            sock.send(codec.encode(ServoCp(epoch, seq, time.monotonic_ns(), PRESENT, 0b1011, target)))
            time.sleep(0.001)
        deadline = time.monotonic() + 5
        while server.agent.state is OperatingState.ENABLED and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # 100 ms of the resumed loop
    finally:
        sampling.set()
        sampler.join(2)
        stop.set()
        loop.join(5)
        sock.close(0)
        server.finish()

    assert stall["end"] > stall["start"] > 0, "the hook never blocked the loop"
    during = [s for s in samples if stall["start"] <= s[0] <= stall["end"]]
    assert len(during) > 10, "the sampler did not run during the stall"
    at_stall = during[0][1]
    assert during[0][2] == target[0] and at_stall != target[0]  # the tool had its way to go when the loop blocked
    assert all(m == at_stall for _, m, _, _ in during), "the tool moved during the stall"
    held = [s for s in during if s[3]]
    assert held, "the driver did not hold on its own while the loop was blocked"
    assert held[0][2] == at_stall  # setpoint := measured, by the driver's own thread
    after_ms = float(held[0][3].split("after ")[1].split(" ms")[0])
    assert BOUND_MS <= after_ms < 300
    assert all(m == at_stall for t, m, _, _ in samples if t >= stall["start"]), "the tool moved after the stall"

    assert (server.agent.state, server.agent.reason) == (OperatingState.PAUSED, Reason.FAULT)
    (freeze,) = server.agent.freezes
    assert freeze.reason is Reason.FAULT and freeze.text.startswith("bedside loop stalled (")
    assert "PSM1 held on its own after" in freeze.text
    assert server.agent.counters["driver_holds"] == 1 and server.agent.counters.get("backlog_executed", 0) == 0
    logged = log_path.read_text()
    assert '"type":"freeze"' in logged and "bedside loop stalled" in logged
