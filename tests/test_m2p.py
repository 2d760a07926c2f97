"""Motion-to-photon analysis (video/m2p.py) on synthetic inputs: matching commands to the frames that show them,
the breakdown adding up, the optical probe and the agreement check. No clocks, no timing asserts."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from transport.video_wire import Layout, SceneStamp
from video.framecode import draw_code
from video.m2p import (
    STAGES,
    Commands,
    Painted,
    PaintLog,
    Step,
    crop,
    find_band,
    first_showing,
    metadata_m2p,
    optical_steps,
    stages,
    tip_x,
)

MS = 1_000_000
EPOCH = 77
RED = (60, 70, 200)  # BGR tissue
STEEL = (150, 150, 156)


def paint(paint_ns: int, seq: int, epoch: int = EPOCH, probe: float | None = None, fps: int = 60,
          send_of=None) -> Painted:
    """A frame stamped with command `seq`, whose stages are fixed: net 1 ms each way, apply 0.5 ms, render 3 ms,
    encode 8 ms, decode 4 ms, paint 3 ms; `send_of(seq)` gives the console's send time of that command."""
    sent = send_of(seq) if send_of else paint_ns - 30 * MS
    rx = sent + 1 * MS
    state = rx + MS // 2
    capture = state + MS // 4
    enc_done = capture + 3 * MS + 8 * MS
    received = enc_done + 1 * MS
    decoded = received + 4 * MS
    return Painted(decoded + 3 * MS if send_of else paint_ns, 500, seq, seq, fps, 1280, 720, capture, enc_done,
                   received, decoded, 1, state, epoch, seq, sent, rx, 3000, probe)


def test_first_frame_showing_each_command():
    cmds = Commands.of([(EPOCH, n, n * MS, 0.0) for n in range(1, 11)] + [(5, 1, 20 * MS, 0.0)])
    paints = [paint(40 * MS, 3), paint(56 * MS, 3), paint(73 * MS, 7), paint(90 * MS, 12)]
    first = first_showing(cmds, paints)
    by_seq = {(int(e), int(s)): int(i) for e, s, i in zip(cmds.epoch, cmds.seq, first, strict=True)}
    assert [by_seq[(EPOCH, n)] for n in range(1, 11)] == [0, 0, 0, 2, 2, 2, 2, 3, 3, 3]
    assert by_seq[(5, 1)] == -1  # another session's command is never shown by this one's frames


def test_a_frame_painted_out_of_order_does_not_show_an_older_command_late():
    """The newest command shown so far counts: a frame stamped lower after a higher one shows nothing new."""
    cmds = Commands.of([(EPOCH, n, n * MS, 0.0) for n in (5, 6)])
    first = first_showing(cmds, [paint(40 * MS, 6), paint(50 * MS, 5)])
    assert first.tolist() == [0, 0]


def test_stages_add_up_to_motion_to_photon():
    p = paint(0, 50, send_of=lambda s: s * MS)
    for cmd_seq in (41, 50):
        parts = stages(cmd_seq * MS, p)
        assert set(parts) == set(STAGES)
        assert sum(parts.values()) == p.paint_ns - cmd_seq * MS
    parts = stages(50 * MS, p)
    assert parts["network_out"] == MS and parts["render"] == 3 * MS and parts["encode"] == 8 * MS
    assert parts["wait_render"] == MS // 4  # the frame's own command waited only for the state read
    assert stages(41 * MS, p)["wait_render"] == MS // 4 + 9 * MS  # an older command waited for this frame


def test_metadata_m2p_of_a_steady_pipeline():
    """Commands at 1 kHz, a frame every 16 ms drawn from the newest command: m2p = fixed pipeline + the wait."""
    send_of = lambda s: s * MS  # noqa: E731
    cmds = Commands.of([(EPOCH, n, n * MS, 0.0) for n in range(1, 1001)])
    paints = [paint(0, seq, send_of=send_of) for seq in range(16, 1001, 16)]
    r = metadata_m2p(cmds, paints, 100 * MS, 900 * MS)
    fixed = 1 + 0.5 + 0.25 + 3 + 8 + 1 + 4 + 3  # ms
    assert r["commands"] == 800 and r["commands_shown"] == 800 and r["commands_never_shown"] == 0
    assert r["m2p_ms"]["max"] == pytest.approx(fixed + 15, abs=0.01)  # the command just after a frame's read
    assert fixed <= r["m2p_ms"]["p50"] <= fixed + 15
    assert r["newest_command_m2p_ms"]["p50"] == pytest.approx(fixed, abs=0.01)
    means = sum(v["mean"] for v in r["breakdown_ms"].values())
    assert means == pytest.approx(r["m2p_ms"]["mean"], abs=0.05)
    assert r["breakdown_ms"]["decode"]["p50"] == pytest.approx(4.0)


def test_commands_after_the_last_frame_are_counted_as_never_shown():
    cmds = Commands.of([(EPOCH, n, n * MS, 0.0) for n in range(1, 41)])
    r = metadata_m2p(cmds, [paint(0, 16, send_of=lambda s: s * MS)], 0, 100 * MS)
    assert r["commands_shown"] == 16 and r["commands_never_shown"] == 24


