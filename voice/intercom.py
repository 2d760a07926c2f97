"""One end of the voice intercom, I/O-free: mic frames and packets in, packets and speaker frames out.

`VoiceEndpoint` is fed the time by its owner (voice/link.py's thread, or a test's fake clock) and returns
bytes to send, PCM to play and state transitions; it opens no socket, device or file. What it decides:

* who hears the mic: push-to-talk (`set_ptt`) or open mic (`set_mode("open")`), never while muted; the
  last frame of a talk spurt is flagged LAST so the far end stops without concealing into silence;
* the playout: the jitter buffer picks a packet, a concealed frame or silence each period; `volume` (0..2)
  scales it; meters report mic and speaker levels for both windows;
* the voice link: CONNECTING → UP on the first valid packet, UP → LOST after `lost_ms` without one (each end
  sends a keepalive every `keepalive_ms` while it is not talking, so silence is not loss), LOST → UP when
  packets return. LOST is an alarm state (docs/safety.md): it is shown and sounded, and never holds an arm.
  It is judged on the union of paths: with several (link.paths) every packet comes on each, the first copy
  is played and the others are dropped before the jitter buffer (voice/paths.py), so one path dying costs
  nothing; each path's own state is in `snapshot()["paths"]`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from safety.statemachine import StateMachine, Transition, TransitionTable
from transport.messages import Reason
from voice import wire
from voice.audio_io import FRAME, RATE
from voice.jitter import JitterBuffer, Out
from voice.levels import Meter
from voice.opus import OpusDecoder, OpusEncoder
from voice.paths import VoicePaths

FRAME_NS = FRAME * 1_000_000_000 // RATE


class VoiceState(Enum):
    CONNECTING = "CONNECTING"
    UP = "UP"
    LOST = "LOST"


class VoiceTrigger(Enum):
    HEARD = "heard"
    SILENT = "silent"


VOICE_LINK = TransitionTable(
    "voice link",
    VoiceState.CONNECTING,
    {
        (VoiceState.CONNECTING, VoiceTrigger.HEARD): VoiceState.UP,
        (VoiceState.CONNECTING, VoiceTrigger.SILENT): VoiceState.LOST,
        (VoiceState.UP, VoiceTrigger.SILENT): VoiceState.LOST,
        (VoiceState.LOST, VoiceTrigger.HEARD): VoiceState.UP,
    },
    alarm=(VoiceState.LOST,),
)
"""The voice link as each end sees it (docs/state-machines.md)."""

MODES = ("ptt", "open")


@dataclass(frozen=True)
class VoiceSettings:
    mode: str = "ptt"
    volume: float = 1.0
    bitrate: int = 32_000
    lost_ms: float = 500.0
    keepalive_ms: float = 100.0
    jitter_min_ms: float = 10.0
    jitter_max_ms: float = 200.0


class VoiceEndpoint:
    def __init__(self, side: str, settings: VoiceSettings = VoiceSettings(), now_ns: int = 0,
                 n_paths: int = 1) -> None:
        if settings.mode not in MODES:
            raise ValueError(f"voice mode {settings.mode!r}: use one of {MODES}")
        self.side = side
        self.settings = settings
        self.mode = settings.mode
        self.volume = settings.volume
        self.ptt = False
        self.muted = False
        self.link = StateMachine(VOICE_LINK, f"voice_link[{side}]", now_ns)
        self.encoder = OpusEncoder(settings.bitrate)
        self.decoder = OpusDecoder()
        self.jitter = JitterBuffer(FRAME_NS, max(1, round(settings.jitter_min_ms * 1e6 / FRAME_NS)),
                                   max(1, round(settings.jitter_max_ms * 1e6 / FRAME_NS)))
        self.mic_meter = Meter()
        self.spk_meter = Meter()
        self._seq = 0
        self._media = 0
        self._was_talking = False
        self._last_sent_ns = now_ns
        self._last_heard_ns: int | None = None
        self.one_way_ns: list[int] = []
        """Arrival minus sent_ns per audio packet: a one-way delay when both ends share a clock (bench)."""
        self.counters = {"sent": 0, "keepalives": 0, "received": 0, "bad": 0}
        self.last_error = ""
        self.paths = VoicePaths(n_paths, int(settings.lost_ms * 1e6))
        self.path_events: list[tuple[int, bool, int]] = []
        """(path, up, t_ns) for each path's state change, for the owner to log and drain."""
        self.last_copy = False
        """Whether the last packet was a copy another path had delivered first (not recorded as heard)."""
        self._now_ns = now_ns

    # ------------------------------------------------------------------------------------------ controls

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"voice mode {mode!r}: use one of {MODES}")
        self.mode = mode

    def set_ptt(self, pressed: bool) -> None:
        self.ptt = bool(pressed)

    def set_mute(self, muted: bool) -> None:
        self.muted = bool(muted)

    def set_volume(self, volume: float) -> None:
        self.volume = float(min(2.0, max(0.0, volume)))

    @property
    def talking(self) -> bool:
        return not self.muted and (self.mode == "open" or self.ptt)

    # ------------------------------------------------------------------------------------------ mic path

    def on_mic_frame(self, samples: np.ndarray, now_ns: int) -> list[bytes]:
        """One captured frame: the packets to send now (an audio frame while talking, else maybe a keepalive)."""
        self.mic_meter.feed(samples if self.talking else np.zeros(0, np.float32), now_ns)
        out: list[bytes] = []
        media = self._media
        self._media = (self._media + samples.size) & 0xFFFFFFFF
        talking = self.talking
        if talking or self._was_talking:
            x = samples if talking else np.zeros_like(samples)
            flags = wire.Flags.TALKING if talking else wire.Flags.LAST
            for payload in self.encoder.encode(x):
                out.append(wire.encode(wire.VoicePacket(wire.Kind.AUDIO, flags, self._seq, media, now_ns, payload)))
                self._seq = (self._seq + 1) & 0xFFFFFFFF
                self.counters["sent"] += 1
        self._was_talking = talking
        if out:
            self._last_sent_ns = now_ns
        else:
            out += self.keepalive(now_ns)
        return out

    def keepalive(self, now_ns: int) -> list[bytes]:
        """A keepalive if none/no audio went out for keepalive_ms (also called by the owner when no mic runs)."""
        if now_ns - self._last_sent_ns < self.settings.keepalive_ms * 1e6:
            return []
        self._last_sent_ns = now_ns
        self.counters["keepalives"] += 1
        return [wire.encode(wire.VoicePacket(wire.Kind.KEEPALIVE, wire.Flags.NONE, self._seq, self._media, now_ns))]

    # ------------------------------------------------------------------------------------------ network

    def on_packet(self, data: bytes, now_ns: int, path: int = 0, peer: str = "") -> list[Transition]:
        """One message from the far end on `path`, sent by `peer` (its key; the lane its packets are
        de-duplicated in); a malformed one is counted and dropped (never played), a copy of an audio packet another
        path delivered first is counted on its path and dropped (`last_copy`)."""
        self.last_copy = False
        self._now_ns = max(self._now_ns, now_ns)
        try:
            p = wire.decode(data)
        except wire.VoiceWireError as exc:
            self.counters["bad"] += 1
            self.last_error = str(exc)
            return []
        self.counters["received"] += 1
        self._last_heard_ns = now_ns
        self._path_changes(self.paths.heard(path, now_ns), now_ns)
        if p.kind == wire.Kind.AUDIO and not self.paths.first_copy(peer, path, p.seq, p.sent_ns, now_ns):
            self.last_copy = True
        elif p.kind == wire.Kind.AUDIO:
            self.one_way_ns.append(now_ns - p.sent_ns)
            if len(self.one_way_ns) > 100_000:
                del self.one_way_ns[:50_000]
            self.jitter.push(p.seq, p.media_ts, p.payload, now_ns, last=bool(p.flags & wire.Flags.LAST))
        if self.link.can(VoiceTrigger.HEARD):
            return [self.link.fire(now_ns, VoiceTrigger.HEARD, Reason.NONE, "voice packets arriving")]
        return []

    def tick(self, now_ns: int) -> list[Transition]:
        """Judge the link: LOST after lost_ms without any packet (from the start, or from the last one)."""
        self._now_ns = max(self._now_ns, now_ns)
        self._path_changes(self.paths.tick(now_ns), now_ns)
        since = self._last_heard_ns if self._last_heard_ns is not None else self.link.since_ns
        if now_ns - since > self.settings.lost_ms * 1e6 and self.link.can(VoiceTrigger.SILENT):
            return [self.link.fire(now_ns, VoiceTrigger.SILENT, Reason.LINK_LOST,
                                   f"no voice packet for {self.settings.lost_ms:g} ms")]
        return []

    def _path_changes(self, changes: list[tuple[int, bool]], now_ns: int) -> None:
        if changes:
            self.path_events += [(k, up, now_ns) for k, up in changes]
            del self.path_events[:-64]  # an owner that never drains them keeps only the latest

    def drain_path_events(self) -> list[tuple[int, bool, int]]:
        out, self.path_events = self.path_events, []
        return out

    # ------------------------------------------------------------------------------------------ playout

    def playout(self, now_ns: int) -> tuple[np.ndarray, Out]:
        """The next FRAME samples for the speaker, volume applied, and what they were."""
        kind, payload = self.jitter.pop(now_ns)
        if kind == Out.PACKET:
            assert payload is not None
            pcm = self.decoder.decode(payload)
        elif kind == Out.CONCEAL:
            pcm = self.decoder.conceal()
        else:
            pcm = np.zeros(FRAME, dtype=np.float32)
        pcm = pcm * np.float32(self.volume)
        self.spk_meter.feed(pcm, now_ns)
        return pcm, kind

    def snapshot(self, now_ns: int | None = None) -> dict:
        """What a window shows: controls, levels, link state, buffer and loss counters, and per path (`paths`)
        its state and when it was last heard (at `now_ns`, default the latest time this end was fed)."""
        st = self.jitter.stats
        now = self._now_ns if now_ns is None else now_ns
        return {"side": self.side, "mode": self.mode, "ptt": self.ptt, "muted": self.muted, "talking": self.talking,
                "volume": round(self.volume, 2), "mic_db": round(self.mic_meter.level_db, 1),
                "spk_db": round(self.spk_meter.level_db, 1), "link": self.link.state.value,
                "link_since_ns": self.link.since_ns, "jitter_ms": st.target_frames * FRAME_NS / 1e6,
                "played": st.played, "concealed": st.concealed, "late": st.late, **self.counters,
                "duplicates": self.paths.counters["duplicates"], "lost": self.paths.lost,
                "paths": self.paths.snapshot(now)}
