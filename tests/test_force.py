"""Force feedback (console/force.py), presence from the master, switching masters, SpaceMouse unplug: pure, with
injected time (no timing asserts: every bound here is on the injected clock)."""

from __future__ import annotations

import itertools
import math
from collections import deque

import pytest
from test_masters import FakeHid, report
from test_teleop_world import MS, World, fast_cfg

from base.geometry import IDENTITY_Q, q_from_axis_angle
from console.force import ForceFeedback, ForceSettings, PassivityPort, clamp_norm, hand_forces
from console.force_playout import ForcePlayout, ForceSample
from console.masters.spacemouse import SpaceMouseMaster

S = ForceSettings(gain=0.2, max_n=1.0, smoothing_hz=0.0, stale_ns=20 * MS, fade_ns=30 * MS, passivity=True)
STILL = ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0))


def _norm(v) -> float:
    return math.sqrt(sum(c * c for c in v))


def test_force_is_scaled_saturated_and_keeps_its_direction() -> None:
    ff = ForceFeedback(S)
    ff.on_force(0, 0, ((0.0, 2.0, 0.0), (0.0, 0.0, 0.0)))
    out = ff.step(1 * MS, STILL)
    assert out.forces[0] == pytest.approx((0.0, 0.4, 0.0)) and out.forces[1] == (0.0, 0.0, 0.0) and out.fresh
    ff.on_force(2 * MS, 2 * MS, ((3.0, 0.0, -4.0), (0.0, 0.0, 0.0)))  # 5 N at the tip -> 1 N (gain) -> saturated at 1
    f = ff.step(3 * MS, STILL).forces[0]
    assert _norm(f) == pytest.approx(1.0) and f == pytest.approx((0.6, 0.0, -0.8))
    big = ForceFeedback(ForceSettings(gain=1.0, max_n=0.5, smoothing_hz=0.0))
    big.on_force(0, 0, ((0.0, 0.0, 10.0), (0.0, 0.0, 0.0)))
    assert big.step(MS, STILL).forces[0] == pytest.approx((0.0, 0.0, 0.5))


def test_smoothing_low_passes_a_step() -> None:
    ff = ForceFeedback(ForceSettings(gain=1.0, max_n=10.0, smoothing_hz=50.0))
    ff.step(0, STILL)
    ys = []
    for t in range(1, 40):
        ff.on_force(t * MS, t * MS, ((0.0, 1.0, 0.0), (0.0, 0.0, 0.0)))
        ys.append(ff.step(t * MS, STILL).forces[0][1])
    assert 0.0 < ys[0] < 0.5 and all(a < b for a, b in itertools.pairwise(ys)) and ys[-1] > 0.95


def test_a_stalled_force_fades_to_zero_within_stale_plus_fade_and_never_holds() -> None:
    ff = ForceFeedback(S)
    ff.on_force(0, 0, ((0.0, 2.0, 0.0), (0.0, 0.0, 0.0)))
    mags = {t: _norm(ff.step(t * MS, STILL).forces[0]) for t in range(0, 80)}
    assert mags[20] == pytest.approx(0.4)  # fresh until the stale bound
    assert 0.0 < mags[35] < mags[25] < 0.4  # then fading, linearly
    assert all(mags[t] == 0.0 for t in range(50, 80))  # zero from stale + fade on: S.zero_after_ns
    assert S.zero_after_ns == 50 * MS
    assert not ff.step(80 * MS, STILL).fresh
    assert ForceFeedback(S).step(0, STILL).forces == ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0))  # nothing yet: zero


def test_no_velocity_from_the_device_means_no_force() -> None:
    ff = ForceFeedback(S)
    ff.on_force(0, 0, ((0.0, 2.0, 0.0), (0.0, 0.0, 0.0)))
    assert ff.step(MS, None).forces[0] == (0.0, 0.0, 0.0)


