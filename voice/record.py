"""Voice in the black box: every Opus packet sent and heard at this end, in an MCAP file of its own.

File `voice-<side>-<date>-<time>-<nnn>.mcap` in `recording.dir`, next to the role's own recordings, with
the same time conventions (docs/recording.md): `log_time` = wall clock, `publish_time` = monotonic `t_ns`,
metadata `teleop.session` with `mono_to_wall_ns`, so QA lines voice up with the video by wall time.
Channels (JSON; schemas in docs/recording.md, "Voice"):

* `/<side>/voice/tx`, `/<side>/voice/rx` — `foxglove.CompressedAudio` (format `opus`, one raw Opus packet a
  message, RFC 6716 §3; Foxglove plays it) with our extra fields `t_ns`, `seq`, `media_ts`, `sent_ns`, `flags`;
* `/<side>/voice/link` — `teleop.VoiceLink`: each link transition (`t_ns`, `from`, `to`, `trigger`, `reason`,
  `text`).

Written by a thread of its own from a bounded queue (full = counted drop): a slow disk delays the file,
never the voice thread. Keepalives are not recorded (the link channel says when the far end went quiet).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import queue
import socket
import threading
import time
from pathlib import Path
from typing import Any

from mcap.writer import CompressionType, Writer

from base import __version__
from base.errors import UserError
from safety.statemachine import Transition, label
from voice import wire

log = logging.getLogger("voice.record")

_TIME = {"type": "object", "title": "time", "properties": {
    "sec": {"type": "integer", "minimum": 0}, "nsec": {"type": "integer", "minimum": 0, "maximum": 999999999}}}

FOXGLOVE_COMPRESSED_AUDIO: dict[str, Any] = {
    "title": "foxglove.CompressedAudio",
    "description": "A single chunk of a compressed audio bitstream",
    "$comment": "Foxglove's schema (docs.foxglove.dev, CompressedAudio) plus teleop fields t_ns, seq, media_ts, "
                "sent_ns, flags",
    "type": "object",
    "properties": {
        "timestamp": {**_TIME, "description": "Timestamp of the start of the audio chunk"},
        "data": {"type": "string", "contentEncoding": "base64", "description": "Compressed audio data"},
        "format": {"type": "string", "description": "Audio format: opus (a raw Opus packet, RFC 6716 §3)"},
        "t_ns": {"type": "integer"}, "seq": {"type": "integer"}, "media_ts": {"type": "integer"},
        "sent_ns": {"type": "integer"}, "flags": {"type": "integer"},
    },
    "required": ["timestamp", "data", "format"],
}
VOICE_LINK_SCHEMA: dict[str, Any] = {
    "title": "teleop.VoiceLink", "type": "object",
    "properties": {k: {"type": "string"} for k in ("from", "to", "trigger", "reason", "text")} | {
        "t_ns": {"type": "integer"}},
}


class VoiceRecordError(UserError, OSError):
    label = "recording error"


def topics(side: str) -> dict[str, str]:
    """The voice topics of one side: the one place they are spelled (qa/voice.py reads them from here)."""
    return {"tx": f"/{side}/voice/tx", "rx": f"/{side}/voice/rx", "link": f"/{side}/voice/link"}


class VoiceRecorder:
    """`packet(direction, t_ns, bytes)` and `transition(tr)` from the voice thread; `close()` at the end."""

    def __init__(self, directory: str | Path, side: str, chunk_ms: int = 250, max_queue: int = 2000) -> None:
        self.side = side
        self.topics = topics(side)
        self.dir = Path(directory).expanduser()
        self.mono_to_wall_ns = time.time_ns() - time.monotonic_ns()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            for n in range(1000):
                self.path = self.dir / f"voice-{side}-{stamp}-{n:03d}.mcap"
                try:
                    fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
                    break
                except FileExistsError:
                    continue
        except OSError as exc:
            raise VoiceRecordError(f"cannot write a voice recording in {self.dir} ({exc.strerror or exc}): set "
                                   "recording.dir to a writable directory, or voice.record = false") from None
        self._f = os.fdopen(fd, "wb")
        self._w = Writer(self._f, compression=CompressionType.ZSTD)
        self._w.start(library=f"teleop {__version__}")
        self._w.add_metadata("teleop.session", {"role": f"voice-{side}", "host": socket.gethostname(),
                                                "pid": str(os.getpid()), "mono_to_wall_ns": str(self.mono_to_wall_ns),
                                                "software_version": __version__})
        audio = self._w.register_schema("foxglove.CompressedAudio", "jsonschema",
                                        json.dumps(FOXGLOVE_COMPRESSED_AUDIO).encode())
        link = self._w.register_schema("teleop.VoiceLink", "jsonschema", json.dumps(VOICE_LINK_SCHEMA).encode())
        self._ch = {"tx": self._w.register_channel(self.topics["tx"], "json", audio),
                    "rx": self._w.register_channel(self.topics["rx"], "json", audio),
                    "link": self._w.register_channel(self.topics["link"], "json", link)}
        self.chunk_ns = chunk_ms * 1_000_000
        self._q: queue.Queue[tuple[str, int, dict] | None] = queue.Queue(max_queue)
        self.dropped = 0
        self.written = 0
        self._thread = threading.Thread(target=self._run, name=f"voice-record-{side}", daemon=True)
        self._thread.start()

    def _put(self, item: tuple[str, int, dict]) -> None:
        try:
            self._q.put_nowait(item)
        except queue.Full:
            self.dropped += 1

    def packet(self, direction: str, t_ns: int, data: bytes) -> None:
        try:
            p = wire.decode(data)
        except wire.VoiceWireError:
            return
        if p.kind != wire.Kind.AUDIO:
            return
        wall = t_ns + self.mono_to_wall_ns
        self._put((direction, t_ns, {
            "timestamp": {"sec": wall // 1_000_000_000, "nsec": wall % 1_000_000_000},
            "data": base64.b64encode(p.payload).decode("ascii"), "format": "opus", "t_ns": t_ns, "seq": p.seq,
            "media_ts": p.media_ts, "sent_ns": p.sent_ns, "flags": int(p.flags)}))

    def transition(self, tr: Transition) -> None:
        self._put(("link", tr.t_ns, {"t_ns": tr.t_ns, "from": label(tr.from_state), "to": label(tr.to_state),
                                     "trigger": label(tr.trigger), "reason": tr.reason.name, "text": tr.text}))

    def _run(self) -> None:
        last_flush = time.monotonic_ns()
        while True:
            try:
                item = self._q.get(timeout=self.chunk_ns / 1e9)
            except queue.Empty:
                item = ()  # type: ignore[assignment]
            if item is None:
                return
            if item:
                ch, t_ns, msg = item
                self._w.add_message(self._ch[ch], max(0, t_ns + self.mono_to_wall_ns),
                                    json.dumps(msg, separators=(",", ":")).encode(), max(0, t_ns))
                self.written += 1
            now = time.monotonic_ns()
            if now - last_flush >= self.chunk_ns:
                with contextlib.suppress(Exception):
                    self._f.flush()
                last_flush = now

    def close(self) -> None:
        """Write what is queued, the summary and the footer."""
        self._q.put(None)
        self._thread.join(10)
        try:
            self._w.finish()
            self._f.close()
        except (OSError, ValueError) as exc:
            log.error("voice recording %s not closed cleanly: %s", self.path, exc)
        log.info("voice recorded to %s (%d messages, %d dropped)", self.path, self.written, self.dropped)
