"""The voice packet (docs/protocol.md, "Voice"): one Opus frame, or a keepalive, per ZeroMQ message.

    offset size  field
    0      2     magic b"VC"
    2      1     version (1)
    3      1     kind: 1 AUDIO (payload = one Opus packet), 2 KEEPALIVE (no payload)
    4      1     flags: bit0 TALKING (the sender's mic is open), bit1 LAST (last frame of a talk spurt)
    5      4     seq: u32, +1 per AUDIO frame (keepalives carry the next seq, unchanged)
    9      4     media time: u32, samples at 48 kHz of the first sample of this frame
    13     8     sent_ns: u64, the sender's monotonic clock at send (delay measurement, recordings)
    21     2     payload length n (AUDIO: 1..1275, Opus's largest packet; KEEPALIVE: 0)
    23     n     payload

Little-endian. No CRC: CurveZMQ authenticates every message (a changed byte fails its MAC). Pure.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum, IntFlag

MAGIC = b"VC"
VERSION = 1
HEADER = struct.Struct("<2sBBBIIQH")
MAX_OPUS = 1275


class Kind(IntEnum):
    AUDIO = 1
    KEEPALIVE = 2


class Flags(IntFlag):
    NONE = 0
    TALKING = 1
    LAST = 2


class VoiceWireError(ValueError):
    """A voice packet that must not be played; the text says which field."""


@dataclass(frozen=True, slots=True)
class VoicePacket:
    kind: Kind
    flags: Flags
    seq: int
    media_ts: int
    sent_ns: int
    payload: bytes = b""


def encode(p: VoicePacket) -> bytes:
    return HEADER.pack(MAGIC, VERSION, p.kind, p.flags, p.seq & 0xFFFFFFFF, p.media_ts & 0xFFFFFFFF,
                       p.sent_ns, len(p.payload)) + p.payload


def decode(data: bytes) -> VoicePacket:
    """The packet in `data`; VoiceWireError naming the first bad field."""
    if len(data) < HEADER.size:
        raise VoiceWireError(f"voice packet of {len(data)} bytes is shorter than its {HEADER.size}-byte header")
    magic, version, kind, flags, seq, ts, sent_ns, n = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise VoiceWireError("not a voice packet (bad magic)")
    if version != VERSION:
        raise VoiceWireError(f"voice packet version {version}, this end speaks {VERSION}")
    if kind not in (Kind.AUDIO, Kind.KEEPALIVE):
        raise VoiceWireError(f"unknown voice packet kind {kind}")
    if flags & ~int(Flags.TALKING | Flags.LAST) & 0xFF:
        raise VoiceWireError(f"unknown voice flags 0x{flags:02x}")
    if len(data) != HEADER.size + n:
        raise VoiceWireError(f"voice payload length {n} does not match the {len(data) - HEADER.size} bytes sent")
    if kind == Kind.AUDIO and not 1 <= n <= MAX_OPUS:
        raise VoiceWireError(f"audio payload of {n} bytes (an Opus packet has 1..{MAX_OPUS})")
    if kind == Kind.KEEPALIVE and n:
        raise VoiceWireError("keepalive with a payload")
    return VoicePacket(Kind(kind), Flags(flags), seq, ts, sent_ns, bytes(data[HEADER.size:]))
