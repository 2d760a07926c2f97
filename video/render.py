"""Draw the endoscope's stereo view of the bedside's state: tissue, contact cues, instruments, frame counter.

Pure: a `BedsideState` (transport/bedside_state.py) and a frame number in, a side-by-side BGR picture out
(video/rendered.py is the source that feeds it). Geometry: video/scene.py.

How, and why this way (docs/video.md, "The rendered endoscope"): projected OpenCV drawing, chosen by
measurement. MuJoCo's renderer on this machine's Mesa EGL (software) took 185 ms p50 per stereo 720p frame
(78 ms in the GUIDE's earlier run): twenty to forty times the 4 ms budget. Here:

* The tissue is a plane with a texture made once (video/synthetic.py `tissue_texture`). Its image in each eye is
  an exact homography of the texture (`scene.plane_homography`), warped only when the endoscope moved since the
  last frame; otherwise each eye is a copy of the cached background (≈0.1 ms). Nearest-neighbour sampling with
  about one texel per pixel at the working distance: a linear warp costs 4× as much for no visible gain.
* A tip below the surface presses a dimple (the tissue yields to a position-controlled arm, safety/tissue.py):
  a dark disc whose radius grows with the depth, a pale rim, and a ring from yellow to red with the contact force
  (red at the force the depth limit allows).
* Instruments are shaded convex polygons (shaft silhouette, wrist, two tapered jaws), drawn far to near in each
  eye by the depth of their tip (painter's algorithm): a nearer instrument hides a farther one.
* Each eye carries the frame counter in blocks and a clock line (video/framecode.py), as every source does.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

from base.geometry import Vec3
from safety.tissue import Tissue
from transport.bedside_state import BedsideState
from transport.messages import ARM_NAMES
from video import scene
from video.framecode import draw_clock, draw_code
from video.synthetic import tissue_texture

CAMERA_ARM = "ECM"
TEXEL_M = 0.00008
"""Texture resolution: about one texel per pixel for a 1280-px eye 70 mm above the tissue."""
TEXTURE_PX = 2048
_SHIFT = 4  # cv2 sub-pixel bits: coordinates are drawn at 1/16 px
_ONE = 1 << _SHIFT

SHAFT = (52, 50, 48)
SHAFT_LIGHT = (120, 118, 116)
WRIST = (150, 150, 156)
WRIST_LIGHT = (215, 215, 220)
JAWS = ((185, 185, 190), (135, 135, 140))
EDGE = (30, 30, 30)
DIMPLE = (60, 45, 120)
DIMPLE_RIM = (175, 160, 235)


Pt = tuple[float, float]


@functools.cache
def _full_texture(seed: int) -> np.ndarray:
    """The full-scale tissue texture, made once per process and seed and never dropped: it costs ~0.6 s of CPU
    (2048² procedural noise), and made again inside the frame loop at a change of picture size it stood the video
    sender still for 1.95 s on a busy machine (docs/reliability.md, the failover runs), a stale picture."""
    tex = tissue_texture(TEXTURE_PX, TEXTURE_PX, seed)
    tex.flags.writeable = False
    return tex


@functools.lru_cache(maxsize=8)
def _texture(seed: int, scale: float = 1.0) -> np.ndarray:
    """The tissue texture at `scale` of its side (read-only: every renderer shares it): the full texture
    area-averaged (the same tissue in fewer, larger texels), so a picture drawn at a fitted size keeps about one
    texel a pixel instead of sampling every other one. A new scale costs one resize of the full texture (≤ 15 ms)."""
    full = _full_texture(seed)
    if scale >= 1.0:
        return full
    n = max(16, round(TEXTURE_PX * scale))
    tex = cv2.resize(full, (n, n), interpolation=cv2.INTER_AREA)
    tex.flags.writeable = False
    return tex


def _fx(p: Pt) -> tuple[int, int]:
    return int(p[0] * _ONE + 0.5), int(p[1] * _ONE + 0.5)


def _poly(img: np.ndarray, pts: list[Pt], color: tuple[int, int, int], edge: bool = False) -> None:
    arr = np.array([_fx(p) for p in pts], np.int32)
    cv2.fillConvexPoly(img, arr, color, cv2.LINE_AA, _SHIFT)
    if edge:
        cv2.polylines(img, [arr], True, EDGE, 1, cv2.LINE_AA, _SHIFT)


def _tapered(a: Pt, b: Pt, ra: float, rb: float, shift: float = 0.0) -> list[Pt] | None:
    """The image outline of a segment a→b whose half-width goes from ra to rb (px), its centre line moved
    sideways by `shift` × the half-width at each end (ra, rb): a convex quad (None if a and b coincide)."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    n = math.hypot(dx, dy)
    if n < 1e-6:
        return None
    px, py = -dy / n, dx / n
    ca, cb = (a[0] + px * shift * ra, a[1] + py * shift * ra), (b[0] + px * shift * rb, b[1] + py * shift * rb)
    return [(ca[0] + px * ra, ca[1] + py * ra), (cb[0] + px * rb, cb[1] + py * rb),
            (cb[0] - px * rb, cb[1] - py * rb), (ca[0] - px * ra, ca[1] - py * ra)]


