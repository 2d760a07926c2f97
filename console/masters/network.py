"""Network master: an external haptic-device driver (a dVRK MTM, a Touch bridge…) streams poses to us.

One fixed-size binary message per sample on a ZeroMQ SUB socket, newest wins (CONFLATE: a late burst is
never replayed). docs/masters.md gives the layout, the frames and the rates for bridge authors;
`encode_master_message` is the reference encoder.

    offset size  field
    0      4     magic b"TMST"
    4      1     version (1)
    5      1     flags: bit 0 = device valid (tracking ok)
    6      2     buttons: bit 0 operator_present, 1 clutch, 2 camera, 3 engage, 4 disengage, 5 estop, 6 swap
    8      4     seq (uint32, +1 per message; a restarted sender may start again anywhere)
    12     8     sender monotonic time, ns (int64; for the record only, never compared with ours)
    20     64    right hand (drives PSM1 until an arm swap): x y z (m), qx qy qz qw, gripper 0..1, all float64
    84     64    left hand (drives PSM2 until an arm swap): same
    148          total, little-endian throughout

The decoding and the staleness rule are pure (`NetworkMasterState`); `NetworkMaster` only adds the socket.
A sample is valid only if the newest message is younger than `timeout_ms` by *our* clock (receive time)
and the sender flagged it valid; otherwise the console holds the arms.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from base.geometry import UNIT_QUAT_TOLERANCE, Pose, is_unit_quat, q_norm, q_normalize
from console.master import MasterButtons, MasterError, MasterHand, MasterSample

MAGIC = b"TMST"
VERSION = 1
_FMT = struct.Struct("<4sBBHIq" + "d" * 16)
SIZE = _FMT.size
BUTTON_BITS = ("operator_present", "clutch", "camera", "engage", "disengage", "estop", "swap")
"""Bit i of the buttons field. `swap` (the arm-swap pedal) came after the others: a bridge that never sets it
still speaks version 1, and its hands keep PSM1 and PSM2."""
_RESTART_NS = 1_000_000_000
"""After this long without messages a lower sequence number is taken as a restarted sender."""


class MessageError(ValueError):
    """A network master message that is not well-formed; it is dropped."""


@dataclass(frozen=True, slots=True)
class MasterMessage:
    seq: int
    send_ns: int
    valid: bool
    hands: tuple[MasterHand, MasterHand]
    buttons: MasterButtons


def encode_master_message(seq: int, send_ns: int, hands: tuple[MasterHand, MasterHand], buttons: MasterButtons,
                          valid: bool = True) -> bytes:
    bits = sum(1 << i for i, name in enumerate(BUTTON_BITS) if getattr(buttons, name))
    vals: list[float] = []
    for h in hands:
        vals += [*h.pose.position, *h.pose.orientation, h.gripper]
    return _FMT.pack(MAGIC, VERSION, 1 if valid else 0, bits, seq & 0xFFFFFFFF, send_ns, *vals)


def decode_master_message(data: bytes) -> MasterMessage:
    if len(data) != SIZE:
        raise MessageError(f"expected {SIZE} bytes, got {len(data)}")
    magic, version, flags, bits, seq, send_ns, *v = _FMT.unpack(data)
    if magic != MAGIC or version != VERSION:
        raise MessageError(f"not a version-{VERSION} master message (magic {magic!r}, version {version})")
    if not all(math.isfinite(x) for x in v):
        raise MessageError("non-finite value")
    hands = []
    for h in range(2):
        b = 8 * h
        q = (v[b + 3], v[b + 4], v[b + 5], v[b + 6])
        if not is_unit_quat(q):
            raise MessageError(f"hand {h} quaternion norm {q_norm(q):.6g} is not 1 (tolerance {UNIT_QUAT_TOLERANCE:g})")
        hands.append(MasterHand(Pose((v[b], v[b + 1], v[b + 2]), q_normalize(q)), min(1.0, max(0.0, v[b + 7]))))
    buttons = MasterButtons(**{name: bool(bits >> i & 1) for i, name in enumerate(BUTTON_BITS)})
    return MasterMessage(seq, send_ns, bool(flags & 1), (hands[0], hands[1]), buttons)


class NetworkMasterState:
    """The newest message and when it arrived; turns into a MasterSample at any `now_ns`."""

    def __init__(self, timeout_ms: float = 50.0) -> None:
        self.timeout_ns = int(timeout_ms * 1e6)
        self.last: MasterMessage | None = None
        self.last_rx_ns: int | None = None
        self.dropped = 0
        self.received = 0

    def feed(self, rx_ns: int, data: bytes) -> bool:
        """One message received at `rx_ns`; False if it was malformed or older than the newest."""
        try:
            msg = decode_master_message(data)
        except MessageError:
            self.dropped += 1
            return False
        if self.last is not None and self.last_rx_ns is not None:
            restarted = rx_ns - self.last_rx_ns > _RESTART_NS
            if msg.seq <= self.last.seq and not restarted:
                self.dropped += 1
                return False
        self.last, self.last_rx_ns = msg, rx_ns
        self.received += 1
        return True

    def sample(self, now_ns: int) -> MasterSample:
        m = self.last
        if m is None or self.last_rx_ns is None:
            idle = MasterHand()
            return MasterSample(now_ns, (idle, idle), MasterButtons(), valid=False)
        fresh = now_ns - self.last_rx_ns <= self.timeout_ns
        buttons = m.buttons if fresh else MasterButtons()
        return MasterSample(now_ns, m.hands, buttons, valid=m.valid and fresh)


class NetworkMaster:
    """Binds (default) or connects a SUB socket at `endpoint` and reads it without blocking."""

    def __init__(self, endpoint: str = "tcp://127.0.0.1:5580", bind: bool = True, timeout_ms: float = 50.0,
                 ctx=None) -> None:
        import zmq

        from transport.zmqlink import master_subscriber

        self._zmq = zmq
        self.name = f"network:{endpoint}"
        self.state = NetworkMasterState(timeout_ms)
        self._ctx = ctx or zmq.Context.instance()
        try:
            self.sock = master_subscriber(self._ctx, endpoint, bind, key="console.master_port")  # closed on failure
        except zmq.ZMQError as exc:
            raise MasterError(f"network master cannot {'bind' if bind else 'connect'} {endpoint}: {exc}") from None
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT) if bind else endpoint

    def read(self, now_ns: int) -> MasterSample:
        zmq = self._zmq
        while True:
            try:
                data = self.sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            self.state.feed(now_ns, data)
        return self.state.sample(now_ns)

    def close(self) -> None:
        self.sock.close(0)
