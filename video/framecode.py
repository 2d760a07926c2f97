"""Pixels that carry facts: a frame counter in black/white blocks, an on-frame clock, the stale marking.

The counter is 32 blocks (two rows of 16) of `block` px: 24 bits of counter and an 8-bit check, so a
misread returns None rather than a wrong number. Blocks of 16 px survive JPEG q50 and 3 Mbit/s H.264
(GUIDE §4), which lets a test or a camera pointed at the screen read the counter back: glass-to-glass.
Used by the synthetic source, the tests and the console pane (`mark_stale`).
"""

from __future__ import annotations

import zlib

import cv2
import numpy as np

from transport.video_wire import Layout

BITS = 24
COLS = 16
ROWS = 2
MARGIN = 8  # px from the eye's top-left corner
COUNTER_MASK = (1 << BITS) - 1


def _check(counter: int) -> int:
    return ((counter & 0xFF) ^ ((counter >> 8) & 0xFF) ^ ((counter >> 16) & 0xFF) ^ 0x5A) & 0xFF


def code_size(block: int = 16) -> tuple[int, int]:
    """(width, height) in px of the block code including its margin."""
    return MARGIN + COLS * block, MARGIN + ROWS * block


def draw_code(img: np.ndarray, counter: int, block: int = 16, x: int = MARGIN, y: int = MARGIN) -> None:
    """Draw `counter` (mod 2**24) as blocks at (x, y) of `img` (HxW or HxWx3 uint8), in place."""
    c = counter & COUNTER_MASK
    word = c | (_check(c) << BITS)
    bits = np.array([(word >> (31 - i)) & 1 for i in range(32)], dtype=np.uint8).reshape(ROWS, COLS) * 255
    patch = np.kron(bits, np.ones((block, block), dtype=np.uint8))
    h, w = patch.shape
    if img.shape[0] < y + h or img.shape[1] < x + w:
        raise ValueError(f"picture {img.shape[1]}x{img.shape[0]} too small for a {w}x{h} frame code")
    if img.ndim == 3:
        img[y : y + h, x : x + w] = patch[:, :, None]
    else:
        img[y : y + h, x : x + w] = patch


def read_code(img: np.ndarray, block: int = 16, x: int = MARGIN, y: int = MARGIN) -> int | None:
    """The counter drawn at (x, y), or None when the blocks do not form a valid code."""
    h, w = ROWS * block, COLS * block
    if img.shape[0] < y + h or img.shape[1] < x + w:
        return None
    patch = img[y : y + h, x : x + w]
    if patch.ndim == 3:
        patch = patch.mean(axis=2)
    q = block // 4
    cells = patch.reshape(ROWS, block, COLS, block)[:, q : block - q, :, q : block - q].mean(axis=(1, 3))
    word = 0
    for v in cells.reshape(-1):
        word = (word << 1) | int(v >= 128)
    counter = word & COUNTER_MASK
    return counter if (word >> BITS) == _check(counter) else None


def eye_views(img: np.ndarray, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """(left, right) views into a packed picture; no copy."""
    if layout == Layout.SIDE_BY_SIDE:
        half = img.shape[1] // 2
        return img[:, :half], img[:, half:]
    if layout == Layout.TOP_BOTTOM:
        half = img.shape[0] // 2
        return img[:half], img[half:]
    return img, img


def read_eye_codes(img: np.ndarray, layout: Layout, block: int = 16) -> tuple[int | None, int | None]:
    """Counters of the left and right eye: equal when the eyes are in sync."""
    left, right = eye_views(img, layout)
    return read_code(left, block), read_code(right, block)


def draw_clock(img: np.ndarray, text: str, scale: float = 1.0) -> None:
    """Draw a clock line at the eye's bottom-left, white on black, in place."""
    h = img.shape[0]
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
    y = h - MARGIN
    cv2.rectangle(img, (MARGIN - 4, y - th - 6), (MARGIN + tw + 4, y + base), (0, 0, 0), -1)
    cv2.putText(img, text, (MARGIN, y - 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 2, cv2.LINE_8)


def content_signature(img: np.ndarray, step: int = 8) -> int:
    """CRC32 of every `step`-th pixel: changes with any live scene (sensor noise included), not with a
    camera that keeps delivering the same buffer. ~30 µs for a 2560x720 picture."""
    return zlib.crc32(np.ascontiguousarray(img[::step, ::step]).data) & 0xFFFFFFFF


def mark_stale(img: np.ndarray, text: str, layout: Layout = Layout.SIDE_BY_SIDE) -> np.ndarray:
    """A copy of `img` that cannot be mistaken for live video: grey, darkened, hatched in red, framed in
    red, with `text` (e.g. "VIDEO STALE 312 ms") in each eye."""
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.ndim == 3 else img
    out = cv2.cvtColor((grey >> 1).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    h, w = out.shape[:2]
    red = (0, 0, 255)
    step = max(24, min(h, w) // 8)
    for k in range(-h, w, step):
        cv2.line(out, (k, h), (k + h, 0), red, 2)
    t = max(4, min(h, w) // 60)
    cv2.rectangle(out, (0, 0), (w - 1, h - 1), red, 2 * t)
    views = eye_views(out, layout) if layout != Layout.MONO else (out,)
    for view in views:
        vh, vw = view.shape[:2]
        scale = max(0.5, vw / 900)
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
        x, y = max(0, (vw - tw) // 2), (vh + th) // 2
        cv2.rectangle(view, (x - 10, y - th - 10), (x + tw + 10, y + 10), (0, 0, 0), -1)
        cv2.putText(view, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, red, 2, cv2.LINE_AA)
    return out
