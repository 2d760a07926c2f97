"""Network master: an external haptic-device driver (a dVRK MTM, a Touch bridge…) streams poses to us, and we
stream the contact force back (protocol version 2, two-way).

Samples, bridge → console: one fixed-size binary message per sample on a ZeroMQ SUB socket, newest wins
(CONFLATE: a late burst is never replayed). Forces, console → bridge: one fixed-size message per control tick
on a PUB socket the bridge subscribes to (CONFLATE on its side). docs/masters.md gives both layouts, the frames
and the rates for bridge authors; `encode_master_message` / `decode_force_message` are the reference codecs and
docs/example_bridge.py a complete bridge that uses neither (struct and pyzmq only).

Sample, version 2 (200 bytes, little-endian; version 1 = the first 148 bytes, still accepted):

    offset size  field
    0      4     magic b"TMST"
    4      1     version (2; 1 = no velocities, no source, no deadman flag)
    5      1     flags: bit 0 = device valid (tracking ok), bit 1 = presence is a deadman (no debounce)
    6      2     buttons: bit 0 operator_present, 1 clutch, 2 camera, 3 engage, 4 disengage, 5 estop, 6 swap
    8      4     seq (uint32, +1 per message; a restarted sender may start again anywhere)
    12     8     sender monotonic time, ns (int64; for the record only, never compared with ours)
    20     64    right hand (drives PSM1 until an arm swap): x y z (m), qx qy qz qw, gripper 0..1, all float64
    84     64    left hand (drives PSM2 until an arm swap): same
    148    48    v2: right hand velocity x y z, left hand velocity x y z (m/s, master frame), float64
    196    4     v2: source id (uint32, random per bridge start, nonzero): one source drives at a time

Force, version 2 (88 bytes): magic b"TFRC", version, flags (bit 0 fresh, bit 1/2 the passivity controller is
acting on the right/left hand), reserved uint16, seq, the newest sample seq seen, send time, measured time and
receive time of the force (console clock, ns; 0 = none yet), right force x y z, left force x y z (N, master frame).

The decoding, the staleness rule and the one-source rule are pure (`NetworkMasterState`); `NetworkMaster` only
adds the sockets. A sample is valid only if the newest message is younger than `timeout_ms` by *our* clock
(receive time) and the sender flagged it valid; otherwise the console holds the arms.
"""

from __future__ import annotations

import logging
import math
import struct
from dataclasses import dataclass

from base.geometry import UNIT_QUAT_TOLERANCE, ZERO_V, Pose, Vec3, is_unit_quat, q_norm, q_normalize
from console.master import MasterButtons, MasterError, MasterHand, MasterSample

log = logging.getLogger("console.masters")

MAGIC = b"TMST"
VERSION = 2
_FMT_V1 = struct.Struct("<4sBBHIq" + "d" * 16)
_FMT = struct.Struct("<4sBBHIq" + "d" * 22 + "I")
SIZE = _FMT.size
"""A version-2 sample (what every bridge should send); `SIZE_V1` bytes of version 1 are still accepted."""
SIZE_V1 = _FMT_V1.size
BUTTON_BITS = ("operator_present", "clutch", "camera", "engage", "disengage", "estop", "swap")
"""Bit i of the buttons field. `swap` (the arm-swap pedal) came after the others: a bridge that never sets it
still speaks version 1, and its hands keep PSM1 and PSM2."""
FLAG_VALID = 1
FLAG_DEADMAN = 2
"""Version 2: the presence bit comes from a deadman switch the device debounces: its release holds at once."""
_RESTART_NS = 1_000_000_000
"""After this long without messages a lower sequence number is taken as a restarted sender, and another source
may take over."""
_MAX_SPEED = 100.0
"""m/s: a velocity beyond this is not a hand's (a unit error): the message is refused."""

FORCE_MAGIC = b"TFRC"
FORCE_VERSION = 2
_FORCE_FMT = struct.Struct("<4sBBHIIqqq6d")
FORCE_SIZE = _FORCE_FMT.size
FORCE_FRESH = 1
FORCE_PC_RIGHT = 2
FORCE_PC_LEFT = 4


class MessageError(ValueError):
    """A network master message that is not well-formed; it is dropped."""


@dataclass(frozen=True, slots=True)
class MasterMessage:
    seq: int
    send_ns: int
    valid: bool
    hands: tuple[MasterHand, MasterHand]
    buttons: MasterButtons
    version: int = VERSION
    velocities: tuple[Vec3, Vec3] | None = None
    """Version 2 only (None for version 1)."""
    source: int = 0
    deadman: bool = False


