"""The wire codec: round trips, and every malformed input rejected with a specific error."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transport import codec
from transport.messages import (
    N_ARMS,
    Ack,
    AckStatus,
    ArmFlags,
    ArmMode,
    ArmTelemetry,
    CartesianSetpoint,
    ConsoleFlags,
    Disable,
    Enable,
    EStop,
    Event,
    EventKind,
    OperatingState,
    Ping,
    Reason,
    ServoCp,
    Telemetry,
)

finite = st.floats(min_value=-10.0, max_value=10.0, allow_nan=False)
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)


@st.composite
def unit_quats(draw):
    q = [draw(st.floats(-1, 1)) for _ in range(4)]
    n = math.sqrt(sum(c * c for c in q))
    if n < 0.1:
        return (0.0, 0.0, 0.0, 1.0)
    return tuple(c / n for c in q)


setpoints = st.builds(CartesianSetpoint, st.tuples(finite, finite, finite), unit_quats(), finite)
servo = st.builds(
    ServoCp, u32, u64, i64, st.sampled_from(list(ConsoleFlags)), st.integers(0, 7),
    st.tuples(*(setpoints,) * N_ARMS),
)
arm_telem = st.builds(
    ArmTelemetry, st.sampled_from(list(ArmMode)), st.sampled_from([ArmFlags.HOMED, ArmFlags.HOMED | ArmFlags.BUSY]),
    setpoints, setpoints, st.tuples(*(finite,) * 7),
)
messages = st.one_of(
    servo,
    st.builds(Enable, u32, u64, i64),
    st.builds(Disable, u32, u64, i64),
    st.builds(Ping, u32, u64, i64),
    st.builds(EStop, u32, u64, i64, st.booleans()),
    st.builds(Ack, u32, u64, i64, u64, i64, i64, st.sampled_from(list(AckStatus)),
              st.sampled_from(list(OperatingState)), st.sampled_from(list(Reason))),
    st.builds(Telemetry, u32, u64, i64, st.sampled_from(list(OperatingState)), st.sampled_from(list(Reason)),
              st.booleans(), u64, st.tuples(*(arm_telem,) * N_ARMS)),
    st.builds(Event, u32, u64, i64, st.sampled_from(list(EventKind)), st.sampled_from(list(Reason)),
              st.sampled_from(list(OperatingState)), st.sampled_from(list(OperatingState)),
              st.text(max_size=200)),
)


@settings(max_examples=400, deadline=None)
@given(messages)
def test_round_trip(msg):
    assert codec.decode(codec.encode(msg)) == msg


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=3000))
def test_decode_of_arbitrary_bytes_is_a_message_or_a_protocol_error(data):
    with contextlib.suppress(codec.ProtocolError):
        codec.decode(data)


@settings(max_examples=1500, deadline=None)
@given(messages, st.data())
def test_corrupted_valid_frames_never_yield_an_invalid_message(msg, data):
    raw = bytearray(codec.encode(msg))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    try:
        out = codec.decode(bytes(raw))
    except codec.ProtocolError:
        return
    # Whatever decodes must itself be a valid message: re-encoding reproduces the bytes exactly.
    assert codec.encode(out) == bytes(raw)


def _servo(**kw) -> ServoCp:
    base = dict(epoch=7, seq=1, send_ns=1000, flags=ConsoleFlags.OPERATOR_PRESENT, arm_mask=1,
                arms=(CartesianSetpoint(),) * N_ARMS)
    base.update(kw)
    return ServoCp(**base)


def test_truncated_frames_rejected():
    raw = codec.encode(_servo())
    for n in (0, 1, 31, 32, len(raw) - 1):
        with pytest.raises(codec.TruncatedMessage):
            codec.decode(raw[:n])


def test_oversized_frame_rejected():
    with pytest.raises(codec.OversizedMessage):
        codec.decode(codec.encode(_servo()) + bytes(codec.MAX_MESSAGE_BYTES))


def test_trailing_bytes_rejected():
    raw = codec.encode(_servo())
    bad = raw[:28] + struct.pack("<I", len(raw) - 32 + 4) + raw[32:] + b"\0\0\0\0"
    with pytest.raises(codec.LengthMismatch):
        codec.decode(bad)


def test_wrong_version_and_magic_and_type_rejected():
    raw = bytearray(codec.encode(_servo()))
    for version in (1, codec.VERSION + 1):  # version 1 carried three arms: refused, never half-read
        v = bytearray(raw)
        v[4] = version
        with pytest.raises(codec.UnsupportedVersion):
            codec.decode(bytes(v))
    m = bytearray(raw)
    m[0:4] = b"HTTP"
    with pytest.raises(codec.BadMagic):
        codec.decode(bytes(m))
    t = bytearray(raw)
    t[5] = 99
    with pytest.raises(codec.UnknownMessageType):
        codec.decode(bytes(t))


def test_nan_and_non_unit_quaternion_and_unknown_bits_rejected():
    nan = CartesianSetpoint((math.nan, 0.0, 0.0))
    with pytest.raises(codec.InvalidField):
        codec.decode(codec.encode(_servo(arms=(nan,) * N_ARMS)))
    inf = CartesianSetpoint((0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0), math.inf)
    with pytest.raises(codec.InvalidField):
        codec.decode(codec.encode(_servo(arms=(inf,) * N_ARMS)))
    skew = CartesianSetpoint((0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.1))
    with pytest.raises(codec.InvalidField):
        codec.decode(codec.encode(_servo(arms=(skew,) * N_ARMS)))
    raw = bytearray(codec.encode(_servo()))
    raw[32] = 0x80  # unknown console flag
    with pytest.raises(codec.InvalidField):
        codec.decode(bytes(raw))
    raw = bytearray(codec.encode(_servo()))
    raw[33] = 0x10  # arm 4 does not exist (PSM1, PSM2, PSM3, ECM are bits 0-3)
    with pytest.raises(codec.InvalidField):
        codec.decode(bytes(raw))


def test_encode_refuses_what_the_wire_cannot_carry():
    with pytest.raises(codec.InvalidField):
        codec.encode(_servo(arms=(CartesianSetpoint(),)))
    with pytest.raises(codec.InvalidField):
        codec.encode(_servo(epoch=-1))
    with pytest.raises(codec.InvalidField):
        codec.encode(_servo(arm_mask=300))


def test_servo_cp_is_fixed_size():
    assert len(codec.encode(_servo())) == codec.SERVO_CP_SIZE == 292


def test_header_field_offsets_read_what_the_decoder_reads():
    """transport/paths.py reads the type and sequence of a frame without decoding it: the offsets must agree."""
    msg = _servo(seq=987_654_321)
    data = codec.encode(msg)
    assert data[codec.TYPE_OFFSET] == codec.MsgType.SERVO_CP
    assert struct.unpack_from("<Q", data, codec.SEQ_OFFSET)[0] == msg.seq
    assert struct.unpack_from("<q", codec.restamp(data, 123_456), codec.SEND_NS_OFFSET)[0] == 123_456
    assert codec.decode(codec.restamp(data, 123_456)).send_ns == 123_456


def _general_decode(data: bytes) -> tuple[str, object]:
    with pytest.MonkeyPatch.context() as m:
        m.setattr(codec, "_FAST_SERVO", False)
        return _outcome(data)


def _outcome(data: bytes) -> tuple[str, object]:
    try:
        return "ok", codec.decode(data)
    except codec.ProtocolError as exc:
        return type(exc).__name__, str(exc)


@settings(max_examples=1500, deadline=None)
@given(servo, st.data())
def test_servo_cp_fast_path_decodes_and_refuses_exactly_like_the_general_path(msg, data):
    """codec._servo_cp (the 1 kHz path) must accept, build and refuse (same error, same words) what the
    general decode does, on valid frames and on frames with a few bytes changed or a value made non-finite."""
    raw = bytearray(codec.encode(msg))
    kind = data.draw(st.sampled_from(["as is", "bytes", "non-finite", "quaternion"]))
    if kind == "bytes":
        for _ in range(data.draw(st.integers(1, 3))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    elif kind == "non-finite":
        field = data.draw(st.integers(0, 8 * N_ARMS - 1))
        value = data.draw(st.sampled_from([math.nan, math.inf, -math.inf, 1.7e308]))
        struct.pack_into("<d", raw, codec.HEADER_SIZE + 4 + 8 * field, value)
    elif kind == "quaternion":
        arm = data.draw(st.integers(0, N_ARMS - 1))
        struct.pack_into("<d", raw, codec.HEADER_SIZE + 4 + 8 * (8 * arm + 3 + data.draw(st.integers(0, 3))),
                         data.draw(st.floats(-2, 2)))
    assert _outcome(bytes(raw)) == _general_decode(bytes(raw))


def test_servo_cp_fast_path_builds_the_same_frozen_objects():
    """`_servo_cp` sets the slots directly (no dataclass __init__): the objects must still be frozen, equal and
    hash alike, down to each arm's setpoint."""
    a = CartesianSetpoint((0.01, -0.02, -0.09), (0.0, 0.0, 0.6, 0.8), 0.3)
    msg = _servo(arms=(a, CartesianSetpoint(), a, CartesianSetpoint()))
    fast, general = codec.decode(codec.encode(msg)), _general_decode(codec.encode(msg))[1]
    assert fast == general == msg and hash(fast) == hash(msg) and type(fast) is ServoCp
    assert all(type(sp) is CartesianSetpoint and hash(sp) == hash(ref)
               for sp, ref in zip(fast.arms, msg.arms, strict=True))
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.seq = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.arms[0].jaw = 1.0  # type: ignore[misc]


