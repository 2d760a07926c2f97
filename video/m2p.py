"""Motion-to-photon from the console's own records: which painted frame first showed each command, where the time
went, and an optical check that does not trust the frames' stamps. Pure (numpy); `teleop bench m2p` feeds it.

Inputs, all on one host's CLOCK_MONOTONIC (console, bedside and its video child run on the same machine in the
bench; with the link emulator too, so no clock-offset estimate enters any figure):

* `Painted`: one per new picture the console window painted (`PaintLog`, fed by console/ui/video.py): when the
  paint ended, the frame's header times, and its `SceneStamp` (transport/video_wire.py): the last servo_cp applied
  at the bedside before the state the frame was drawn from (epoch, seq, the console's send time, the bedside's
  receive time), the state's time and the render time.
* `Commands`: every servo_cp the console engine sent (epoch, seq, send time; its `/console/command` recording).

Metadata method. A frame stamped (e, m) shows every command (e, n ≤ m): the first painted frame whose stamp reaches
n shows n. m2p(n) = that frame's paint time − n's send time, for every command, not only the newest one each frame
carries (a motion happens at any phase of the frame clock; the wait for the next render is part of the figure).
Breakdown of m2p(n), shown by frame F stamped m (the stages add up to m2p(n) exactly):

    network_out   rx(m) − send(m)                        console → bedside (the frame's command stands for n's)
    bedside_apply state_ns − rx(m)                       taken off the socket → the arms advanced, state written
    wait_render   (capture − state_ns) + (send(m) − send(n))  n waited for a frame to start; state age at the read
    render        render_us                               the scene drawn
    encode        header send − capture − render          colour conversion, encoding (and any queueing)
    network_back  received − header send                 bedside → console, off the socket
    decode        decoded − received
    paint         painted − decoded                       waiting for the GUI thread and painting

Optical method (`optical_steps`): the bench moves one instrument in steps; `tip_x` finds the instrument in a band
of the decoded picture (its gray pixels' mean column; the tissue is red). For each step the reference command is
the first whose position passed half the step (from the command log), the optical frame the first painted after
the step whose tip passed half its pixel travel, the metadata frame the first whose stamp reaches the reference
command. They agree when the two paint times are at most one frame period apart.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from base.stats import percentiles

STAGES = ("network_out", "bedside_apply", "wait_render", "render", "encode", "network_back", "decode", "paint")

GRAY_SPREAD = 28
"""A pixel is instrument (steel, black shaft) when its colour channels differ by at most this; tissue is red."""
MIN_TIP_PIXELS = 12
CODE_ROWS_PX = 8 + 2 * 16 + 8
"""The frame counter's blocks (video/framecode.py, at most 16-px blocks, 8 px from the top) and a margin."""
CLOCK_ROWS_PX = 56
"""The clock line at the bottom of each eye, with a margin."""


@dataclass(frozen=True, slots=True)
class Painted:
    """One new picture painted by the console window."""

    paint_ns: int  # the paint ended (QPainter done: the picture is in the window's backing store)
    paint_us: int  # what the paint event took
    seq: int  # the receiver's decoded-picture count
    frame_id: int
    fps: int  # the sender's frame rate in its mode then
    eye_w: int
    eye_h: int
    capture_ns: int  # bedside: the state was read for this picture
    send_ns: int  # bedside: encoding finished
    received_ns: int  # console: off the socket
    decoded_ns: int  # console: ready to paint
    state_seq: int = 0  # 0: not drawn from the bedside's state (no stamp)
    state_ns: int = 0
    applied_epoch: int = 0
    applied_seq: int = 0
    applied_send_ns: int = 0
    applied_rx_ns: int = 0
    render_us: int = 0
    probe: float | None = None  # optical: the tip's position in the probe band (0..1 of its width), or None


