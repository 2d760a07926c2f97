"""Pure codec for the control and telemetry links: bytes in, one valid message out, or a ProtocolError.

No sockets and no clocks here (sans-IO, like h11). `decode` never returns a half-valid message: it checks
the header, the exact length for the type, every enum, every float (finite), every quaternion (unit:
`base.geometry.is_unit_quat`) and every reserved field before it builds anything. Layout: docs/protocol.md.
"""

from __future__ import annotations

import json
import math
import struct

from base.geometry import UNIT_QUAT_TOLERANCE, is_unit_quat, q_norm
from transport.messages import (
    N_ARMS,
    N_JOINTS,
    Ack,
    AckStatus,
    ArmFlags,
    ArmMode,
    ArmTelemetry,
    CartesianSetpoint,
    ConsoleFlags,
    Counters,
    Disable,
    Enable,
    EStop,
    Event,
    EventKind,
    Message,
    MsgType,
    OperatingState,
    Ping,
    Reason,
    ServoCp,
    Telemetry,
)

MAGIC = b"SRGT"
VERSION = 2
"""2: four arms (PSM1, PSM2, PSM3, ECM) in SERVO_CP and TELEMETRY; REJECTED_ARM; measured_cf per arm in TELEMETRY;
REJECTED_TISSUE_DEPTH. Version 1 had three arms and no contact force."""
HEADER = struct.Struct("<4sBBHIQqI")
HEADER_SIZE = HEADER.size  # 32
TYPE_OFFSET = struct.calcsize("<4sB")  # 5: the message type byte
SEQ_OFFSET = struct.calcsize("<4sBBHI")  # 12: the sequence number (u64)
SEND_NS_OFFSET = struct.calcsize("<4sBBHIQ")  # 20: the send time (i64)
"""Header field offsets, derived from HEADER, for code that reads one field of a frame without decoding it
(transport/paths.py's copy and first-copy rules, `restamp`)."""
MAX_MESSAGE_BYTES = 4096
MAX_EVENT_TEXT_BYTES = 1024
MAX_COUNTERS_BYTES = 3072
MAX_ESTOP_REASON_BYTES = 256
"""An e-stop's reason text (the station's reset must give one, docs/protocol.md ESTOP)."""
U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1

_SETPOINT_FMT = "8d"  # x y z qx qy qz qw jaw
_SERVO = struct.Struct("<BBH" + _SETPOINT_FMT * N_ARMS)
_ESTOP = struct.Struct("<BBH")
_ACK = struct.Struct("<QqqBBBB")
_TELEM_HEAD = struct.Struct("<BBBBQ")
_TELEM_ARM = struct.Struct("<BBH" + _SETPOINT_FMT * 2 + f"{N_JOINTS}d" + "3d")  # ... measured_js, measured_cf
_EVENT_HEAD = struct.Struct("<BBBBH")

_ALL_ARMS_MASK = (1 << N_ARMS) - 1
_CONSOLE_FLAG_BITS = int(ConsoleFlags.OPERATOR_PRESENT | ConsoleFlags.CLUTCH | ConsoleFlags.CAMERA)
_ARM_FLAG_BITS = int(ArmFlags.HOMED | ArmFlags.BUSY | ArmFlags.LIMIT)

_FIXED_PAYLOAD = {
    MsgType.SERVO_CP: _SERVO.size,
    MsgType.ENABLE: 0,
    MsgType.DISABLE: 0,
    MsgType.PING: 0,
    MsgType.ACK: _ACK.size,
    MsgType.TELEMETRY: _TELEM_HEAD.size + N_ARMS * _TELEM_ARM.size,
}
_SERVO_SIZE = _SERVO.size
SERVO_CP_SIZE = HEADER_SIZE + _SERVO_SIZE
_SERVO_FRAME = struct.Struct(HEADER.format + _SERVO.format[1:])
"""A whole servo_cp frame in one unpack: the 1 kHz fast path of `decode` (same checks, fewer steps)."""
_ACK_FRAME = struct.Struct(HEADER.format + _ACK.format[1:])
_CONSOLE_FLAGS = tuple(ConsoleFlags(i) for i in range(_CONSOLE_FLAG_BITS + 1))
_MSG_TYPES = {int(t): t for t in MsgType}
_SERVO_CP_TYPE, _ACK_TYPE = int(MsgType.SERVO_CP), int(MsgType.ACK)
"""The 1 kHz paths compare and pack these plain ints: reading a member off an Enum class costs ~100 ns in 3.11."""
_BYTES_LIKE = (bytes, bytearray, memoryview)
"""A tuple built once: `bytes | bytearray | memoryview` in `decode` built a new union at every call."""
_FAST_SERVO = N_ARMS == 4  # `_servo_cp` is unrolled for four arms; any other count takes the general path