def test_servo_cp_overflowing_one_arm_is_refused_even_if_the_frame_sum_is_finite():
    """Each arm's own sum must be finite (as _setpoint checks), not just the sum over the frame."""
    a = CartesianSetpoint((-1.7e308, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0), 0.0)
    b = CartesianSetpoint((1.7e308, 1.7e308, 0.0), (0.0, 0.0, 0.0, 1.0), 0.0)
    with pytest.raises(codec.InvalidField, match="servo_cp arm 1: non-finite"):
        codec.decode(codec.encode(_servo(arms=(a, b, CartesianSetpoint(), CartesianSetpoint()))))


@settings(max_examples=300, deadline=None)
@given(u32, u64, i64, u64, i64, i64, st.sampled_from(list(AckStatus)), st.sampled_from(list(OperatingState)),
       st.sampled_from(list(Reason)))
def test_encode_ack_gives_the_bytes_of_encode(epoch, seq, send_ns, echo_seq, echo_send, rx, status, state, reason):
    assert codec.encode_ack(epoch, seq, send_ns, echo_seq, echo_send, rx, status, state, reason) == codec.encode(
        Ack(epoch, seq, send_ns, echo_seq, echo_send, rx, status, state, reason))
    with pytest.raises(codec.InvalidField):
        codec.encode_ack(2**32, seq, send_ns, echo_seq, echo_send, rx, status, state, reason)