@dataclass(frozen=True, slots=True)
class ForceMessage:
    """What the console sends a bridge every tick: the force for each hand, already scaled, saturated, faded when
    stale and made passive (console/force.py), in the master frame, in newtons."""

    seq: int
    echo_seq: int
    send_ns: int
    measured_ns: int
    """When the bedside measured the force, on the console's clock (its offset estimate); 0: none yet."""
    rx_ns: int
    """When the console received it (the stale guard's clock); 0: none yet."""
    forces: tuple[Vec3, Vec3]
    fresh: bool = True
    passivity: tuple[bool, bool] = (False, False)
    """Whether the passivity controller changed each hand's force on this tick."""


def encode_master_message(seq: int, send_ns: int, hands: tuple[MasterHand, MasterHand], buttons: MasterButtons,
                          valid: bool = True, velocities: tuple[Vec3, Vec3] | None = None, source: int = 0,
                          deadman: bool = False) -> bytes:
    """A version-2 sample (velocities zero when not given: such a bridge's hands feel no force, see
    docs/masters.md)."""
    bits = sum(1 << i for i, name in enumerate(BUTTON_BITS) if getattr(buttons, name))
    vals: list[float] = []
    for h in hands:
        vals += [*h.pose.position, *h.pose.orientation, h.gripper]
    for v in velocities or (ZERO_V, ZERO_V):
        vals += [*v]
    flags = (FLAG_VALID if valid else 0) | (FLAG_DEADMAN if deadman else 0)
    return _FMT.pack(MAGIC, VERSION, flags, bits, seq & 0xFFFFFFFF, send_ns, *vals, source & 0xFFFFFFFF)


def decode_master_message(data: bytes) -> MasterMessage:
    if len(data) == SIZE:
        magic, version, flags, bits, seq, send_ns, *v = _FMT.unpack(data)
        source = v.pop()
        want = VERSION
    elif len(data) == SIZE_V1:
        magic, version, flags, bits, seq, send_ns, *v = _FMT_V1.unpack(data)
        source, want = 0, 1
    else:
        raise MessageError(f"expected {SIZE} bytes (version 2) or {SIZE_V1} (version 1), got {len(data)}")
    if magic != MAGIC or version != want:
        raise MessageError(f"not a version-{want} master message of {len(data)} bytes (magic {magic!r}, "
                           f"version {version})")
    if not all(math.isfinite(x) for x in v):
        raise MessageError("non-finite value")
    hands = []
    for h in range(2):
        b = 8 * h
        q = (v[b + 3], v[b + 4], v[b + 5], v[b + 6])
        if not is_unit_quat(q):
            raise MessageError(f"hand {h} quaternion norm {q_norm(q):.6g} is not 1 (tolerance {UNIT_QUAT_TOLERANCE:g})")
        hands.append(MasterHand(Pose((v[b], v[b + 1], v[b + 2]), q_normalize(q)), min(1.0, max(0.0, v[b + 7]))))
    velocities = None
    if version >= 2:
        if max(abs(x) for x in v[16:22]) > _MAX_SPEED:
            raise MessageError(f"hand velocity beyond {_MAX_SPEED:g} m/s: send m/s in the master frame")
        velocities = ((v[16], v[17], v[18]), (v[19], v[20], v[21]))
    buttons = MasterButtons(**{name: bool(bits >> i & 1) for i, name in enumerate(BUTTON_BITS)})
    return MasterMessage(seq, send_ns, bool(flags & FLAG_VALID), (hands[0], hands[1]), buttons, version,
                         velocities, source, version >= 2 and bool(flags & FLAG_DEADMAN))


def encode_force_message(m: ForceMessage) -> bytes:
    flags = ((FORCE_FRESH if m.fresh else 0) | (FORCE_PC_RIGHT if m.passivity[0] else 0)
             | (FORCE_PC_LEFT if m.passivity[1] else 0))
    return _FORCE_FMT.pack(FORCE_MAGIC, FORCE_VERSION, flags, 0, m.seq & 0xFFFFFFFF, m.echo_seq & 0xFFFFFFFF,
                           m.send_ns, m.measured_ns, m.rx_ns, *m.forces[0], *m.forces[1])


def decode_force_message(data: bytes) -> ForceMessage:
    """For bridges (and tests): a force message, or MessageError (a bridge must then apply zero force)."""
    if len(data) != FORCE_SIZE:
        raise MessageError(f"expected {FORCE_SIZE} bytes, got {len(data)}")
    magic, version, flags, _, seq, echo, send_ns, measured_ns, rx_ns, *f = _FORCE_FMT.unpack(data)
    if magic != FORCE_MAGIC or version != FORCE_VERSION:
        raise MessageError(f"not a version-{FORCE_VERSION} force message (magic {magic!r}, version {version})")
    if not all(math.isfinite(x) for x in f):
        raise MessageError("non-finite force")
    return ForceMessage(seq, echo, send_ns, measured_ns, rx_ns, ((f[0], f[1], f[2]), (f[3], f[4], f[5])),
                        bool(flags & FORCE_FRESH), (bool(flags & FORCE_PC_RIGHT), bool(flags & FORCE_PC_LEFT)))