class ProtocolError(ValueError):
    """Bytes that are not a valid message. Never acted on; counted and reported by the receiver."""


class TruncatedMessage(ProtocolError):
    pass


class OversizedMessage(ProtocolError):
    pass


class BadMagic(ProtocolError):
    pass


class UnsupportedVersion(ProtocolError):
    pass


class UnknownMessageType(ProtocolError):
    pass


class LengthMismatch(ProtocolError):
    pass


class InvalidField(ProtocolError):
    pass


# --------------------------------------------------------------------------------------------- encode


def _header(mtype: MsgType, msg: Message, payload_len: int) -> bytes:
    if not (0 <= msg.epoch <= U32_MAX and 0 <= msg.seq <= U64_MAX):
        raise InvalidField(f"epoch {msg.epoch} or seq {msg.seq} out of range")
    return HEADER.pack(MAGIC, VERSION, mtype, 0, msg.epoch, msg.seq, msg.send_ns, payload_len)


def _sp_fields(sp: CartesianSetpoint) -> tuple[float, ...]:
    return (*sp.position, *sp.orientation, sp.jaw)


def encode(msg: Message) -> bytes:
    """Serialise one message; raises InvalidField for values the wire cannot carry."""
    try:
        if isinstance(msg, ServoCp):
            if len(msg.arms) != N_ARMS:
                raise InvalidField(f"servo_cp needs {N_ARMS} arm setpoints, got {len(msg.arms)}")
            fields: list[float] = []
            for sp in msg.arms:
                fields.extend(_sp_fields(sp))
            payload = _SERVO.pack(int(msg.flags), msg.arm_mask, 0, *fields)
            return _header(MsgType.SERVO_CP, msg, len(payload)) + payload
        if isinstance(msg, Ack):
            payload = _ACK.pack(
                msg.echo_seq, msg.echo_send_ns, msg.rx_ns, msg.status, msg.operating_state, msg.reason, 0
            )
            return _header(MsgType.ACK, msg, len(payload)) + payload
        if isinstance(msg, Telemetry):
            if len(msg.arms) != N_ARMS:
                raise InvalidField(f"telemetry needs {N_ARMS} arms, got {len(msg.arms)}")
            parts = [
                _TELEM_HEAD.pack(msg.operating_state, msg.reason, int(msg.estop), 0, msg.last_applied_seq)
            ]
            for arm in msg.arms:
                if len(arm.measured_js) != N_JOINTS:
                    raise InvalidField(f"measured_js needs {N_JOINTS} joints")
                parts.append(
                    _TELEM_ARM.pack(
                        arm.mode,
                        int(arm.flags),
                        0,
                        *_sp_fields(arm.measured_cp),
                        *_sp_fields(arm.setpoint_cp),
                        *arm.measured_js,
                        *arm.measured_cf,
                    )
                )
            payload = b"".join(parts)
            return _header(MsgType.TELEMETRY, msg, len(payload)) + payload
        if isinstance(msg, Event):
            text = msg.text.encode("utf-8")[:MAX_EVENT_TEXT_BYTES]
            text = text.decode("utf-8", "ignore").encode("utf-8")  # never cut a character in half
            payload = (
                _EVENT_HEAD.pack(msg.kind, msg.reason, msg.from_state, msg.to_state, len(text)) + text
            )
            return _header(MsgType.EVENT, msg, len(payload)) + payload
        if isinstance(msg, Counters):
            payload = json.dumps(msg.values, separators=(",", ":"), sort_keys=True).encode("utf-8")
            if len(payload) > MAX_COUNTERS_BYTES:
                raise InvalidField(f"counters need {len(payload)} bytes, limit {MAX_COUNTERS_BYTES}")
            return _header(MsgType.COUNTERS, msg, len(payload)) + payload
        if isinstance(msg, EStop):
            reason = msg.reason.encode("utf-8")
            if len(reason) > MAX_ESTOP_REASON_BYTES:
                raise InvalidField(f"e-stop reason is {len(reason)} bytes, limit {MAX_ESTOP_REASON_BYTES}")
            payload = _ESTOP.pack(int(msg.engage), 0, len(reason)) + reason
            return _header(MsgType.ESTOP, msg, len(payload)) + payload
        for cls, mtype in _EMPTY_TYPES:
            if type(msg) is cls:
                return _header(mtype, msg, 0)
    except struct.error as exc:
        raise InvalidField(f"cannot encode {type(msg).__name__}: {exc}") from exc
    raise InvalidField(f"not a wire message: {type(msg).__name__}")


