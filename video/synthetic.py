"""A synthetic stereo endoscope: textured tissue and two instruments, with real disparity between the eyes.

The background sits far (small disparity), the instruments near (large disparity), so a stereo display
shows depth and a stereo matcher finds it. Each eye carries the frame counter as black/white blocks
(video/framecode.py) and a clock line, both of which survive compression. Everything costly (the
texture) is made once; a frame is two window copies and a few cv2 draws (~2 ms at 2x1280x720).
"""

from __future__ import annotations

import math
import time

import cv2
import numpy as np

from transport.video_wire import Layout
from video.framecode import code_size, draw_clock, draw_code
from video.frames import Pacer, StereoFrame, StereoSource, VideoSourceError


def tissue_texture(h: int, w: int, seed: int = 7) -> np.ndarray:
    """Pink-red tissue with darker vessels: multi-scale noise (structure for the encoder and for
    stereo matching at every scale), made once."""
    rng = np.random.default_rng(seed)
    acc = np.zeros((h, w), np.float32)
    for cells, weight in ((8, 0.45), (32, 0.3), (128, 0.17), (512, 0.08)):
        ch, cw = max(2, h * cells // max(h, w)), max(2, w * cells // max(h, w))
        noise = rng.random((ch, cw), dtype=np.float32)
        acc += weight * cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)
    acc = cv2.normalize(acc, None, 0.0, 1.0, cv2.NORM_MINMAX)
    b = 60 + 70 * acc
    g = 50 + 80 * acc
    r = 150 + 100 * acc
    img = np.clip(np.dstack([b, g, r]), 0, 255).astype(np.uint8)
    for _ in range(max(4, w // 120)):  # vessels
        pts = [(int(rng.integers(0, w)), int(rng.integers(0, h)))]
        for _ in range(6):
            x, y = pts[-1]
            pts.append((int(x + rng.integers(-w // 8, w // 8)), int(y + rng.integers(-h // 8, h // 8))))
        width = int(rng.integers(2, 6))
        cv2.polylines(img, [np.array(pts, np.int32)], False, (40, 30, 110), width, cv2.LINE_AA)
    return img


class SyntheticStereo(StereoSource):
    """`width`x`height` per eye at `fps`, side by side; `read()` is paced like a camera."""

    def __init__(self, width: int = 1280, height: int = 720, fps: float = 60.0, seed: int = 7,
                 paced: bool = True) -> None:
        if width < 160 or height < 96 or width % 2 or height % 2:
            raise VideoSourceError(f"synthetic eye size {width}x{height} must be even and at least 160x96")
        self.name = "synthetic"
        self.w, self.h, self.fps = width, height, fps
        self.block = 16 if width >= 8 + 16 * 16 + 16 else 8
        self.bg_disp = max(2, width // 160)  # far tissue
        self.fg_disp = max(6, width // 40)  # near instruments
        self.pan = max(8, width // 16)
        self.tex = tissue_texture(height + 2 * self.pan, width + 2 * self.pan + self.bg_disp, seed)
        self.pacer = Pacer(fps) if paced else None
        self.t0 = time.monotonic_ns()
        self.n = -1
        self.buf = np.empty((height, 2 * width, 3), np.uint8)

    def render(self, n: int, capture_ns: int) -> np.ndarray:
        """Frame `n` into a fresh packed picture (the encoder may still hold the previous one)."""
        w, h, p = self.w, self.h, self.pan
        out = np.empty((h, 2 * w, 3), np.uint8)
        t = n / self.fps if self.pacer is None else self.pacer.content_s(n)  # the slot's moment at any rate
        ox = int(p + p * 0.9 * math.sin(2 * math.pi * t / 7.0))
        oy = int(p + p * 0.9 * math.sin(2 * math.pi * t / 11.0))
        left, right = out[:, :w], out[:, w:]
        left[:] = self.tex[oy : oy + h, ox : ox + w]
        right[:] = self.tex[oy : oy + h, ox + self.bg_disp : ox + self.bg_disp + w]
        thick = max(3, w // 50)
        for side, phase in ((-1, 0.0), (1, 1.7)):
            base_x = w // 2 + side * w // 2
            tip = (int(w / 2 + side * w * 0.18 + w * 0.08 * math.cos(2 * math.pi * t / 3.0 + phase)),
                   int(h * 0.45 + h * 0.12 * math.sin(2 * math.pi * t / 2.3 + phase)))
            for eye, shift in ((left, 0), (right, -self.fg_disp)):
                a, b = (base_x + shift, h + thick), (tip[0] + shift, tip[1])
                cv2.line(eye, a, b, (150, 150, 150), thick, cv2.LINE_8)
                cv2.line(eye, a, b, (215, 215, 215), max(1, thick // 3), cv2.LINE_8)
                jaw = int(thick * (1.2 + 0.6 * math.sin(2 * math.pi * t)))
                cv2.line(eye, b, (b[0] - side * jaw, b[1] - jaw), (90, 90, 90), max(2, thick // 2))
                cv2.line(eye, b, (b[0] - side * jaw // 3, b[1] - jaw), (90, 90, 90), max(2, thick // 2))
        cw, ch = code_size(self.block)
        for eye in (left, right):
            draw_code(eye, n, self.block)
            draw_clock(eye, f"#{n:07d} t={capture_ns / 1e6:.1f} ms", scale=max(0.4, w / 1600))
        assert ch < h and cw < w
        return out

    def read(self) -> StereoFrame:
        self.n = self.pacer.wait() if self.pacer else self.n + 1
        t = time.monotonic_ns()
        return StereoFrame(self.render(self.n, t), Layout.SIDE_BY_SIDE, t, self.n)