def test_hand_forces_rotate_through_the_camera_and_only_for_a_following_arm() -> None:
    cf = [(0.0, 0.0, 1.0), (0.0, 0.0, 2.0), (0.0, 0.0, 3.0), (0.0, 0.0, 0.0)]
    assert hand_forces(cf, (0, 1), (True, False), IDENTITY_Q) == ((0.0, 0.0, 1.0), (0.0, 0.0, 0.0))
    # Identity: the camera looks straight down, so the tissue pushing up (+z) pushes the hand toward the surgeon
    # (+z). A camera turned to look along the patient's +y with the patient's up as the screen's up: the tissue
    # pushing up is the camera's +y (up the screen), so the hand is pushed up, as it sees the tip pushed up.
    r_cam = q_from_axis_angle((1.0, 0.0, 0.0), math.pi / 2)
    f = hand_forces(cf, (2, 0), (True, True), r_cam)
    assert f[0] == pytest.approx((0.0, 3.0, 0.0), abs=1e-12) and f[1] == pytest.approx((0.0, 1.0, 0.0), abs=1e-12)
    assert clamp_norm((0.0, 0.0, 0.0), 1.0) == (0.0, 0.0, 0.0)


class DelayedWall:
    """A hand pressing into a virtual spring (k, N/m) in and out at 2 Hz, the spring's force reaching the force
    pipeline `delay` ticks late (a link): the classic delayed wall that creates energy."""

    def __init__(self, passivity: bool, delay: int, k: float = 300.0) -> None:
        self.ff = ForceFeedback(ForceSettings(gain=1.0, max_n=20.0, smoothing_hz=0.0, passivity=passivity))
        self.k, self.q = k, deque([(0.0, 0.0, 0.0)] * delay)

    def run(self, seconds: float = 3.0) -> float:
        x_prev = 0.0
        for i in range(int(seconds * 1000)):
            t = i * MS
            x = 0.01 * math.sin(2 * math.pi * 2.0 * i / 1000)  # y of the hand; y > 0 is inside the wall
            v = (x - x_prev) * 1000
            x_prev = x
            self.q.append((0.0, -self.k * x if x > 0 else 0.0, 0.0))  # the wall pushes the hand out (-y)
            self.ff.on_force(t, t, (self.q.popleft(), (0.0, 0.0, 0.0)))
            self.ff.step(t, ((0.0, v, 0.0), (0.0, 0.0, 0.0)))
        return self.ff.min_energy_j


def test_passivity_observer_sees_the_energy_a_delayed_wall_creates_and_the_controller_prevents_it() -> None:
    without = DelayedWall(passivity=False, delay=50).run()
    assert without < -1e-3  # energy created: the hand received more than it put in
    withpc = DelayedWall(passivity=True, delay=50)
    assert withpc.run() >= 0.0 and withpc.ff.ports[0].acted > 0
    assert DelayedWall(passivity=False, delay=0).run() >= -1e-9  # no delay: the wall is passive by itself


def test_passivity_port_adds_only_the_damping_needed_and_clamps() -> None:
    p = PassivityPort()
    f, acted = p.step((0.0, 1.0, 0.0), (0.0, 0.1, 0.0), 0.001, True, 10.0)  # would return 1e-4 J from nothing
    assert acted and p.energy_j == pytest.approx(0.0, abs=1e-12) and f[1] == pytest.approx(0.0, abs=1e-9)
    f, acted = p.step((0.0, -1.0, 0.0), (0.0, 0.1, 0.0), 0.001, True, 10.0)  # pushing against the hand: stored
    assert not acted and p.energy_j == pytest.approx(1e-4)


# ---------------------------------------------------------------------- force playout