_EMPTY_TYPES = ((Enable, MsgType.ENABLE), (Disable, MsgType.DISABLE), (Ping, MsgType.PING))


def encode_ack(epoch: int, seq: int, send_ns: int, echo_seq: int, echo_send_ns: int, rx_ns: int,
               status: AckStatus, operating_state: OperatingState, reason: Reason) -> bytes:
    """`encode(Ack(...))` without building the Ack: the bedside answers every command at 1 kHz with one.
    Same bytes, same range checks (tests/test_codec.py compares the two)."""
    if not (0 <= epoch <= U32_MAX and 0 <= seq <= U64_MAX):
        raise InvalidField(f"epoch {epoch} or seq {seq} out of range")
    try:
        return _ACK_FRAME.pack(MAGIC, VERSION, _ACK_TYPE, 0, epoch, seq, send_ns, _ACK_SIZE,
                               echo_seq, echo_send_ns, rx_ns, status, operating_state, reason, 0)
    except struct.error as exc:
        raise InvalidField(f"cannot encode Ack: {exc}") from exc


def encode_servo_cp(epoch: int, seq: int, send_ns: int, flags: ConsoleFlags, arm_mask: int,
                    arms: tuple[CartesianSetpoint, ...]) -> bytes:
    """`encode(ServoCp(...))` without building the ServoCp: the console sends one every tick. The whole frame in
    one pack; anything that pack refuses (a field out of range, a wrong arm count, a setpoint that is not one)
    goes through `encode`, which raises the same error as ever. Same bytes (tests/test_codec.py compares the
    two); 0.7 µs instead of 1.9 µs with the ServoCp built (thread_time, best of 3 × 50,000, 2026-12-02)."""
    if _FAST_SERVO and len(arms) == N_ARMS:
        a, b, c, d = arms
        try:
            return _SERVO_FRAME.pack(MAGIC, VERSION, _SERVO_CP_TYPE, 0, epoch, seq, send_ns, _SERVO_SIZE,
                                     int(flags), arm_mask, 0,
                                     *a.position, *a.orientation, a.jaw, *b.position, *b.orientation, b.jaw,
                                     *c.position, *c.orientation, c.jaw, *d.position, *d.orientation, d.jaw)
        except (struct.error, TypeError, ValueError, AttributeError):
            pass  # the general path below says why, in its own words
    return encode(ServoCp(epoch, seq, send_ns, flags, arm_mask, arms))


_ACK_SIZE = _ACK.size
_SEND_NS = struct.Struct("<q")


def restamp(frame: bytes, send_ns: int) -> bytes:
    """The same frame with its header send time replaced by `send_ns`.

    Logic layers encode with the tick's `now`; the socket layer restamps right before the send call, so
    the time the far end echoes (t1) or reports (t3) is when the bytes really left, not when the tick began.
    """
    return frame[:SEND_NS_OFFSET] + _SEND_NS.pack(send_ns) + frame[SEND_NS_OFFSET + 8 :]


# --------------------------------------------------------------------------------------------- decode


_ENUM_MEMBERS: dict[type, dict[int, object]] = {
    cls: {int(m): m for m in cls} for cls in (AckStatus, OperatingState, Reason, EventKind, ArmMode)
}
"""A dict lookup instead of the Enum constructor (several per ack and telemetry frame, on both loops)."""


def _enum(cls, value: int, what: str):
    member = _ENUM_MEMBERS[cls].get(value) if cls in _ENUM_MEMBERS else None
    if member is not None:
        return member
    try:
        return cls(value)
    except ValueError:
        raise InvalidField(f"{what}: unknown value {value}") from None


