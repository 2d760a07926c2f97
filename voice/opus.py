"""Opus through PyAV's bundled libopus: 48 kHz mono, 10 ms frames, and libopus's own loss concealment.

Concealment: a lost frame is decoded from a TOC-only packet (one byte, code 0, an empty frame). libopus
treats a frame of 0 bytes as lost (RFC 6716 §4.4; opus_decode_frame) and runs its PLC, which extrapolates
the last pitch period and fades it, so a lost 10 ms sounds like a soft smear, not a click of silence. The
encoder runs `lowdelay` (CELT only, 2.5 ms look-ahead) because mouth-to-ear time is the budget that matters.
"""

from __future__ import annotations

import fractions

import av
import numpy as np

from voice.audio_io import FRAME, RATE


class OpusEncoder:
    """float32 frames of FRAME samples in, one Opus packet (bytes) out per frame."""

    def __init__(self, bitrate: int = 32_000, application: str = "lowdelay") -> None:
        self._ctx = av.CodecContext.create("libopus", "w")
        self._ctx.sample_rate = RATE
        self._ctx.layout = "mono"
        self._ctx.format = "s16"
        self._ctx.bit_rate = bitrate
        self._ctx.time_base = fractions.Fraction(1, RATE)
        self._ctx.options = {"application": application, "frame_duration": str(FRAME * 1000 // RATE)}
        self._ctx.open()
        self._pts = 0

    def encode(self, samples: np.ndarray) -> list[bytes]:
        pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._pts
        self._pts += pcm.shape[1]
        return [bytes(p) for p in self._ctx.encode(frame)]


class OpusDecoder:
    """One Opus packet in, FRAME float32 samples out; `conceal()` for a frame that never came."""

    def __init__(self) -> None:
        self._ctx = av.CodecContext.create("libopus", "r")
        self._ctx.sample_rate = RATE
        self._ctx.layout = "mono"
        self._ctx.open()
        self._toc = 0
        self.errors = 0

    def decode(self, payload: bytes) -> np.ndarray:
        self._toc = payload[0] & 0xFC
        try:
            frames = self._ctx.decode(av.Packet(payload))
        except av.error.FFmpegError:
            self.errors += 1
            return self.conceal()
        return self._pcm(frames)

    def conceal(self) -> np.ndarray:
        """A frame of libopus packet-loss concealment (a TOC-only packet of the last configuration seen)."""
        try:
            frames = self._ctx.decode(av.Packet(bytes([self._toc])))
        except av.error.FFmpegError:
            self.errors += 1
            return np.zeros(FRAME, dtype=np.float32)
        return self._pcm(frames)

    @staticmethod
    def _pcm(frames) -> np.ndarray:
        if not frames:
            return np.zeros(FRAME, dtype=np.float32)
        parts = []
        for f in frames:
            a = f.to_ndarray()
            a = a.reshape(-1) if a.ndim == 1 or a.shape[0] == 1 else a[0]
            parts.append(a.astype(np.float32) / 32768.0 if a.dtype == np.int16 else a.astype(np.float32))
        out = np.concatenate(parts)
        if out.size < FRAME:
            out = np.pad(out, (0, FRAME - out.size))
        return out[:FRAME]