class SceneRenderer:
    """Renders `BedsideState`s for one camera. Holds the texture and the last background of each eye."""

    def __init__(self, camera: scene.StereoCamera, tissue: Tissue, rcms: dict[str, Vec3],
                 texture_center_xy: tuple[float, float], seed: int = 7, texture_scale: float = 1.0) -> None:
        """`texture_scale`: the camera's picture is that share of each side of the configured one (the picture
        fitting, video/rendered.py); the texture is sampled at the same share, so the tissue looks the same."""
        self.camera = camera
        self.tissue = tissue
        self.rcms = rcms
        self.cam_index = ARM_NAMES.index(CAMERA_ARM)
        self.instruments = [i for i, n in enumerate(ARM_NAMES) if n != CAMERA_ARM]
        self.texture = _texture(seed, min(1.0, texture_scale))
        self.texel_m = TEXTURE_PX * TEXEL_M / self.texture.shape[1]  # the same area of tissue at any scale
        half = TEXTURE_PX * TEXEL_M / 2.0
        self.tex_origin = (texture_center_xy[0] - half, texture_center_xy[1] + half)
        self._bg_key: bytes | None = None
        self._bg: tuple[np.ndarray, np.ndarray] | None = None
        self.block = 16 if camera.width >= 8 + 16 * 16 + 16 else 8
        self.background_warps = 0

    # ---------------------------------------------------------------------------------------- tissue
    def _backgrounds(self, left: scene.Eye, right: scene.Eye) -> tuple[np.ndarray, np.ndarray]:
        """Each eye's view of the textured tissue plane, warped again only when the camera moved. A camera looking
        straight down at the plane (the endoscope's orientation holds in camera mode) sees all of it at one depth,
        hence one disparity: one affine warp, a disparity wider than an eye, serves both (the right eye's window
        starts that many pixels to the right, rounded to a pixel). Otherwise each eye is warped on its own."""
        key = left.origin.tobytes() + left.rot.tobytes()
        if key == self._bg_key and self._bg is not None:
            return self._bg
        cam = self.camera
        w, h = cam.width, cam.height
        hl = scene.plane_homography(cam, left, self.tissue.surface_z, self.texel_m, self.tex_origin)
        depth = float(left.origin[2] - self.tissue.surface_z)
        if left.rot[2, 2] > 1.0 - 1e-9 and depth > cam.near_m:
            d = round(cam.disparity_px(depth))
            wide = cv2.warpAffine(self.texture, (hl / hl[2, 2])[:2], (w + d, h), flags=cv2.INTER_NEAREST,
                                  borderMode=cv2.BORDER_REFLECT)
            self._bg = (wide[:, :w], wide[:, d : d + w])
        else:
            hr = scene.plane_homography(cam, right, self.tissue.surface_z, self.texel_m, self.tex_origin)
            self._bg = tuple(cv2.warpPerspective(self.texture, hm, (w, h), flags=cv2.INTER_NEAREST,  # type: ignore[assignment]
                                                 borderMode=cv2.BORDER_REFLECT) for hm in (hl, hr))
        self._bg_key = key
        self.background_warps += 1
        return self._bg

    def _dimple(self, img: np.ndarray, eye: scene.Eye, tip: np.ndarray, force: float) -> None:
        """The contact cue of a tip pressed `depth` into the tissue (its disc is seen face-on: a circle)."""
        depth = self.tissue.depth((tip[0], tip[1], tip[2]))
        if depth <= 0.0:
            return
        cam = self.camera
        c = eye.to_camera(np.array([[tip[0], tip[1], self.tissue.surface_z]]))
        uv, z = scene.project(cam, c)
        if z[0] < cam.near_m:
            return
        px = cam.focal_px / z[0]
        center = _fx((float(uv[0, 0]), float(uv[0, 1])))
        radius = 0.0015 + 0.8 * depth
        cv2.circle(img, center, int(radius * px * _ONE), DIMPLE, -1, cv2.LINE_AA, _SHIFT)
        cv2.circle(img, center, int(radius * px * _ONE), DIMPLE_RIM, max(1, int(0.0003 * px)), cv2.LINE_AA, _SHIFT)
        limit = self.tissue.max_static_force
        ratio = min(1.0, force / limit) if limit > 0 else 1.0
        ring = (radius + 0.0008) * px
        cv2.circle(img, center, int(ring * _ONE), (0, int(220 * (1.0 - ratio)), 255),
                   max(2, int((0.0003 + 0.0006 * ratio) * px)), cv2.LINE_AA, _SHIFT)

    # ----------------------------------------------------------------------------------- instruments
    def _project(self, c: list[float]) -> tuple[Pt, float]:
        cam, z = self.camera, -c[2]
        f = cam.focal_px
        return (cam.cx + f * c[0] / z, cam.cy - f * c[1] / z), z

    def _segment(self, img: np.ndarray, a: list[float], b: list[float], radius: float,
                 body: tuple[int, int, int], light: tuple[int, int, int]) -> None:
        """A cylinder a→b (camera frame, m) of `radius`: its silhouette, a highlight stripe, and an end cap at b."""
        near = self.camera.near_m
        za, zb = -a[2], -b[2]
        if za < near and zb < near:
            return
        if za < near or zb < near:  # clip at the near plane
            t = (near - za) / (zb - za)
            m = [a[i] + (b[i] - a[i]) * t for i in range(3)]
            a, b = (m, b) if za < near else (a, m)
        (pa, za), (pb, zb) = self._project(a), self._project(b)
        if min(za, zb) > self.camera.far_m:
            return
        f = self.camera.focal_px
        ra, rb = f * radius / za, f * radius / zb
        quad = _tapered(pa, pb, ra, rb)
        if quad is not None:
            _poly(img, quad, body)
            stripe = _tapered(pa, pb, ra * 0.22, rb * 0.22, shift=-0.45 / 0.22)  # toward the light
            if stripe is not None:
                _poly(img, stripe, light)
        cv2.circle(img, _fx(pb), max(1, int(rb * _ONE)), body, -1, cv2.LINE_AA, _SHIFT)

    def _instrument(self, img: np.ndarray, pts: list[list[float]]) -> None:
        """One instrument from its points in the eye's frame: shaft start, shaft end, pivot, jaw tips."""
        self._segment(img, pts[0], pts[1], scene.SHAFT_RADIUS_M, SHAFT, SHAFT_LIGHT)
        self._segment(img, pts[1], pts[2], scene.WRIST_RADIUS_M, WRIST, WRIST_LIGHT)
        near, f = self.camera.near_m, self.camera.focal_px
        if -pts[2][2] < near:
            return
        pv, zv = self._project(pts[2])
        for k, color in zip((3, 4), JAWS, strict=True):
            if -pts[k][2] < near:
                continue
            pj, zj = self._project(pts[k])
            quad = _tapered(pv, pj, f * scene.JAW_WIDTH_M[0] / zv, f * scene.JAW_WIDTH_M[1] / zj)
            if quad is not None:
                _poly(img, quad, color, edge=True)

    # ------------------------------------------------------------------------------------------ frame
    def render(self, state: BedsideState | None, frame_no: int, t_ns: int) -> np.ndarray:
        """Both eyes side by side, in a fresh array (the encoder may still hold the previous one)."""
        cam = self.camera
        w, h = cam.width, cam.height
        out = np.empty((h, 2 * w, 3), np.uint8)
        views = (out[:, :w], out[:, w:])
        if state is None or state.seq == 0 or len(state.arms) != len(ARM_NAMES):
            out[:] = DIMPLE
            for v in views:
                draw_clock(v, "waiting for the bedside's arm state", scale=max(0.4, w / 1600))
        else:
            left, right = scene.eyes(cam, state.arms[self.cam_index].measured_cp)
            bgs = self._backgrounds(left, right)
            tools = [(scene.instrument(self.rcms[ARM_NAMES[i]], state.arms[i].measured_cp), state.arms[i].measured_cf)
                     for i in self.instruments]
            points = np.concatenate([np.stack([g.shaft_start, g.shaft_end, g.pivot, *g.jaw_tips]) for g, _ in tools])
            for view, bg, eye in zip(views, bgs, (left, right), strict=True):
                view[:] = bg
                for g, cf in tools:
                    self._dimple(view, eye, g.tip, math.sqrt(cf[0] ** 2 + cf[1] ** 2 + cf[2] ** 2))
                cam_pts = eye.to_camera(points).tolist()
                parts = [cam_pts[5 * k : 5 * k + 5] for k in range(len(tools))]
                # painter's algorithm: the farthest tip first (its jaw pivot's depth)
                for k in sorted(range(len(tools)), key=lambda k: parts[k][2][2]):
                    self._instrument(view, parts[k])
        for v in views:
            draw_code(v, frame_no, self.block)
            draw_clock(v, f"#{frame_no:07d} t={t_ns / 1e6:.1f} ms", scale=max(0.4, w / 1600))
        return out