def test_paint_log_is_bounded_and_keeps_the_stamp():
    log = PaintLog(maxlen=3)
    stamp = SceneStamp(9, 100, 4, EPOCH, 42, 10, 20, 3000)
    for k in range(5):
        view = SimpleNamespace(stamp=stamp, image=np.zeros((720, 2560, 3), np.uint8), layout=Layout.SIDE_BY_SIDE,
                               seq=k, frame_id=k, fps=60, capture_ns=1, send_ns=2, received_ns=3, decoded_ns=4)
        log.add(view, 1000 + k, 2500)
    assert len(log.records) == 3 and log.overwritten == 2
    r = log.records[-1]
    assert (r.paint_ns, r.paint_us, r.eye_w, r.eye_h, r.applied_seq, r.applied_send_ns) == (1004, 2, 1280, 720, 42, 10)
    assert r.probe is None


# ------------------------------------------------------------------------------------------------ optical


def eye(bar_x: int, w: int = 640, h: int = 360, code: int = 0) -> np.ndarray:
    img = np.empty((h, w, 3), np.uint8)
    img[:] = RED
    img[150:330, bar_x : bar_x + 12] = STEEL  # an instrument, vertical
    draw_code(img, code, 16)
    return img


def test_tip_x_finds_the_gray_instrument_on_red_tissue():
    band = eye(300)[200:230, 200:400]
    assert tip_x(band) == pytest.approx((100 + 6) / 200, abs=0.01)
    assert tip_x(np.full((30, 200, 3), RED, np.uint8)) is None


def test_find_band_follows_the_moved_instrument_not_the_frame_counter():
    a, b = eye(300, code=1), eye(360, code=2)  # the counter changes between the two pictures, as it does
    band = find_band(a, b)
    assert band is not None
    y0, y1, x0, x1 = band
    assert 150 / 360 <= y0 < y1 <= 330 / 360
    assert x0 * 640 <= 300 and x1 * 640 >= 372
    lo, hi = tip_x(crop(a, band)), tip_x(crop(b, band))
    assert lo is not None and hi is not None and hi > lo
    assert find_band(a, eye(300, code=5)) is None  # nothing moved but the counter


def _step_run(optical_lag_frames: int) -> tuple[Commands, list[Painted], list[Step]]:
    """One 6 mm step at t = 100 ms, ramped by the console at 0.15 mm per 1 ms command; frames every 16 ms show
    the newest command; the probe sees the position of the command `optical_lag_frames` frames older."""
    def x_of(seq: int) -> float:
        return min(0.006, max(0.0, (seq - 100) * 0.00015))
    cmds = Commands.of([(EPOCH, n, n * MS, x_of(n)) for n in range(1, 901)])
    paints = []
    seqs = list(range(16, 901, 16))
    for k, seq in enumerate(seqs):
        seen = seqs[max(0, k - optical_lag_frames)]
        paints.append(paint(0, seq, probe=0.2 + 0.5 * x_of(seen) / 0.006, send_of=lambda s: s * MS))
    t_end = 900 * MS
    return cmds, paints, [Step(100 * MS, t_end)]


def test_optical_and_metadata_agree_when_the_pixels_show_what_the_stamp_says():
    cmds, paints, steps = _step_run(0)
    r = optical_steps(cmds, paints, steps)
    assert r["measured"] == 1 and r["all_agree"]
    assert r["per_step"][0]["frames_apart"] == 0
    assert r["optical_ms"]["p50"] == r["metadata_ms"]["p50"]


def test_optical_check_catches_stamps_that_run_ahead_of_the_pixels():
    cmds, paints, steps = _step_run(2)  # the picture lags its stamp by two frames: a lie the check must catch
    r = optical_steps(cmds, paints, steps)
    assert r["measured"] == 1 and not r["all_agree"]
    assert r["per_step"][0]["frames_apart"] == 2


def test_a_step_the_pixels_never_show_is_skipped_not_counted():
    cmds, paints, steps = _step_run(0)
    still = [Painted(**{**{k: getattr(p, k) for k in p.__slots__}, "probe": 0.3}) for p in paints]
    r = optical_steps(cmds, still, steps)
    assert r["measured"] == 0 and r["skipped"] == {"tip not seen to move": 1} and not r["all_agree"]


def test_find_band_across_a_change_of_picture_size():
    """The adaptive video may change the picture size between the two rest pictures: the band is still found,
    in fractions of the eye, so it applies at any size."""
    a = eye(300, w=1280, h=720)
    a[:] = RED
    a[300:660, 600:624] = STEEL  # the same scene as eye(300) at twice the size
    band = find_band(a, eye(360, code=2))
    assert band is not None
    y0, y1, x0, x1 = band
    assert 150 / 360 <= y0 < y1 <= 330 / 360 and x0 * 640 <= 300 and x1 * 640 >= 372


def test_a_step_cut_by_a_hold_is_skipped_not_counted():
    cmds, paints, steps = _step_run(0)
    keep = (cmds.send_ns < 110 * MS) | (cmds.send_ns > 300 * MS)  # the arm held from 110 to 300 ms
    cut = Commands(cmds.epoch[keep], cmds.seq[keep], cmds.send_ns[keep], cmds.x[keep])
    r = optical_steps(cut, paints, steps)
    assert r["measured"] == 0 and r["skipped"] == {"arm not following throughout": 1}