def _result(fn):
    """The bytes `fn` returns, or the type and text of what it raises."""
    try:
        return fn()
    except Exception as exc:  # what is compared is exactly what each raises
        return type(exc), str(exc)


@settings(max_examples=300, deadline=None)
@given(servo, st.sampled_from(["none", "epoch", "seq", "send_ns", "mask", "arms", "nan", "not_a_setpoint"]))
def test_encode_servo_cp_gives_the_bytes_and_errors_of_encode(msg, corrupt):
    """The console's one-pack servo_cp (every tick) against the general `encode`: the same bytes for a valid
    command, the same exception with the same words for each field the wire cannot carry."""
    f = {"epoch": msg.epoch, "seq": msg.seq, "send_ns": msg.send_ns, "flags": msg.flags, "arm_mask": msg.arm_mask,
         "arms": msg.arms}
    bad = {"epoch": ("epoch", 2**32), "seq": ("seq", -1), "send_ns": ("send_ns", 2**63), "mask": ("arm_mask", 256),
           "arms": ("arms", msg.arms[:-1]), "nan": ("arms", (CartesianSetpoint((math.nan, 0.0, 0.0)), *msg.arms[1:])),
           "not_a_setpoint": ("arms", (None, *msg.arms[1:]))}
    if corrupt in bad:
        f[bad[corrupt][0]] = bad[corrupt][1]
    fast = _result(lambda: codec.encode_servo_cp(f["epoch"], f["seq"], f["send_ns"], f["flags"], f["arm_mask"],
                                                  f["arms"]))
    assert fast == _result(lambda: codec.encode(ServoCp(**f)))
    if corrupt in ("none", "nan"):  # the wire carries a NaN; the bedside's decode refuses it
        assert isinstance(fast, bytes)
    else:
        assert fast[0] in (codec.InvalidField, AttributeError, TypeError)
