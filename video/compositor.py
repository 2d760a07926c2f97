"""Stereo display modes, composed in numpy: one picture out, ready to paint 1:1 (GUIDE §5).

Pure: a packed stereo picture (transport/video_wire.Layout) in, one contiguous BGRA picture out (Qt's
`Format_RGB32` on little-endian machines, which the raster engine blits without converting). Scaling is
done here, once, with OpenCV, so the paint is a plain copy: painting never rescales a full-size frame.

Modes (GUIDE §4):
    side-by-side      both eyes next to each other (3D TVs/projectors in SBS mode, or a flat preview)
    top-bottom        left over right
    anaglyph          red from the left eye, green and blue from the right (red/cyan glasses)
    row-interleaved   even screen rows from one eye, odd from the other, for passive polarised monitors:
                      never scaled (a scaled row would mix the eyes); `row_parity` is the screen row of the
                      picture's first line, so the eyes land on the right rows wherever the window sits
    left / right      one eye only
    per-eye           one fullscreen window per eye on two screens (each window composes `left`/`right`)
"""

from __future__ import annotations

from enum import StrEnum

import cv2
import numpy as np

from transport.video_wire import Layout
from video.framecode import eye_views


class DisplayMode(StrEnum):
    SIDE_BY_SIDE = "side-by-side"
    TOP_BOTTOM = "top-bottom"
    ANAGLYPH = "anaglyph"
    ROW_INTERLEAVED = "row-interleaved"
    LEFT = "left"
    RIGHT = "right"
    PER_EYE = "per-eye"

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    DisplayMode.SIDE_BY_SIDE: "Side by side",
    DisplayMode.TOP_BOTTOM: "Top / bottom",
    DisplayMode.ANAGLYPH: "Anaglyph (red/cyan)",
    DisplayMode.ROW_INTERLEAVED: "Row-interleaved (passive 3D)",
    DisplayMode.LEFT: "Left eye only",
    DisplayMode.RIGHT: "Right eye only",
    DisplayMode.PER_EYE: "One window per eye",
}


def natural_size(eye_w: int, eye_h: int, mode: DisplayMode) -> tuple[int, int]:
    """(width, height) of the composed picture at full resolution."""
    if mode in (DisplayMode.SIDE_BY_SIDE, DisplayMode.PER_EYE):
        return 2 * eye_w, eye_h
    if mode == DisplayMode.TOP_BOTTOM:
        return eye_w, 2 * eye_h
    return eye_w, eye_h


def fit(src_w: int, src_h: int, box_w: int, box_h: int) -> tuple[int, int]:
    """The largest size with the source's aspect ratio inside the box (at least 1×1)."""
    if src_w <= 0 or src_h <= 0:
        return max(1, box_w), max(1, box_h)
    k = min(box_w / src_w, box_h / src_h)
    return max(1, int(src_w * k)), max(1, int(src_h * k))


def _resize(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """Bilinear (≈0.5 ms for 2560×720 → 1400×390, 8× cheaper than area averaging); below half size, halve
    first with a Gaussian pyramid step so bilinear does not alias. The resize is ~90% of a paint's CPU (1.1 ms of
    1.2 for 1920×540 → 1600×450, `teleop bench frames`); measured and not taken: INTER_LINEAR_EXACT (2× dearer),
    BGRA first then resize (no cheaper), Qt's smooth drawImage (0.2 ms cheaper, other pixels), reused buffers."""
    while w * 2 <= img.shape[1] and h * 2 <= img.shape[0]:
        img = cv2.pyrDown(img)
    if img.shape[1] == w and img.shape[0] == h:
        return img
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)


def _bgra(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGRA)
    return cv2.cvtColor(img, cv2.COLOR_BGR2BGRA)


def compose(image: np.ndarray, layout: Layout, mode: DisplayMode, box: tuple[int, int] | None = None,
            row_parity: int = 0, swap_eyes: bool = False) -> np.ndarray:
    """The picture to paint for `mode`, fitted into `box` (w, h) keeping the aspect ratio, as contiguous
    BGRA uint8. `box=None` keeps full resolution. Row-interleaved is never scaled: it is cropped to the box,
    centred on an even row offset so `row_parity` still names the eye of the first painted row."""
    left, right = eye_views(image, layout)
    if swap_eyes:
        left, right = right, left
    eh, ew = left.shape[:2]
    if mode == DisplayMode.ROW_INTERLEAVED:
        out = np.array(left, copy=True)
        start = 1 - (row_parity & 1)  # screen rows of odd parity carry the right eye
        out[start::2] = right[start::2]
        if box is not None:
            bw, bh = min(box[0], ew), min(box[1], eh)
            x0, y0 = (ew - bw) // 2, ((eh - bh) // 2) & ~1
            out = out[y0 : y0 + bh, x0 : x0 + bw]
        return _bgra(out)
    nw, nh = natural_size(ew, eh, mode)
    w, h = (nw, nh) if box is None else fit(nw, nh, box[0], box[1])
    if mode in (DisplayMode.SIDE_BY_SIDE, DisplayMode.PER_EYE):
        if layout == Layout.SIDE_BY_SIDE and not swap_eyes:
            return _bgra(_resize(image, w, h))  # already packed this way: one resize of the whole picture
        half = max(1, w // 2)
        return _bgra(np.hstack((_resize(left, half, h), _resize(right, w - half if w > 1 else 1, h))))
    if mode == DisplayMode.TOP_BOTTOM:
        if layout == Layout.TOP_BOTTOM and not swap_eyes:
            return _bgra(_resize(image, w, h))
        half = max(1, h // 2)
        return _bgra(np.vstack((_resize(left, w, half), _resize(right, w, h - half if h > 1 else 1))))
    if mode == DisplayMode.ANAGLYPH:
        lw, out = _resize(left, w, h), _bgra(_resize(right, w, h))  # blue, green from the right eye
        out[..., 2] = lw if lw.ndim == 2 else lw[..., 2]  # red from the left eye
        return out
    eye = left if mode == DisplayMode.LEFT else right
    return _bgra(_resize(eye, w, h))