class NetworkMasterState:
    """The newest message and when it arrived; turns into a MasterSample at any `now_ns`.

    One source drives: a version-2 message from another source id than the one driving is refused (counted in
    `conflicts`) until the driving one has been silent for 1 s; so two bridges started by mistake never take
    turns moving the arms (the one that came second is told so in the log, once)."""

    def __init__(self, timeout_ms: float = 50.0, label: str = "the master bridge") -> None:
        self.timeout_ns = int(timeout_ms * 1e6)
        self.label = label
        """What the fault texts call the sender ("the master bridge", "the window's keyboard/mouse stream")."""
        self.last: MasterMessage | None = None
        self.last_rx_ns: int | None = None
        self.dropped = 0
        self.received = 0
        self.conflicts = 0

    def feed(self, rx_ns: int, data: bytes) -> bool:
        """One message received at `rx_ns`; False if it was malformed, older than the newest or from a second
        source."""
        try:
            msg = decode_master_message(data)
        except MessageError:
            self.dropped += 1
            return False
        if self.last is not None and self.last_rx_ns is not None:
            restarted = rx_ns - self.last_rx_ns > _RESTART_NS
            if msg.source != self.last.source and not restarted:
                self.conflicts += 1
                if self.conflicts == 1:
                    log.warning("master samples from a second source (id %d) refused: source %d drives; stop one "
                                "of the two bridges", msg.source, self.last.source)
                return False
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
            return MasterSample(now_ns, (idle, idle), MasterButtons(), valid=False,
                                fault=f"no sample from {self.label} yet: start it (docs/masters.md)")
        age_ms = (now_ns - self.last_rx_ns) / 1e6
        fresh = age_ms <= self.timeout_ns / 1e6
        buttons = m.buttons if fresh else MasterButtons()
        fault = ""
        if not fresh:
            fault = f"no sample from {self.label} for {age_ms:.0f} ms: check it and its device"
        elif not m.valid:
            fault = f"{self.label} reports its device invalid (tracking lost or device fault): check the device"
        return MasterSample(now_ns, m.hands, buttons, valid=m.valid and fresh, fault=fault,
                            presence_immediate=m.deadman, velocities=m.velocities if fresh else None)


class NetworkMaster:
    """Binds (default) or connects a SUB socket at `endpoint` and reads it without blocking; with
    `force_endpoint`, also a PUB for force feedback (bound or connected the same way)."""

    def __init__(self, endpoint: str = "tcp://127.0.0.1:5583", bind: bool = True, timeout_ms: float = 50.0,
                 ctx=None, force_endpoint: str | None = None, key: str = "console.bridge_endpoint",
                 label: str = "the master bridge") -> None:
        import zmq

        from transport.zmqlink import force_publisher, master_subscriber

        self._zmq = zmq
        self.name = f"network:{endpoint}"
        self.state = NetworkMasterState(timeout_ms, label)
        self._ctx = ctx or zmq.Context.instance()
        self.force_sock = None
        self.forces_sent = 0
        try:
            self.sock = master_subscriber(self._ctx, endpoint, bind, key=key)  # closed on failure
        except zmq.ZMQError as exc:
            raise MasterError(f"network master cannot {'bind' if bind else 'connect'} {endpoint}: {exc}") from None
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT) if bind else endpoint
        if force_endpoint is not None:
            try:
                self.force_sock = force_publisher(self._ctx, force_endpoint, bind,
                                                  key="console.bridge_force_endpoint")
            except zmq.ZMQError as exc:
                self.sock.close(0)
                raise MasterError(f"network master cannot {'bind' if bind else 'connect'} its force stream "
                                  f"{force_endpoint}: {exc}") from None
            self.force_endpoint = (self.force_sock.getsockopt_string(zmq.LAST_ENDPOINT) if bind
                                   else force_endpoint)

    def read(self, now_ns: int) -> MasterSample:
        zmq = self._zmq
        while True:
            try:
                data = self.sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            self.state.feed(now_ns, data)
        return self.state.sample(now_ns)

    @property
    def takes_force(self) -> bool:
        return self.force_sock is not None

    def send_force(self, msg: ForceMessage) -> None:
        """Never blocks: a bridge that does not read loses forces, the newest wins on its side."""
        if self.force_sock is None:
            return
        try:
            self.force_sock.send(encode_force_message(msg), self._zmq.NOBLOCK)
            self.forces_sent += 1
        except self._zmq.Again:
            pass

    def close(self) -> None:
        self.sock.close(0)
        if self.force_sock is not None:
            self.force_sock.close(0)
