"""QA session loading: catalogue → time-indexed columns, console/bedside alignment, torn files, events,
and the pure parts of the re-drive (comparison, re-stamping)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from qa.redrive import Comparison, RecCommand, Restamper, compare, plan
from qa.session import Session, classify_console, envelope
from qa.synth import synthesize
from transport import codec
from transport.messages import Ack, AckStatus, Enable, OperatingState, Reason, ServoCp

OFFSET = 5_000_000_000


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    """A 6-s console + bedside pair, bedside clock 5 s ahead, small H.264 video."""
    return synthesize(tmp_path_factory.mktemp("rec"), seconds=6.0, offset_ns=OFFSET)


def test_loads_both_roles_on_the_console_clock(rec):
    s = Session([rec.bedside, rec.console])
    assert s.roles == ("console", "bedside") and s.clock == "console"
    assert 5.9 < s.duration_s < 6.1
    assert len(s.commands("console")) == len(s.commands("bedside")) > 5000
    assert s.telemetry("bedside")["pos"].shape[1:] == (4, 3)  # PSM1, PSM2, PSM3, ECM
    assert set(s.link()["hands"]) == {"PSM1/PSM2"}


def test_bedside_times_are_aligned_by_the_clock_offset(rec):
    s = Session([rec.console, rec.bedside])
    con, bed = s.commands("console"), s.commands("bedside")
    # the same command: sent by the console, received 0.3 ms later by the bedside (5 s ahead) -> ≈ 0.3 ms later
    d = (bed["t"] - con["t"]) / 1e6
    assert np.all(np.abs(d - 0.3) < 0.05)
    # bedside telemetry and the console's copy of it: one-way delay apart
    tb, tc = s.telemetry("bedside")["t"], s.telemetry("console")["t"]
    assert np.all(np.abs((tc - tb) / 1e6 - 0.3) < 0.05)


def test_bedside_alone_keeps_its_own_clock(rec):
    s = Session([rec.bedside])
    assert s.clock == "bedside"
    assert s.commands("bedside")["t"][0] > rec.bedside_t0_ns


def test_a_file_cut_short_still_loads(rec, tmp_path):
    cut = tmp_path / "console-cut.mcap"
    shutil.copy(rec.console, cut)
    size = cut.stat().st_size
    with open(cut, "r+b") as f:
        f.truncate(int(size * 0.6))  # SIGKILL mid-chunk: no summary, no footer, a torn record
    s = Session([cut])
    assert s.files[0].truncated
    n = len(s.commands("console"))
    assert 1000 < n < len(Session([rec.console]).commands("console"))


def test_events_cover_engagement_clutch_freeze_limit(rec):
    s = Session([rec.console, rec.bedside])
    kinds = {e.kind for e in s.events()}
    assert {"engagement", "clutch", "freeze", "hold", "limit"} <= kinds
    fz = [e for e in s.events() if e.kind == "freeze"]
    assert len(fz) == 1 and 49.0 <= fz[0].latency_ms <= 52.0
    assert s.seconds(fz[0].t_ns) == pytest.approx(2.65, abs=0.01)
    ts = [e.t_ns for e in s.events()]
    assert ts == sorted(ts)


def test_clutches_come_from_command_flags_without_console_events(rec):
    s = Session([rec.bedside])
    cl = [e for e in s.events() if e.kind == "clutch"]
    assert [e.name for e in cl] == ["clutch down", "clutch up"]
    assert s.seconds(cl[0].t_ns) == pytest.approx(1.2, abs=0.01)


@pytest.mark.parametrize(("ev", "kind"), [
    ({"source": "teleop", "name": "PSM1 ALIGNING->FOLLOWING"}, "engagement"),
    ({"source": "teleop", "name": "PSM2 FOLLOWING->CLUTCHED"}, "clutch"),
    ({"source": "teleop", "name": "PSM1 FOLLOWING->HELD", "reason": "VIDEO_STALE"}, "hold"),
    ({"source": "teleop", "name": "PSM1 limit speed"}, "limit"),
    ({"source": "link", "name": "LOST"}, "alarm"),
    ({"source": "ui", "name": "VIDEO STALE"}, "alarm"),
    ({"source": "teleop", "name": "scale"}, "info"),
    ({"source": "teleop", "name": "swap"}, "engagement"),
    ({"source": "teleop", "name": "swap refused"}, "refusal"),
    ({"source": "teleop", "name": "engage refused", "reason": "OPERATOR_ABSENT"}, "refusal"),  # not a limit
    ({"source": "teleop", "name": "ECM CLUTCHED->HELD", "reason": "VIDEO_STALE"}, "hold"),  # not a clutch
    ({"source": "video", "name": "stale", "reason": "VIDEO_STALE"}, "video"),
])
def test_console_event_kinds(ev, kind):
    assert classify_console(ev) == kind


def test_envelope_keeps_spikes():
    x = np.arange(100_000, dtype=float)
    y = np.zeros_like(x)
    y[54_321] = 9.0
    ex, ey = envelope(x, y, bins=500)
    assert ex.size <= 1000 and ey.max() == 9.0


def test_compare_finds_the_lag_and_the_error():
    t = np.arange(0, 2_000_000_000, 5_000_000)
    pos = np.zeros((t.size, 3, 3))
    pos[:, 0, 0] = 0.03 * np.sin(t / 1e9)  # 30 mm/s peak
    same = compare(t, pos, t + 3_000_000, np.roll(pos, 0, axis=0) * 1.0, tolerance_mm=1.0)
    assert isinstance(same, Comparison)
    assert same.lag_ms == pytest.approx(3.0, abs=0.6) and same.ok
    off = pos.copy()
    off[200:, 0, 1] += 0.002  # 2 mm off after 1 s
    bad = compare(t, pos, t, off, tolerance_mm=1.0)
    assert not bad.ok and bad.per_arm["PSM1"]["max_mm"] == pytest.approx(2.0, abs=0.01)


def test_restamper_uses_the_granted_epoch_and_its_own_sequence():
    rs = Restamper()
    m = codec.decode(rs.build(RecCommand(0, "enable", 77), 1000))
    assert isinstance(m, Enable) and rs.awaiting_enable
    rs.on_ack(Ack(555, 1, 2000, m.seq, 1000, 1500, AckStatus.ENABLED, OperatingState.ENABLED, Reason.NONE))
    assert rs.epoch == 555 and not rs.awaiting_enable
    from transport.messages import HOLD_SETPOINT, CartesianSetpoint
    sp = CartesianSetpoint((0.1, 0.0, -0.1), (0.0, 0.0, 0.0, 1.0), 0.4)
    s = codec.decode(rs.build(RecCommand(5, "servo_cp", 77, 1, 0b001, (sp, *(HOLD_SETPOINT,) * 3)), 3000))
    assert isinstance(s, ServoCp)
    assert (s.epoch, s.seq, s.send_ns, s.arm_mask) == (555, 2, 3000, 1)
    assert s.arms[0].position == pytest.approx(sp.position) and s.arms[0].jaw == pytest.approx(0.4)


def test_plan_prefers_the_bedside_record(rec):
    p = plan(Session([rec.console, rec.bedside]))
    assert p.role == "bedside" and p.recorded_freezes == 1
    assert p.commands[0].t_rel_ns == 0 and p.arms_commanded == ("PSM1", "PSM2")
    assert sum(c.kind == "enable" for c in p.commands) == 2
