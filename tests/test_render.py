"""The rendered endoscope (video/scene.py, video/render.py, video/rendered.py): projection and disparity, the view
following the endoscope arm, jaws that open, occlusion by depth, and the stamp every frame carries."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from base.config import Config
from base.geometry import q_from_axis_angle
from safety.tissue import Tissue
from transport.bedside_state import ArmState, BedsideState, StateWriter, pack, unpack
from transport.messages import ARM_NAMES, ArmMode, CartesianSetpoint
from transport.video_wire import NO_STAMP
from video import scene
from video.render import CAMERA_ARM, SceneRenderer
from video.rendered import RenderedStereo, renderer_from_config

W, H = 640, 360
CAM = scene.StereoCamera(W, H, hfov_deg=75.0, baseline_m=0.005)
TISSUE = Tissue(-0.100, 300.0, 2.0, 0.010)
INSTRUMENTS = [n for n in ARM_NAMES if n != CAMERA_ARM]
UP = q_from_axis_angle((1.0, 0.0, 0.0), math.pi / 2)  # the tool points along +y: up in the image
AWAY = CartesianSetpoint((0.0, 0.0, 0.5))  # behind the camera: not drawn


def renderer() -> SceneRenderer:
    rcms = {n: (0.0, 0.0, 0.0) for n in ARM_NAMES}
    return SceneRenderer(CAM, TISSUE, rcms, (0.0, 0.0))


def state(tools: dict[str, CartesianSetpoint], camera: CartesianSetpoint | None = None, seq: int = 1) -> BedsideState:
    arms = []
    for n in ARM_NAMES:
        sp = (camera or CartesianSetpoint()) if n == CAMERA_ARM else tools.get(n, AWAY)
        arms.append(ArmState(ArmMode.FOLLOWING, sp, TISSUE.force(sp.position, (0.0, 0.0, 0.0))))
    return BedsideState(seq, 0, 0, 0, 0, 0, 0, tuple(arms))


def upright(r: SceneRenderer, name: str, tip: tuple[float, float, float], jaw: float = 0.0) -> CartesianSetpoint:
    """An instrument lying in the plane at the tip's depth, pointing up in the image: its shaft comes from 80 mm below
    the tip (the RCM), so the whole tool is at one depth."""
    r.rcms[name] = (tip[0], tip[1] - 0.08, tip[2])
    return CartesianSetpoint(tip, UP, jaw)


def eyes(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return img[:, :W], img[:, W:]


def changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(int) - b.astype(int)).sum(axis=2) > 30


def test_a_known_point_projects_to_the_expected_pixel_in_each_eye_with_the_expected_disparity():
    left, right = scene.eyes(CAM, CartesianSetpoint((0.0, 0.0, 0.0)))
    f, b, z = CAM.focal_px, CAM.baseline_m, 0.05
    p = (0.010, 0.004, -z)
    ul, vl, zl = scene.project_point(CAM, left, p)
    ur, vr, zr = scene.project_point(CAM, right, p)
    assert ul == pytest.approx(W / 2 + f * (0.010 + b / 2) / z)
    assert ur == pytest.approx(W / 2 + f * (0.010 - b / 2) / z)
    assert vl == vr == pytest.approx(H / 2 - f * 0.004 / z)
    assert zl == zr == pytest.approx(z)
    assert ul - ur == pytest.approx(CAM.disparity_px(z)) == pytest.approx(f * b / z)
    # farther points have less disparity
    assert CAM.disparity_px(0.1) == pytest.approx(CAM.disparity_px(0.05) / 2)


def test_a_rendered_instrument_appears_where_its_pose_projects_in_each_eye():
    r = renderer()
    tip = (0.004, 0.0, -0.05)
    tool = upright(r, INSTRUMENTS[0], tip)
    background = r.render(state({}), 0, 0)
    img = r.render(state({INSTRUMENTS[0]: tool}), 0, 0)
    lc, rc = (changed(a, b) for a, b in zip(eyes(img), eyes(background), strict=True))
    g = scene.instrument(r.rcms[INSTRUMENTS[0]], tool)
    mid = tuple((g.pivot + g.tip) / 2)  # halfway along the closed jaws
    le, re = scene.eyes(CAM, CartesianSetpoint())
    ul, vl, _ = scene.project_point(CAM, le, mid)
    ur, vr, _ = scene.project_point(CAM, re, mid)
    d = CAM.disparity_px(0.05)
    assert ul - ur == pytest.approx(d)
    assert lc[round(vl), round(ul)] and rc[round(vr), round(ur)]  # the jaws, where the pose projects
    assert not rc[round(vl), round(ul)]  # and not at the left eye's column: the right eye sees it d px left
    # the tool's columns in each eye differ by the disparity (one depth: every part shifts alike)
    cols_l, cols_r = np.nonzero(lc.any(axis=0))[0], np.nonzero(rc.any(axis=0))[0]
    assert (cols_l.mean() - cols_r.mean()) == pytest.approx(d, abs=1.0)


def test_moving_the_endoscope_moves_the_view():
    r = renderer()
    tool = upright(r, INSTRUMENTS[0], (0.0, 0.0, -0.05))
    a = r.render(state({INSTRUMENTS[0]: tool}), 0, 0)
    b = r.render(state({INSTRUMENTS[0]: tool}, CartesianSetpoint((0.004, 0.0, 0.0))), 0, 0)
    assert r.background_warps == 2  # the tissue was warped again for the new camera pose
    la, lb = eyes(a)[0], eyes(b)[0]
    # the tissue (100 mm away) slides left by f·4 mm/100 mm; rows below the instrument and the counter, smoothed
    # (several texels fall in one pixel here: nearest sampling picks others after a fractional shift)
    shift = round(CAM.focal_px * 0.004 / 0.1)
    rows = slice(H - 70, H - 30)
    sa, sb = (cv2.GaussianBlur(x, (9, 9), 3).astype(int) for x in (la, lb))
    same = np.abs(sa[rows, shift + 20 : W - 20] - sb[rows, 20 : W - 20 - shift]).mean()
    unmoved = np.abs(sa[rows, 20 : W - 20] - sb[rows, 20 : W - 20]).mean()
    assert same < 0.5 * unmoved
    # the instrument (50 mm away) slides left by f·4 mm/50 mm
    ca = np.nonzero(changed(la, eyes(r.render(state({}), 0, 0))[0]).any(axis=0))[0].mean()
    cb = np.nonzero(changed(lb, eyes(r.render(state({}, CartesianSetpoint((0.004, 0.0, 0.0))), 0, 0))[0])
                    .any(axis=0))[0].mean()
    assert ca - cb == pytest.approx(CAM.focal_px * 0.004 / 0.05, abs=1.0)


def test_the_jaws_open_and_close_visibly():
    r = renderer()
    closed = r.render(state({INSTRUMENTS[0]: upright(r, INSTRUMENTS[0], (0.0, 0.0, -0.05), 0.0)}), 0, 0)
    opened = r.render(state({INSTRUMENTS[0]: upright(r, INSTRUMENTS[0], (0.0, 0.0, -0.05), 1.0)}), 0, 0)
    diff = changed(eyes(closed)[0], eyes(opened)[0])
    ys, xs = np.nonzero(diff)
    g = scene.instrument(r.rcms[INSTRUMENTS[0]], CartesianSetpoint((0.0, 0.0, -0.05), UP, 1.0))
    le = scene.eyes(CAM, CartesianSetpoint())[0]
    u0, v0, _ = scene.project_point(CAM, le, tuple(g.pivot))
    ut, vt, _ = scene.project_point(CAM, le, tuple(g.tip))
    jaw_px = math.hypot(ut - u0, vt - v0)
    narrowest = CAM.focal_px * scene.JAW_WIDTH_M[1] / 0.05
    assert diff.sum() > jaw_px * narrowest  # more than one jaw's worth of pixels changed
    # only around the jaws: nothing changed farther from the pivot than a jaw's length
    assert np.hypot(xs - u0, ys - v0).max() <= jaw_px * 1.2 + 3


@pytest.mark.parametrize("near_first", [True, False])
def test_a_nearer_instrument_hides_a_farther_one(near_first):
    r = renderer()
    near_name, far_name = (INSTRUMENTS[0], INSTRUMENTS[1]) if near_first else (INSTRUMENTS[1], INSTRUMENTS[0])
    near = upright(r, near_name, (0.0, 0.0, -0.04))
    r.rcms[far_name] = (-0.08, 0.0, -0.07)  # a horizontal tool crossing the near one, farther away
    far = CartesianSetpoint((0.02, 0.0, -0.07), q_from_axis_angle((0.0, 1.0, 0.0), -math.pi / 2), 0.0)
    both = eyes(r.render(state({near_name: near, far_name: far}), 0, 0))[0]
    only_near = eyes(r.render(state({near_name: near}), 0, 0))[0]
    only_far = eyes(r.render(state({far_name: far}), 0, 0))[0]
    background = eyes(r.render(state({}), 0, 0))[0]
    inside_near = cv2.erode(changed(only_near, background).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    overlap = inside_near & changed(only_far, background)  # away from the near tool's anti-aliased edges
    assert overlap.sum() > 100  # they do cross in the image
    assert (both[overlap] == only_near[overlap]).all()  # where they cross, the near one is seen
    assert not (both[overlap] == only_far[overlap]).all()


def test_a_tip_pressed_into_the_tissue_shows_a_contact_cue():
    r = renderer()
    r.rcms[INSTRUMENTS[0]] = (0.01, -0.08, -0.06)  # the shaft comes from below in the image
    above = CartesianSetpoint((0.01, 0.0, -0.095))
    pressed = CartesianSetpoint((0.01, 0.0, -0.105))
    a = eyes(r.render(state({INSTRUMENTS[0]: above}), 0, 0))[0]
    b = eyes(r.render(state({INSTRUMENTS[0]: pressed}), 0, 0))[0]
    le = scene.eyes(CAM, CartesianSetpoint())[0]
    u, v, _ = scene.project_point(CAM, le, (0.01, 0.0, TISSUE.surface_z))
    ring = round(CAM.focal_px * (0.0015 + 0.8 * 0.005 + 0.0008) / 0.1)  # dimple radius + 0.8 mm
    # the ring around the dimple: red/yellow (B low, R high), where the tissue was pink before
    px_b, px_a = b[round(v), round(u) + ring], a[round(v), round(u) + ring]
    assert px_b[2] == 255 and px_b[0] < 40 and not (px_a == px_b).all()


def test_the_rendered_source_draws_the_newest_state_and_stamps_the_frame_with_it(tmp_path):
    cfg = Config()
    writer = StateWriter(len(ARM_NAMES), str(tmp_path))
    try:
        src = RenderedStereo(cfg, writer.path, paced=False)
        first = src.read()
        assert first.stamp == NO_STAMP  # nothing written yet: the frame says it shows no bedside state
        arms = [(int(ArmMode.HOLDING), CartesianSetpoint((0.0, -0.06, -0.04)), (0.0, 0.0, 0.0))] * len(ARM_NAMES)
        seq = writer.write(123_000, 77, 5, 4242, 999_000, 124_000, arms)
        frame = src.read()
        st = frame.stamp
        assert (st.state_seq, st.state_ns, st.telemetry_seq, st.applied_epoch, st.applied_seq, st.applied_send_ns,
                st.applied_rx_ns) == (seq, 123_000, 77, 5, 4242, 999_000, 124_000)
        assert st.render_us > 0 and frame.capture_ns >= 124_000
        assert frame.image.shape == (cfg.video.height, 2 * cfg.video.width, 3)
        assert src.stats()["render_ms"]["n"] == 2
        src.close()
    finally:
        writer.close()


# ------------------------------------------------------------------------- drawn at the fitted size (video/adapt.py)
@pytest.mark.parametrize("k", [0.75, 0.5])
def test_the_resized_camera_scales_every_pixel_position_and_disparity_with_the_picture(k):
    small = CAM.resized(int(W * k), int(H * k))
    pose = CartesianSetpoint((0.003, -0.002, 0.001))
    for full_eye, small_eye in zip(scene.eyes(CAM, pose), scene.eyes(small, pose), strict=True):
        for p in [(0.010, 0.004, -0.05), (-0.02, 0.01, -0.09), (0.0, 0.0, -0.004)]:
            u, v, z = scene.project_point(CAM, full_eye, p)
            us, vs, zs = scene.project_point(small, small_eye, p)
            assert (us, vs, zs) == pytest.approx((k * u, k * v, z))
    assert small.disparity_px(0.05) == pytest.approx(k * CAM.disparity_px(0.05))
    assert (small.hfov_deg, small.baseline_m, small.near_m, small.far_m) == (75.0, 0.005, CAM.near_m, CAM.far_m)


def test_a_view_drawn_at_half_size_shows_the_instrument_where_it_projects_with_half_the_disparity():
    k = 0.5
    small = CAM.resized(int(W * k), int(H * k))
    r = SceneRenderer(small, TISSUE, {n: (0.0, 0.0, 0.0) for n in ARM_NAMES}, (0.0, 0.0), texture_scale=k)
    assert r.texture.shape[0] == round(2048 * k) and r.texel_m == pytest.approx(2 * 0.00008)
    tip = (0.004, 0.0, -0.05)
    tool = upright(r, INSTRUMENTS[0], tip)
    background = r.render(state({}), 0, 0)
    img = r.render(state({INSTRUMENTS[0]: tool}), 0, 0)
    assert img.shape == (small.height, 2 * small.width, 3)
    sw = small.width
    lc, rc = (changed(a, b) for a, b in zip((img[:, :sw], img[:, sw:]), (background[:, :sw], background[:, sw:]),
                                              strict=True))
    g = scene.instrument(r.rcms[INSTRUMENTS[0]], tool)
    mid = tuple((g.pivot + g.tip) / 2)
    le, re = scene.eyes(small, CartesianSetpoint())
    ul, vl, _ = scene.project_point(small, le, mid)
    ur, vr, _ = scene.project_point(small, re, mid)
    d = small.disparity_px(0.05)
    assert d == pytest.approx(k * CAM.disparity_px(0.05))
    assert lc[round(vl), round(ul)] and rc[round(vr), round(ur)]
    cols_l, cols_r = np.nonzero(lc.any(axis=0))[0], np.nonzero(rc.any(axis=0))[0]
    assert (cols_l.mean() - cols_r.mean()) == pytest.approx(d, abs=1.0)
    # the same scene drawn in full and shrunk: the instrument covers the same place, to a pixel
    full = renderer()
    upright(full, INSTRUMENTS[0], tip)
    shrunk = cv2.resize(changed(full.render(state({INSTRUMENTS[0]: tool}), 0, 0)[:, :W],
                                full.render(state({}), 0, 0)[:, :W]).astype(np.uint8) * 255, (sw, small.height),
                        interpolation=cv2.INTER_AREA) > 127
    ys, xs = np.nonzero(lc)
    ys2, xs2 = np.nonzero(shrunk)
    assert xs.mean() == pytest.approx(xs2.mean(), abs=1.0) and ys.mean() == pytest.approx(ys2.mean(), abs=1.0)
    assert lc.sum() == pytest.approx(shrunk.sum(), rel=0.25)


def test_the_rendered_source_draws_at_the_fitted_size_when_asked(tmp_path):
    from video.frames import fitted_size

    cfg = Config()
    src = RenderedStereo(cfg, None, paced=False)
    try:
        assert src.native_size == (2 * cfg.video.width, cfg.video.height)
        for k in (0.75, 0.5, 1.0, 0.5):
            assert src.draw_at(k)
            w, h = fitted_size(*src.native_size, k)
            assert src.read().image.shape == (h, w, 3)
            assert src.renderer.camera.focal_px == pytest.approx(k * renderer_from_config(cfg).camera.focal_px)
        assert len(src._renderers) == 3  # one per scale, kept: stepping back does not rebuild the texture
        assert not src.draw_at(0.05)  # an eye below 160x96: the sender shrinks the full picture instead
        assert src.read().image.shape == (cfg.video.height, 2 * cfg.video.width, 3)
    finally:
        src.close()


def test_a_new_picture_size_resizes_the_texture_and_never_makes_it_again():
    """The full texture (~0.6 s of CPU) is made once per process; a new scale is a resize of it. Made again at a
    change of picture size, inside the sender's frame loop, it left the surgeon a stale picture for 1.95 s."""
    from video import render

    cfg = Config()
    renderer_from_config(cfg)  # the full scale, as the sender starts
    made = render._full_texture.cache_info().misses
    for k in (0.75, 0.5, 0.4375, 0.3, 1.0):
        assert renderer_from_config(cfg, k).texture.shape[0] == max(16, round(render.TEXTURE_PX * min(1.0, k)))
    assert render._full_texture.cache_info().misses == made  # not one more procedural texture