def _setpoint(v: tuple[float, ...], i: int, what: str) -> CartesianSetpoint:
    x, y, z, qx, qy, qz, qw, jaw = v[i : i + 8]
    # NaN and ±inf survive a sum; so does overflow of absurd magnitudes (> 1e307), rejected alike.
    if not math.isfinite(x + y + z + qx + qy + qz + qw + jaw):
        raise InvalidField(f"{what}: non-finite value")
    q = (qx, qy, qz, qw)
    if not is_unit_quat(q):
        raise InvalidField(f"{what}: orientation is not a unit quaternion (|q| = {q_norm(q):.6g}, "
                           f"tolerance {UNIT_QUAT_TOLERANCE:g})")
    return CartesianSetpoint((x, y, z), q, jaw)


def _text_tail(data: bytes, start: int, length: int, limit: int, what: str) -> str:
    """The UTF-8 text that ends a frame at `start`, whose head says it is `length` bytes (at most `limit`)."""
    if length != len(data) - start or length > limit:
        raise LengthMismatch(f"{what} length {length} does not match its frame")
    try:
        return data[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidField(f"{what} is not UTF-8: {exc}") from None


def decode_header(data: bytes) -> tuple[MsgType, int, int, int, int]:
    """Validate the header and the total length; returns (type, epoch, seq, send_ns, payload_len)."""
    n = len(data)
    if n > MAX_MESSAGE_BYTES:
        raise OversizedMessage(f"{n} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")
    if n < HEADER_SIZE:
        raise TruncatedMessage(f"{n} bytes is shorter than the {HEADER_SIZE}-byte header")
    magic, version, mtype, flags, epoch, seq, send_ns, plen = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise BadMagic(f"bad magic {magic!r}")
    if version != VERSION:
        raise UnsupportedVersion(f"protocol version {version}, this end speaks {VERSION}")
    mt = _MSG_TYPES.get(mtype)
    if mt is None:
        raise UnknownMessageType(f"unknown message type {mtype}")
    if flags != 0:
        raise InvalidField(f"reserved header flags must be 0, got {flags:#x}")
    if plen != n - HEADER_SIZE:
        cls = TruncatedMessage if plen > n - HEADER_SIZE else LengthMismatch
        raise cls(f"header says {plen} payload bytes, frame carries {n - HEADER_SIZE}")
    expected = _FIXED_PAYLOAD.get(mt)
    if expected is not None and plen != expected:
        cls = TruncatedMessage if plen < expected else LengthMismatch
        raise cls(f"{mt.name} payload must be {expected} bytes, got {plen}")
    return mt, epoch, seq, send_ns, plen


def _check_servo_fields(flags: int, mask: int, reserved: int) -> None:
    """servo_cp's flag, arm-mask and reserved fields: raise the specific error for the first bad one."""
    if flags & ~_CONSOLE_FLAG_BITS:
        raise InvalidField(f"unknown console flag bits {flags:#x}")
    if mask & ~_ALL_ARMS_MASK:
        raise InvalidField(f"arm mask {mask:#x} names an arm that does not exist")
    if reserved:
        raise InvalidField("reserved servo_cp field must be 0")


def _made(cls: type, *fields):
    """The setters of `cls`'s slots `fields`, in order, with the bare allocator: `_setpoint_of` and `_servo_cp_of`
    build the decoded objects with these instead of the frozen dataclass's __init__, whose object.__setattr__ per
    field is the costliest part of decoding a servo_cp at 1 kHz (13.8k of 196k instructions per command)."""
    return (object.__new__, cls, *(getattr(cls, f).__set__ for f in fields))


_MAKE_SETPOINT = _made(CartesianSetpoint, "position", "orientation", "jaw")
_MAKE_SERVO_CP = _made(ServoCp, "epoch", "seq", "send_ns", "flags", "arm_mask", "arms")


def _setpoint_of(position, orientation, jaw, _m=_MAKE_SETPOINT):
    """`CartesianSetpoint(position, orientation, jaw)` for values `_servo_cp` has checked: the same frozen object
    (equal, hashable, immutable; tests/test_codec.py compares the two), its slots set directly."""
    new, cls, p, o, j = _m
    sp = new(cls)
    p(sp, position)
    o(sp, orientation)
    j(sp, jaw)
    return sp


def _servo_cp_of(epoch, seq, send_ns, flags, arm_mask, arms, _m=_MAKE_SERVO_CP):
    """`ServoCp(...)` for checked values, as `_setpoint_of` builds a CartesianSetpoint."""
    new, cls, e, s, t, f, m, a = _m
    msg = new(cls)
    e(msg, epoch)
    s(msg, seq)
    t(msg, send_ns)
    f(msg, flags)
    m(msg, arm_mask)
    a(msg, arms)
    return msg


_ARM_BYTES = 8 * 8
_ARM_AT = tuple(HEADER_SIZE + 4 + _ARM_BYTES * i for i in range(N_ARMS))
"""Where each arm's setpoint (8 doubles) starts in a servo_cp frame."""
_LAST_ARM: list[tuple[bytes, CartesianSetpoint | None]] = [(b"", None)] * N_ARMS
"""Per arm, the last setpoint `_servo_cp` built and the exact bytes it came from. An arm that did not move since
the last frame (two of the four in a two-handed stream: the idle instrument and the endoscope) decodes to that
same immutable object again instead of being checked and built anew (~8k instructions each): equal bytes are an
equal, already valid setpoint. A pair is replaced whole (one store), so a decode in another thread reads a
consistent pair."""


def _arm_of(data: bytes, v: tuple, i: int) -> CartesianSetpoint | None:
    """Arm `i`'s setpoint from a servo_cp frame (`v`: its fields), or None if it fails `_setpoint`'s checks (the
    caller then raises `_setpoint`'s error): the sums and unit quaternion of `_setpoint`, term for term."""
    start = _ARM_AT[i]
    raw = data[start:start + _ARM_BYTES]
    last = _LAST_ARM[i]
    if last[0] == raw:
        return last[1]
    k = 11 + 8 * i
    x, y, z, qx, qy, qz, qw, jaw = v[k:k + 8]
    q = (qx, qy, qz, qw)
    if not (math.isfinite(x + y + z + qx + qy + qz + qw + jaw) and is_unit_quat(q)):
        return None
    sp = _setpoint_of((x, y, z), q, jaw)
    _LAST_ARM[i] = (raw, sp)
    return sp


def _servo_cp(v: tuple, data: bytes) -> ServoCp:
    """The payload checks of a servo_cp for the 1 kHz path (`_arm_of` per arm); any failure is re-checked by the
    general code (`_setpoint`), so the error raised is exactly the one it names. `v` = header + payload fields of
    the frame `data`."""
    flags, mask, reserved = v[8], v[9], v[10]
    if flags & ~_CONSOLE_FLAG_BITS or mask & ~_ALL_ARMS_MASK or reserved:
        _check_servo_fields(flags, mask, reserved)
    a0, a1, a2, a3 = _arm_of(data, v, 0), _arm_of(data, v, 1), _arm_of(data, v, 2), _arm_of(data, v, 3)
    if a0 is None or a1 is None or a2 is None or a3 is None:
        for i in range(N_ARMS):
            _setpoint(v, 11 + 8 * i, f"servo_cp arm {i}")  # raises for the first bad arm
        raise AssertionError("unreachable: the fast check and _setpoint disagree")  # pragma: no cover
    return _servo_cp_of(v[4], v[5], v[6], _CONSOLE_FLAGS[flags], mask, (a0, a1, a2, a3))


def decode(data: bytes) -> Message:
    """Parse one frame. Returns a fully valid message or raises a ProtocolError subclass; nothing else."""
    if not isinstance(data, _BYTES_LIKE):
        raise ProtocolError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if _FAST_SERVO and len(data) == SERVO_CP_SIZE:
        v = _SERVO_FRAME.unpack_from(data)
        if v[0] == MAGIC and v[1] == VERSION and v[2] == _SERVO_CP_TYPE and not v[3] and v[7] == _SERVO_SIZE:
            return _servo_cp(v, data)  # a well-formed servo_cp header: what decode_header would have accepted
    mt, epoch, seq, send_ns, plen = decode_header(data)
    off = HEADER_SIZE
    if mt is MsgType.SERVO_CP:
        v = _SERVO.unpack_from(data, off)
        flags, mask, reserved = v[0], v[1], v[2]
        _check_servo_fields(flags, mask, reserved)
        arms = tuple(_setpoint(v, 3 + 8 * i, f"servo_cp arm {i}") for i in range(N_ARMS))
        return ServoCp(epoch, seq, send_ns, ConsoleFlags(flags), mask, arms)
    if mt is MsgType.ACK:
        echo_seq, echo_send, rx_ns, status, state, reason, pad = _ACK.unpack_from(data, off)
        if pad:
            raise InvalidField("reserved ack field must be 0")
        return Ack(
            epoch,
            seq,
            send_ns,
            echo_seq,
            echo_send,
            rx_ns,
            _enum(AckStatus, status, "ack status"),
            _enum(OperatingState, state, "operating_state"),
            _enum(Reason, reason, "reason"),
        )
    if mt is MsgType.TELEMETRY:
        state, reason, estop, pad, last_seq = _TELEM_HEAD.unpack_from(data, off)
        if pad or estop > 1:
            raise InvalidField("telemetry reserved/estop field out of range")
        off += _TELEM_HEAD.size
        arms = []
        for i in range(N_ARMS):
            v = _TELEM_ARM.unpack_from(data, off + i * _TELEM_ARM.size)
            if v[2]:
                raise InvalidField("reserved telemetry arm field must be 0")
            if v[1] & ~_ARM_FLAG_BITS:
                raise InvalidField(f"unknown arm flag bits {v[1]:#x}")
            js = v[19 : 19 + N_JOINTS]
            if not all(math.isfinite(j) for j in js):
                raise InvalidField("measured_js: non-finite value")
            cf = v[19 + N_JOINTS :]
            if not math.isfinite(cf[0] + cf[1] + cf[2]):
                raise InvalidField("measured_cf: non-finite value")
            arms.append(
                ArmTelemetry(
                    _enum(ArmMode, v[0], "arm mode"),
                    ArmFlags(v[1]),
                    _setpoint(v, 3, f"measured_cp arm {i}"),
                    _setpoint(v, 11, f"setpoint_cp arm {i}"),
                    tuple(js),
                    cf,
                )
            )
        return Telemetry(
            epoch,
            seq,
            send_ns,
            _enum(OperatingState, state, "operating_state"),
            _enum(Reason, reason, "reason"),
            bool(estop),
            last_seq,
            tuple(arms),
        )
    if mt is MsgType.EVENT:
        if plen < _EVENT_HEAD.size:
            raise TruncatedMessage("event payload shorter than its head")
        kind, reason, from_s, to_s, tlen = _EVENT_HEAD.unpack_from(data, off)
        text = _text_tail(data, off + _EVENT_HEAD.size, tlen, MAX_EVENT_TEXT_BYTES, "event text")
        return Event(
            epoch,
            seq,
            send_ns,
            _enum(EventKind, kind, "event kind"),
            _enum(Reason, reason, "reason"),
            _enum(OperatingState, from_s, "from_state"),
            _enum(OperatingState, to_s, "to_state"),
            text,
        )
    if mt is MsgType.COUNTERS:
        if plen > MAX_COUNTERS_BYTES:
            raise OversizedMessage(f"counters payload {plen} bytes exceeds {MAX_COUNTERS_BYTES}")
        try:
            values = json.loads(data[off:].decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # 3 KB of "[" nests past the stack
            raise InvalidField(f"counters are not JSON: {type(exc).__name__}: {exc}") from None
        if not isinstance(values, dict) or not all(
            isinstance(k, str) and type(v) is int and 0 <= v <= U64_MAX for k, v in values.items()
        ):
            raise InvalidField("counters must map names to non-negative integers")
        return Counters(epoch, seq, send_ns, values)
    if mt is MsgType.ESTOP:
        if plen < _ESTOP.size:
            raise TruncatedMessage(f"ESTOP payload must be at least {_ESTOP.size} bytes, got {plen}")
        engage, r1, rlen = _ESTOP.unpack_from(data, off)
        if engage > 1 or r1:
            raise InvalidField("estop fields out of range")
        reason = _text_tail(data, off + _ESTOP.size, rlen, MAX_ESTOP_REASON_BYTES, "estop reason")
        return EStop(epoch, seq, send_ns, bool(engage), reason)
    if mt is MsgType.ENABLE:
        return Enable(epoch, seq, send_ns)
    if mt is MsgType.DISABLE:
        return Disable(epoch, seq, send_ns)
    return Ping(epoch, seq, send_ns)