class PaintLog:
    """Bounded, opt-in record of what the window painted. `add` runs in the GUI thread after each paint: a few
    attribute reads and an append (and `probe`, if set: the bench's optical measurement on a small band)."""

    def __init__(self, maxlen: int = 100_000) -> None:
        self.records: deque[Painted] = deque(maxlen=maxlen)
        self.added = 0
        self.probe: Any = None  # callable(FrameView) -> float | None

    @property
    def overwritten(self) -> int:
        return max(0, self.added - (self.records.maxlen or 0))

    def add(self, view: Any, painted_ns: int, paint_ns: int) -> None:
        """`view`: the video.receiver.FrameView just painted."""
        st = view.stamp
        h, w = view.image.shape[:2]
        layout = int(view.layout)
        eye_w, eye_h = (w // 2, h) if layout == 0 else ((w, h // 2) if layout == 1 else (w, h))
        probe = self.probe(view) if self.probe is not None else None
        self.records.append(Painted(painted_ns, paint_ns // 1000, view.seq, view.frame_id, view.fps, eye_w, eye_h,
                                    view.capture_ns, view.send_ns, view.received_ns, view.decoded_ns, st.state_seq,
                                    st.state_ns, st.applied_epoch, st.applied_seq, st.applied_send_ns,
                                    st.applied_rx_ns, st.render_us, probe))
        self.added += 1


@dataclass(frozen=True)
class Commands:
    """servo_cp commands as sent, in send order: epoch, seq, send time; `x`: the probed arm's position along the
    step axis (m), for the optical check (NaN where unknown)."""

    epoch: np.ndarray
    seq: np.ndarray
    send_ns: np.ndarray
    x: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @staticmethod
    def of(rows: list[tuple[int, int, int, float]]) -> Commands:
        rows = sorted(rows, key=lambda r: r[2])
        a = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
        return Commands(np.asarray([r[0] for r in rows], np.int64), np.asarray([r[1] for r in rows], np.int64),
                        np.asarray([r[2] for r in rows], np.int64), a[:, 3])

    def __len__(self) -> int:
        return len(self.seq)


def _stamped(paints: list[Painted]) -> list[Painted]:
    return sorted((p for p in paints if p.state_seq), key=lambda p: p.paint_ns)


def first_showing(cmds: Commands, paints: list[Painted]) -> np.ndarray:
    """For each command, the index in `paints` (sorted by paint time, stamped ones only: see `_stamped`) of the
    first painted frame that shows it; -1 if none does."""
    out = np.full(len(cmds), -1, np.int64)
    if not len(cmds) or not paints:
        return out
    epochs = np.asarray([p.applied_epoch for p in paints], np.int64)
    seqs = np.asarray([p.applied_seq for p in paints], np.int64)
    for e in np.unique(cmds.epoch):
        idx = np.nonzero(epochs == e)[0]
        if not idx.size:
            continue
        reach = np.maximum.accumulate(seqs[idx])  # the newest command shown so far, in paint order
        sel = np.nonzero(cmds.epoch == e)[0]
        pos = np.searchsorted(reach, cmds.seq[sel], side="left")
        ok = pos < idx.size
        out[sel[ok]] = idx[pos[ok]]
    return out


def stages(cmd_send_ns: int, p: Painted) -> dict[str, int]:
    """The breakdown (ns) of one command sent at `cmd_send_ns` and first shown by `p`; sums to m2p exactly."""
    render = p.render_us * 1000
    return {
        "network_out": p.applied_rx_ns - p.applied_send_ns,
        "bedside_apply": p.state_ns - p.applied_rx_ns,
        "wait_render": (p.capture_ns - p.state_ns) + (p.applied_send_ns - cmd_send_ns),
        "render": render,
        "encode": p.send_ns - p.capture_ns - render,
        "network_back": p.received_ns - p.send_ns,
        "decode": p.decoded_ns - p.received_ns,
        "paint": p.paint_ns - p.decoded_ns,
    }


def _ms(values_ns: list[int] | np.ndarray, names: tuple[str, ...] = ("p50", "p95", "p99")) -> dict[str, Any]:
    v = [x / 1e6 for x in values_ns]
    out = percentiles(v, True, names, 2)
    if v:
        out["mean"] = round(float(np.mean(v)), 2)
    return out


def metadata_m2p(cmds: Commands, paints: list[Painted], t0_ns: int, t1_ns: int) -> dict[str, Any]:
    """m2p of every command sent in [t0_ns, t1_ns) by the metadata method, with its breakdown, and the same for the
    newest command each painted frame shows (its best case: no wait for the next render)."""
    stamped = _stamped(paints)
    win = (cmds.send_ns >= t0_ns) & (cmds.send_ns < t1_ns)
    sub = Commands(cmds.epoch[win], cmds.seq[win], cmds.send_ns[win])
    first = first_showing(sub, stamped)
    m2p: list[int] = []
    parts: dict[str, list[int]] = {s: [] for s in STAGES}
    for send, i in zip(sub.send_ns.tolist(), first.tolist(), strict=True):
        if i < 0:
            continue
        p = stamped[i]
        m2p.append(p.paint_ns - send)
        for k, v in stages(send, p).items():
            parts[k].append(v)
    newest, shown = [], {}  # each frame's own command, the first time a frame shows it (not a held picture's)
    for p in stamped:
        if p.applied_seq > shown.get(p.applied_epoch, 0):
            shown[p.applied_epoch] = p.applied_seq
            if t0_ns <= p.applied_send_ns < t1_ns:
                newest.append(p.paint_ns - p.applied_send_ns)
    return {
        "commands": int(win.sum()), "commands_shown": len(m2p), "commands_never_shown": int(win.sum()) - len(m2p),
        "m2p_ms": _ms(m2p), "breakdown_ms": {k: _ms(v, ("p50", "p95")) for k, v in parts.items()},
        "newest_command_m2p_ms": _ms(newest),
    }


# ------------------------------------------------------------------------------------------------ optical


def gray_mask(img: np.ndarray, spread: int = GRAY_SPREAD) -> np.ndarray:
    """Instrument pixels of a BGR picture: channels within `spread` of each other (steel and the black shaft are
    gray; the rendered tissue, its vessels and the contact cues are red)."""
    i = img.astype(np.int16)
    return (i.max(axis=2) - i.min(axis=2)) <= spread


def tip_x(band: np.ndarray, spread: int = GRAY_SPREAD, min_pixels: int = MIN_TIP_PIXELS) -> float | None:
    """The instrument's position in `band` (BGR): the mean column of its gray pixels as a fraction of the band's
    width; None when too few are seen."""
    m = gray_mask(band, spread)
    n = int(m.sum())
    if n < min_pixels:
        return None
    cols = np.nonzero(m)[1]
    return float(cols.mean() + 0.5) / band.shape[1]


Band = tuple[float, float, float, float]
"""(y0, y1, x0, x1) as fractions of one eye's height and width: survives a change of picture size."""


def find_band(rest_a: np.ndarray, rest_b: np.ndarray, rows: float = 0.08, margin: float = 0.25) -> Band | None:
    """Where to look for the stepped instrument: given one eye at rest before and after a step, the band of
    `rows` (fraction of the height) where the most instrument pixels changed, across the columns where they
    changed (2nd to 98th percentile) plus `margin` of that span on each side. The frame counter's rows at the top
    and the clock's at the bottom (video/framecode.py: they change every frame) are never chosen; speckle from
    the codec is opened away. None when nothing moved."""
    if rest_a.shape != rest_b.shape:  # the video mode changed between the two (video/adapt.py)
        rest_a = cv2.resize(rest_a, (rest_b.shape[1], rest_b.shape[0]), interpolation=cv2.INTER_AREA)
    diff = (gray_mask(rest_a) ^ gray_mask(rest_b)).astype(np.uint8)
    diff = cv2.morphologyEx(diff, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)).astype(bool)
    h, w = diff.shape
    top, bottom = min(int(0.2 * h), CODE_ROWS_PX), max(int(0.8 * h), h - CLOCK_ROWS_PX)
    k = max(2, int(rows * h))
    if bottom - top < k:
        return None
    per_row = diff[top:bottom].sum(axis=1).astype(np.float64)
    if per_row.sum() < MIN_TIP_PIXELS:
        return None
    y0 = top + int(np.argmax(np.convolve(per_row, np.ones(k), mode="valid")))
    cols = np.nonzero(diff[y0 : y0 + k])[1]
    if cols.size < MIN_TIP_PIXELS:
        return None
    lo, hi = np.percentile(cols, [2, 98])
    span = hi - lo + 1
    x0, x1 = max(0, int(lo - margin * span)), min(w, int(hi + 1 + margin * span))
    return (y0 / h, (y0 + k) / h, x0 / w, x1 / w)