def _bunched(n: int, one_way_ms: float, bunch: int) -> list[tuple[int, int]]:
    """(measured, arrival) of n samples measured every 1 ms that arrive `bunch` at a time (a late TCP segment
    holding back the ones behind it), `one_way_ms` after the first of each bunch."""
    out = []
    for i in range(n):
        first = (i // bunch) * bunch
        out.append((i * MS, int((first + bunch - 1 + one_way_ms) * MS)))
    return out


def _play(settings: ForceSettings, arrivals: list[tuple[int, int]], ticks: int, period: int = MS) -> list[int]:
    """Run a 1 kHz console over the arrivals: the measured time of every new sample the hands got."""
    ff, got, i, last = ForceFeedback(settings), [], 0, None
    for k in range(ticks):
        now = k * period
        while i < len(arrivals) and arrivals[i][1] <= now:
            ff.on_force(arrivals[i][1], arrivals[i][0], ((0.0, 0.0, 1.0), (0.0, 0.0, 0.0)))
            i += 1
        out = ff.step(now, STILL)
        if out.measured_ns and out.measured_ns != last:
            last = out.measured_ns
            got.append(out.measured_ns)
    return got


def test_the_playout_turns_bunched_arrivals_into_one_new_force_per_tick_in_order() -> None:
    arrivals = _bunched(3000, one_way_ms=100.0, bunch=3)
    without = _play(ForceSettings(playout_ns=0), arrivals, 3200)
    with_ = _play(ForceSettings(playout_ns=10 * MS), arrivals, 3200)
    assert len(without) < 1100  # the newest of each bunch: a third
    assert len(with_) > 2800 and with_ == sorted(with_)  # (nearly) every sample, one per tick, in order
    ff = ForceFeedback(ForceSettings(playout_ns=10 * MS))
    for m, a in arrivals[:2000]:
        ff.on_force(a, m, STILL)
    assert ff.playout.delay_ns == 2 * MS  # the bunch's spread: the earliest arrives 2 ms before the latest


def test_the_playout_delay_is_capped_and_never_builds_a_backlog() -> None:
    pp = ForcePlayout(max_delay_ns=3 * MS)
    arrivals = _bunched(2000, one_way_ms=50.0, bunch=20)  # a 19 ms spread: more than the cap
    got, i, ages = [], 0, []
    for k in range(2200):
        now = k * MS
        while i < len(arrivals) and arrivals[i][1] <= now:
            pp.push(ForceSample(arrivals[i][0], arrivals[i][1], STILL))
            i += 1
        s = pp.pop(now)
        if s is not None:
            got.append(s.measured_ns)
            ages.append(now - s.measured_ns)
    assert pp.delay_ns == 3 * MS and got == sorted(got)
    assert max(ages[500:]) <= 50 * MS + pp.delay_ns + 19 * MS + 2 * MS + MS  # transit + cap + bunch + late + tick
    assert pp.skipped_late > 0  # late samples skipped rather than queued


def test_the_playout_drops_duplicates_and_old_samples_and_passes_untimed_ones_at_once() -> None:
    pp = ForcePlayout(max_delay_ns=10 * MS)
    pp.push(ForceSample(5 * MS, 6 * MS, STILL))
    pp.push(ForceSample(5 * MS, 6 * MS, STILL))  # the same telemetry again (another path)
    pp.push(ForceSample(4 * MS, 7 * MS, STILL))  # older than the last
    assert pp.dropped_old == 2
    assert pp.pop(6 * MS).measured_ns == 5 * MS and pp.pop(7 * MS) is None
    pp.push(ForceSample(123, 9 * MS, STILL), timed=False)  # the bedside's clock not known yet: no playout
    assert pp.pop(9 * MS).rx_ns == 9 * MS


def test_a_stalled_force_stream_still_fades_on_time_through_the_playout() -> None:
    ff = ForceFeedback(ForceSettings(gain=1.0, max_n=10.0, smoothing_hz=0.0, playout_ns=10 * MS))
    for t in range(100):  # 100 ms of samples, 30 ms transit, arriving in pairs
        ff.on_force((t // 2 * 2 + 31) * MS, t * MS, ((0.0, 1.0, 0.0), (0.0, 0.0, 0.0)))
    last_rx = 129 * MS
    assert ff.step(last_rx + 5 * MS, STILL).forces[0][1] > 0.0
    assert ff.step(last_rx + ff.s.zero_after_ns, STILL).forces[0] == (0.0, 0.0, 0.0)


# ---------------------------------------------------------------------- presence from the master


def test_a_deadman_release_holds_on_the_same_tick() -> None:
    w = World(fast_cfg(presence_off_ms=30.0))
    w.engage()
    assert w.state() == "FOLLOWING"
    w.set(operator_present=False)
    s = w.sample()
    from dataclasses import replace

    out = w.ctl.step(w.now, replace(s, presence_immediate=True), w.view())
    assert out.arm_mask & 1 == 0 and w.state() == "HELD"


def test_a_flickering_head_sensor_is_still_debounced() -> None:
    w = World(fast_cfg(presence_off_ms=30.0))
    w.engage()
    w.set(operator_present=False)
    w.tick(5)
    assert w.state() == "FOLLOWING"  # 5 ms < 30 ms: a flicker rides through


# ---------------------------------------------------------------------- switching masters


def test_switching_masters_holds_and_only_a_new_engage_press_re_aligns() -> None:
    w = World()
    w.engage()
    assert w.state() == "FOLLOWING"
    w.set(engage=True)  # the new master happens to hold engage at the switch
    w.ctl.master_changed(w.now, "master switched from a to b")
    w.hands[0] = type(w.hands[0])((0.3, 0.2, 0.1), w.hands[0].orientation)  # the new device's hand is elsewhere
    tool = w.tools[0]
    w.tick(10)
    assert w.state() == "HELD" and w.tools[0] == tool  # no jump, no engage from the held button
    assert "master switched" in w.names()
    w.set(engage=False)
    w.tick()
    w.engage()
    assert w.state() == "FOLLOWING" and w.tools[0] == tool  # re-captured where the tool is: nothing moved


# ---------------------------------------------------------------------- SpaceMouse faults


def test_spacemouse_stale_deflection_is_a_fault_and_clears_with_reports() -> None:
    dev = FakeHid([report(1, 350, 0, 0)])
    sm = SpaceMouseMaster(device=dev, stale_ms=100.0, deadband=0.0)
    assert sm.read(0).valid
    assert sm.read(50 * MS).valid
    s = sm.read(101 * MS)
    assert not s.valid and "silent for 101 ms" in s.fault and "press engage" in s.fault
    p = s.hands[0].pose.position
    assert sm.read(200 * MS).hands[0].pose.position == p  # a stale deflection no longer moves the hand
    dev.reports.append(report(1, 0, 0, 0))
    assert sm.read(210 * MS).valid


def test_spacemouse_unplug_faults_with_guidance_and_a_replug_reopens() -> None:
    dev = FakeHid([bytes([3, 0b01])])
    new = FakeHid([])
    plugged = [False]

    def opener():
        if not plugged[0]:
            from console.master import MasterError

            raise MasterError("no 3Dconnexion SpaceMouse found")
        return new

    sm = SpaceMouseMaster(device=dev, opener=opener)
    assert sm.read(0).buttons.operator_present and sm.read(0).presence_immediate
    dev.fail = True
    s = sm.read(MS)
    assert not s.valid and "unplugged" in s.fault and "plug it back in" in s.fault
    assert not s.buttons.operator_present
    assert not sm.read(1500 * MS).valid  # retried once a second, still absent
    plugged[0] = True
    assert sm.read(2600 * MS).valid and sm.reopened == 1 and sm.dev is new and dev.closed


# ---------------------------------------------------------------------- selection


def test_the_configuration_keeps_the_window_and_a_bridge_on_different_ports() -> None:
    from base.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="two masters would drive at once"):
        load_config(None, ["console.bridge_endpoint=tcp://127.0.0.1:5580"])
    with pytest.raises(ConfigError, match="its own port"):
        load_config(None, ["console.bridge_endpoint=tcp://127.0.0.1:6000",
                           "console.bridge_force_endpoint=tcp://127.0.0.1:6000"])
    with pytest.raises(ConfigError, match="not a ZeroMQ endpoint"):
        load_config(None, ["console.bridge_endpoint=localhost:6000"])
    with pytest.raises(ConfigError, match=r"console\.force_max_n"):
        load_config(None, ["console.force_max_n=100"])


def test_make_master_resolves_auto_and_refuses_the_keyboard_without_a_window() -> None:
    from base.config import load_config
    from console.master import MasterError, ScriptedMaster
    from console.runner import make_master, master_kind

    cfg = load_config(None, [])
    assert master_kind(cfg, ui=False) == "circle" and master_kind(cfg, ui=True) == "keyboard"
    assert isinstance(make_master(cfg, 0), ScriptedMaster)
    with pytest.raises(MasterError, match="open the window"):
        make_master(load_config(None, ["console.master=keyboard"]), 0, ui=False)


def test_passivity_holds_for_a_hand_creeping_at_a_micrometre_per_second() -> None:
    p = PassivityPort()
    for _ in range(1000):
        f, _ = p.step((0.0, 0.4, 0.0), (0.0, 1e-6, 0.0), 0.001, True, 3.0)
        assert math.sqrt(sum(c * c for c in f)) <= 3.0
    assert p.min_energy_j >= 0.0
