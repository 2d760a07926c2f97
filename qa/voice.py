"""Recorded voice for QA: the Opus packets of `voice-<side>-*.mcap` files (voice/record.py) decoded into one
PCM track on the session's timeline, for a time range, so it plays in step with the recorded video.

Timeline: the same as qa/session.py's — the console's monotonic clock. A console-side voice file is on it
already (same host); a station-side file is on the bedside host's clock and is mapped with the session's
measured clock offset (`Session.to_timeline("bedside", …)`) when console/bedside recordings are given with
it. Each packet is placed at its recorded time (arrival for `rx`, send for `tx`); a missing sequence number
inside a talk spurt is concealed by the decoder, as it was live; silences stay silent.
"""

from __future__ import annotations

import json
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
from mcap.reader import make_reader

from voice.audio_io import FRAME, RATE
from voice.opus import OpusDecoder
from voice.record import topics

VOICE_FILE_PREFIX = "voice-"


def is_voice_file(path: str | Path) -> bool:
    return Path(path).name.startswith(VOICE_FILE_PREFIX)


def side_of(path: str | Path) -> str:
    """`console` or `station`, from the file name voice/record.py gives."""
    return Path(path).name[len(VOICE_FILE_PREFIX):].split("-", 1)[0]


def packets(path: str | Path, direction: str = "rx") -> list[tuple[int, int, bytes]]:
    """(t_ns, seq, opus packet) of one direction of one voice file, in time order (a file cut short by a kill
    reads to its last complete chunk)."""
    import base64

    topic = topics(side_of(path))[direction]
    out = []
    with open(path, "rb") as f:
        for _s, _c, m in make_reader(f).iter_messages(topics=[topic], log_time_order=False):
            msg = json.loads(m.data)
            out.append((int(msg["t_ns"]), int(msg["seq"]), base64.b64decode(msg["data"])))
    out.sort()
    return out


def track(path: str | Path, t0_ns: int, t1_ns: int, direction: str = "rx",
          to_timeline: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """The decoded voice of `path` between timeline times t0_ns and t1_ns, as float32 mono at RATE."""
    pk = packets(path, direction)
    out = np.zeros(max(0, int((t1_ns - t0_ns) * RATE // 1_000_000_000)), dtype=np.float32)
    if not pk:
        return out
    t = np.array([p[0] for p in pk], dtype=np.int64)
    if to_timeline is not None:
        t = np.asarray(to_timeline(t), dtype=np.int64)
    dec = OpusDecoder()
    last_seq = None
    for (_, seq, payload), tt in zip(pk, t, strict=True):
        frames = []
        if last_seq is not None and 0 < (seq - last_seq) & 0xFFFFFFFF <= 5:
            frames += [dec.conceal() for _ in range(((seq - last_seq) & 0xFFFFFFFF) - 1)]
        frames.append(dec.decode(payload))
        last_seq = seq
        pcm = np.concatenate(frames)
        start = int((tt - t0_ns) * RATE // 1_000_000_000) - (len(frames) - 1) * FRAME
        a, b = max(0, start), min(out.size, start + pcm.size)
        if a < b:
            out[a:b] += pcm[a - start:b - start]
    return out


def write_wav(path: str | Path, pcm: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes((np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes())


def first_time(path: str | Path) -> int | None:
    """The earliest recorded voice packet's t_ns (either direction), or None."""
    times = [p[0] for d in ("rx", "tx") for p in packets(path, d)[:1]]
    return min(times) if times else None


def export(files: list[str], from_s: float = 0.0, to_s: float | None = None, direction: str = "rx",
           side: str | None = None) -> tuple[np.ndarray, str]:
    """The voice heard (`rx`) or spoken (`tx`) at one end (`side`; default: the console's if given, else the
    station's) from `from_s` to `to_s` seconds of the session timeline (the replay window's axis when the
    console/bedside recordings are given too), and a one-line description. ValueError names what is missing."""
    from qa.session import Session

    voice = [f for f in files if is_voice_file(f)]
    others = [f for f in files if not is_voice_file(f)]
    if not voice:
        raise ValueError("no voice recording among the files: give a voice-console-*.mcap or voice-station-*.mcap "
                         "file (recording.dir) with --audio-out")
    sides = {side_of(f): f for f in voice}
    pick = side or ("console" if "console" in sides else "station")
    if pick not in sides:
        raise ValueError(f"no voice-{pick}-*.mcap among the files (have: {', '.join(sorted(sides))})")
    path = sides[pick]
    session = Session(others) if others else None
    mapping = None
    if session is not None and pick == "station":
        def mapping(t: np.ndarray) -> np.ndarray:
            return session.to_timeline("bedside", t)
    if session is not None:
        t0 = session.t0_ns
        end = session.t1_ns
    else:
        t0 = first_time(path) or 0
        last = [p[0] for d in ("rx", "tx") for p in packets(path, d)[-1:]]
        end = max(last) if last else t0
    t_from = t0 + int(from_s * 1e9)
    t_to = t0 + int(to_s * 1e9) if to_s is not None else end
    if t_to <= t_from:
        raise ValueError(f"empty time range {from_s:g}..{to_s} s (the session lasts {(end - t0) / 1e9:.1f} s)")
    pcm = track(path, t_from, t_to, direction, mapping)
    what = (f"voice {'heard' if direction == 'rx' else 'spoken'} at the {pick}, {(t_from - t0) / 1e9:.2f}–"
            f"{(t_to - t0) / 1e9:.2f} s of the session ({pcm.size / RATE:.2f} s)")
    return pcm, what