def crop(eye: np.ndarray, band: Band) -> np.ndarray:
    h, w = eye.shape[:2]
    y0, y1, x0, x1 = band
    return eye[int(y0 * h) : max(int(y0 * h) + 1, int(y1 * h)), int(x0 * w) : max(int(x0 * w) + 1, int(x1 * w))]


@dataclass(frozen=True, slots=True)
class Step:
    """One step the bench commanded: when the master moved (console clock) and until when it rested there."""

    t_ns: int
    until_ns: int


def _first_crossing(values: np.ndarray, a: float, b: float) -> int:
    """Index of the first value at least half-way from a toward b; -1 if none."""
    prog = (values - a) / (b - a)
    hit = np.nonzero(prog >= 0.5)[0]
    return int(hit[0]) if hit.size else -1


def optical_steps(cmds: Commands, paints: list[Painted], steps: list[Step], settle_ns: int = 200_000_000,
                  min_move_m: float = 0.0005, min_move: float = 0.02, max_gap_ns: int = 50_000_000) -> dict[str, Any]:
    """Per step: the optical and the metadata latency of its half-way command and whether they agree (within one
    frame period). `cmds`: the commands that moved the stepped arm (it was following). `settle_ns`: the last
    stretch of each rest taken as the settled position. A step whose commanded or seen motion is below
    `min_move_m` / `min_move` (of the band's width), or during which the arm stopped following (a gap in its
    commands longer than `max_gap_ns`), is skipped and counted by reason."""
    stamped = _stamped(paints)
    pt = np.asarray([p.paint_ns for p in stamped], np.int64)
    probe = np.asarray([np.nan if p.probe is None else p.probe for p in stamped], np.float64)
    out: list[dict[str, Any]] = []
    skipped: dict[str, int] = {}

    def skip(why: str) -> None:
        skipped[why] = skipped.get(why, 0) + 1

    for s in steps:
        before = np.nonzero(cmds.send_ns < s.t_ns)[0]
        rest = np.nonzero((cmds.send_ns >= s.until_ns - settle_ns) & (cmds.send_ns < s.until_ns))[0]
        during = np.nonzero((cmds.send_ns >= s.t_ns) & (cmds.send_ns < s.until_ns))[0]
        if not before.size or not rest.size or not during.size:
            skip("no commands")
            continue
        span = cmds.send_ns[before[-1] : during[-1] + 1]
        if span[0] < s.t_ns - settle_ns or (span.size > 1 and int(np.diff(span).max()) > max_gap_ns):
            skip("arm not following throughout")  # a hold (or a stalled console) cut the step: not a clean one
            continue
        ca, cb = float(cmds.x[before[-1]]), float(np.median(cmds.x[rest]))
        if not abs(cb - ca) >= min_move_m:
            skip("commanded step too small")
            continue
        k = _first_crossing(cmds.x[during], ca, cb)
        if k < 0:
            skip("command never half-way")
            continue
        ref = during[k]
        send, epoch, seq = int(cmds.send_ns[ref]), int(cmds.epoch[ref]), int(cmds.seq[ref])
        pre = np.nonzero((pt >= s.t_ns - settle_ns) & (pt < s.t_ns) & ~np.isnan(probe))[0]
        post_rest = np.nonzero((pt >= s.until_ns - settle_ns) & (pt < s.until_ns) & ~np.isnan(probe))[0]
        after = np.nonzero((pt >= s.t_ns) & (pt < s.until_ns))[0]
        if not pre.size or not post_rest.size or not after.size:
            skip("no frames")
            continue
        oa, ob = float(np.median(probe[pre])), float(np.median(probe[post_rest]))
        if not abs(ob - oa) >= min_move:
            skip("tip not seen to move")
            continue
        j = _first_crossing(np.nan_to_num(probe[after], nan=oa), oa, ob)
        meta = next((i for i in after.tolist() if stamped[i].applied_epoch == epoch and stamped[i].applied_seq >= seq),
                    -1)
        if j < 0 or meta < 0:
            skip("not shown before the next step")
            continue
        opt = int(after[j])
        p_opt, p_meta = stamped[opt], stamped[meta]
        period_ns = 1e9 / p_meta.fps if p_meta.fps else float(np.median(np.diff(pt))) if pt.size > 1 else 0.0
        diff = p_opt.paint_ns - p_meta.paint_ns
        out.append({"t_ns": s.t_ns, "optical_ms": (p_opt.paint_ns - send) / 1e6,
                    "metadata_ms": (p_meta.paint_ns - send) / 1e6,
                    "diff_ms": diff / 1e6, "frames_apart": opt - meta, "period_ms": period_ns / 1e6,
                    "agree": abs(diff) <= period_ns})
    diffs = [abs(r["diff_ms"]) for r in out]
    return {
        "steps": len(steps), "measured": len(out), "skipped": skipped,
        "agree": sum(r["agree"] for r in out), "all_agree": bool(out) and all(r["agree"] for r in out),
        "optical_ms": percentiles([r["optical_ms"] for r in out], True, ("p50", "p95"), 2),
        "metadata_ms": percentiles([r["metadata_ms"] for r in out], True, ("p50", "p95"), 2),
        "abs_diff_ms": percentiles(diffs, True, ("p50", "p95"), 2),
        "frames_apart": {str(k): sum(1 for r in out if r["frames_apart"] == k)
                         for k in sorted({r["frames_apart"] for r in out})},
        "frame_period_ms": round(float(np.median([r["period_ms"] for r in out])), 2) if out else None,
        "per_step": [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items() if k != "t_ns"}
                     for r in out],
    }