def test_the_sender_encodes_a_rendered_picture_at_the_mode_size_without_resizing_it(cfg):
    from video.adapt import mode_ladder
    from video.sender import VideoSender

    src = RenderedStereo(cfg, None, paced=False)
    sender = VideoSender(cfg, src, endpoint="tcp://127.0.0.1:0")
    try:
        ladder = mode_ladder(cfg.video.fps, cfg.video.bitrate_kbps, cfg.video.min_bitrate_kbps, cfg.video.min_fps)
        for mode in (ladder[1], ladder[3], ladder[0]):
            sender._set_mode(mode)
            sender.step()  # no viewer: drawn, sized and an encoder made, nothing sent
            drawn = src.read().image.shape
            assert drawn == (int(cfg.video.height * mode.scale), int(2 * cfg.video.width * mode.scale), 3)
            assert sender.encoder is not None and (sender.encoder.height, sender.encoder.width) == drawn[:2]
    finally:
        sender.close()


def test_the_state_block_round_trips_and_refuses_another_version():
    s = state({INSTRUMENTS[0]: CartesianSetpoint((0.01, 0.02, -0.105), jaw=0.4)}, seq=9)
    assert unpack(pack(s)) == s
    bad = bytearray(pack(s))
    bad[8] = 99
    from transport.bedside_state import StateError
    with pytest.raises(StateError, match="version 99"):
        unpack(bytes(bad))
