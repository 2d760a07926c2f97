"""The recorded stereo video at any instant: H.264 (foxglove.CompressedVideo) through PyAV, JPEG through
OpenCV, both via video/codecs.py, with a small cache.

Why seeking works this way: the live encoder uses intra refresh, not periodic IDRs (docs/video.md), so the
only self-contained pictures are the first IDR and the ones receivers asked for. Parameter sets repeat at
each refresh cycle's start (an "entry"), and FFmpeg withholds pictures until a refresh cycle has passed.
So frame k is reached by decoding from an IDR at or before k, or from an entry at least one refresh
period before k, whichever is later; forward playback just keeps decoding. Payloads are base64-decoded
only for the frames actually decoded.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
from collections import OrderedDict

import av
import numpy as np

from qa.session import Session, Table
from recording.catalog import Topics
from transport.video_wire import Layout
from video.codecs import CodecError, H264Decoder, JpegDecoder

log = logging.getLogger("qa.video")


def layout_of(value: object) -> Layout:
    """A layout as recorded (name, lower-case name or number)."""
    if isinstance(value, int | np.integer) or (isinstance(value, str) and value.isdigit()):
        return Layout(int(value))
    try:
        return Layout[str(value).upper().replace("-", "_")]
    except KeyError:
        return Layout.SIDE_BY_SIDE


_UNREADABLE = (ValueError, KeyError, TypeError, AttributeError, RecursionError)
"""What a recorded video message that is not what the recorder wrote raises on the way to its bytes (bad JSON,
bad base64 — binascii.Error is a ValueError —, no "data"): that frame is shown as missing."""


def _nal_types(data: bytes, limit: int = 8) -> list[int]:
    out, i = [], 0
    while len(out) < limit:
        i = data.find(b"\x00\x00\x01", i)
        if i < 0 or i + 3 >= len(data):
            break
        out.append(data[i + 3] & 0x1F)
        i += 3
    return out


class VideoTrack:
    """The frames one role recorded (`bedside`: as sent, `console`: as received), indexed by the instant
    each existed for that role on the session timeline (Session.video_frames)."""

    def __init__(self, session: Session, role: str, refresh_frames: int | None = None, cache: int = 24) -> None:
        self.session, self.role = session, role
        self.frames: Table = session.video_frames(role)
        raw = session.video_raw(role)
        self._raw_data: list[bytes] = raw.data if raw else []
        self.raw_index = self._match(raw.t if raw else [])
        self.refresh = refresh_frames or self._refresh_from_config() or 60
        self._entry = np.full(len(self.frames), -1, np.int8)  # -1 unknown, 0 no, 1 parameter sets (entry)
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_size = cache
        self._dec: H264Decoder | None = None
        self._dec_last = -10
        self._jpeg = JpegDecoder()
        self.format = self._format()
        self.decoded = 0
        """Pictures decoded so far (cost indicator for tests and the window's status line)."""

    def __len__(self) -> int:
        return len(self.frames)

    def _match(self, raw_t: list[int]) -> np.ndarray:
        """Row of the frame table -> index of its payload message (-1: payload not recorded)."""
        n = len(self.frames)
        if not n:
            return np.zeros(0, np.int64)
        pub = self.frames["pub_ns"]
        where = {t: i for i, t in enumerate(raw_t)}
        return np.asarray([where.get(int(t), -1) for t in pub], np.int64)

    def _refresh_from_config(self) -> int | None:
        for _t, body in self.session.json_rows(self.role, Topics(self.role).config):
            video = body.get("video")
            v = video.get("refresh_frames") if isinstance(video, dict) else None
            if isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 100_000:
                return v
        return None

    def _format(self) -> str:
        for i in self.raw_index[:1]:
            if i >= 0:
                with contextlib.suppress(*_UNREADABLE):
                    return str(json.loads(self._raw_data[i]).get("format", "h264")).lower()
        return "h264"

    def layout(self, i: int) -> Layout:
        return layout_of(self.frames["layout"][i]) if len(self.frames) else Layout.SIDE_BY_SIDE

    def index_at(self, t_ns: int) -> int:
        """The frame on screen for this role at `t_ns`: the last one at or before it (-1 before the first)."""
        return self.frames.at(t_ns) if len(self.frames) else -1

    def payload(self, i: int) -> bytes | None:
        j = int(self.raw_index[i])
        if j < 0:
            return None
        try:
            return base64.b64decode(json.loads(self._raw_data[j])["data"])
        except _UNREADABLE:
            return None

    def _is_entry(self, i: int) -> bool:
        if self._entry[i] < 0:
            j = int(self.raw_index[i])
            ok = False
            if j >= 0:
                d = self._raw_data[j]
                k = d.find(b'"data"')
                if k >= 0:  # only the first bytes of the payload: no full base64 decode
                    q = d.find(b'"', k + 6) + 1
                    with contextlib.suppress(ValueError):
                        ok = 7 in _nal_types(base64.b64decode(d[q : q + 64]))
            self._entry[i] = 1 if ok else 0
        return bool(self._entry[i])

    def frame(self, i: int) -> np.ndarray | None:
        """Frame `i` as BGR (None if it cannot be decoded from what was recorded)."""
        if i < 0 or i >= len(self.frames):
            return None
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        img = self._decode_jpeg(i) if self.format == "jpeg" else self._decode_h264(i)
        if img is not None:
            self._cache[i] = img
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return img

    def frame_at(self, t_ns: int) -> tuple[int, np.ndarray | None]:
        i = self.index_at(t_ns)
        return i, self.frame(i)

    def _decode_jpeg(self, i: int) -> np.ndarray | None:
        data = self.payload(i)
        if data is None:
            return None
        try:
            self.decoded += 1
            return self._jpeg.decode(data)
        except CodecError:
            return None

    def _start_for(self, i: int, before: int) -> int:
        """Where to start decoding to reach `i`: an IDR in (before-refresh, i], else an entry at or before
        `before` (or the very first frame)."""
        kf = self.frames["keyframe"]
        lo = max(0, before - self.refresh)
        for j in range(i, lo - 1, -1):
            if kf[j]:
                return j
        for j in range(min(before, i), -1, -1):
            if kf[j] or self._is_entry(j):
                return j
        return 0

    def _decode_h264(self, i: int) -> np.ndarray | None:
        if self._dec is not None and self._dec_last < i <= self._dec_last + 2 * self.refresh:
            img = self._run(self._dec_last + 1, i)
            if img is not None:
                return img
        before = i - (self.refresh - 1)
        for _attempt in range(3):
            start = self._start_for(i, max(0, before))
            if self._dec is None:
                self._dec = H264Decoder(threads=2)
            self._dec.reset()
            img = self._run(start, i)
            if img is not None or start == 0:
                return img
            before = start - self.refresh
        return None

    def _run(self, start: int, stop: int) -> np.ndarray | None:
        """Feed frames start..stop to the decoder; the picture of `stop` if it came out."""
        assert self._dec is not None
        out = None
        for j in range(start, stop + 1):
            data = self.payload(j)
            self._dec_last = j
            if data is None:
                continue
            try:
                if j < stop:
                    self._dec.cc.decode(av.Packet(data))  # reference only: no colour conversion
                else:
                    out = self._dec.decode(data)
                self.decoded += 1
            except (CodecError, av.error.FFmpegError):
                continue
        return out
