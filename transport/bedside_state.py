"""The bedside's state for its own video process: a shared-memory seqlock the 1 kHz loop writes, the renderer reads.

Why shared memory and not the telemetry socket: the renderer needs the newest state at the moment it starts a
frame, not the one published up to 5 ms earlier (telemetry runs at 200 Hz); it lives on the same host, a child
of the bedside, so it needs no key and no socket; and the loop's cost is one `pack_into` (a few µs, measured by
`teleop bench hotpath`'s loop figures), with no queue that could fill and no reader that could block it.

Layout (little-endian, one block; `STATE` then `N` × `ARM`):

    STATE  u64 generation (seqlock: odd while the writer writes) | u32 version | u32 arm count |
           u64 state seq (one per write) | i64 state time (bedside CLOCK_MONOTONIC ns, after the arms advanced) |
           u64 telemetry seq (the last TELEMETRY published before) | u32 applied epoch | u32 reserved |
           u64 applied seq (the last servo_cp applied) | i64 applied send time (its header send_ns: CONSOLE clock) |
           i64 applied receive time (bedside clock)
    ARM    u8 mode (ArmMode) | 7 reserved | 8 f64 measured_cp (x y z qx qy qz qw jaw) | 3 f64 measured_cf (N)

The writer (`StateWriter`, the bedside loop) bumps the generation to odd, writes, bumps it to even. A reader
(`StateReader`, the video process) copies the block between two reads of the generation and retries while the
two differ or are odd, so it never sees half a write and never makes the writer wait. `pack`/`unpack` are pure.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import secrets
import struct
import tempfile
from dataclasses import dataclass

from base.geometry import ZERO_V, Vec3
from transport.messages import ArmMode, CartesianSetpoint

VERSION = 1
_GEN = struct.Struct("<Q")
_STATE = struct.Struct("<QIIQqQIIQqq")
_ARM = struct.Struct("<B7x11d")
_ARM_MODES = {int(m): m for m in ArmMode}


class StateError(RuntimeError):
    """A state block that cannot be read: missing, of another version, or never settling."""


@dataclass(frozen=True, slots=True)
class ArmState:
    mode: ArmMode
    measured_cp: CartesianSetpoint
    measured_cf: Vec3 = ZERO_V


@dataclass(frozen=True, slots=True)
class BedsideState:
    """What one frame is drawn from. `seq` 0: no bedside has written yet (the arms' home poses are shown)."""

    seq: int
    t_ns: int
    telemetry_seq: int
    applied_epoch: int
    applied_seq: int
    applied_send_ns: int
    """Console clock: the send time in the applied command's header."""
    applied_rx_ns: int
    """Bedside clock: when that command was taken off the socket."""
    arms: tuple[ArmState, ...]


def size(n_arms: int) -> int:
    return _STATE.size + n_arms * _ARM.size


def pack(s: BedsideState, generation: int = 0) -> bytes:
    parts = [_STATE.pack(generation, VERSION, len(s.arms), s.seq, s.t_ns, s.telemetry_seq, s.applied_epoch, 0,
                         s.applied_seq, s.applied_send_ns, s.applied_rx_ns)]
    for a in s.arms:
        sp = a.measured_cp
        parts.append(_ARM.pack(int(a.mode), *sp.position, *sp.orientation, sp.jaw, *a.measured_cf))
    return b"".join(parts)


def unpack(data: bytes | memoryview) -> BedsideState:
    """Decode a settled block; StateError for another version or a truncated block."""
    if len(data) < _STATE.size:
        raise StateError(f"state block of {len(data)} bytes, shorter than its {_STATE.size}-byte head")
    _, version, n, seq, t_ns, tseq, epoch, _, aseq, asend, arx = _STATE.unpack_from(data)
    if version != VERSION:
        raise StateError(f"state block version {version}, this end reads {VERSION}")
    if len(data) < size(n):
        raise StateError(f"state block of {len(data)} bytes for {n} arms needs {size(n)}")
    arms = []
    for i in range(n):
        mode, x, y, z, qx, qy, qz, qw, jaw, fx, fy, fz = _ARM.unpack_from(data, _STATE.size + i * _ARM.size)
        arms.append(ArmState(_ARM_MODES.get(mode, ArmMode.DISABLED), CartesianSetpoint((x, y, z), (qx, qy, qz, qw),
                                                                                       jaw), (fx, fy, fz)))
    return BedsideState(seq, t_ns, tseq, epoch, aseq, asend, arx, tuple(arms))


def _state_dir() -> str:
    return "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()


class StateWriter:
    """The bedside's side: creates the block (a file in /dev/shm, mode 600), writes it, removes it on close."""

    def __init__(self, n_arms: int, directory: str | None = None) -> None:
        self.n_arms = n_arms
        self.size = size(n_arms)
        self.path = os.path.join(directory or _state_dir(), f"teleop-state-{os.getpid()}-{secrets.token_hex(4)}")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, self.size)
            self._map = mmap.mmap(fd, self.size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        self._gen = 0
        self._seq = 0
        self._arm_off = [_STATE.size + i * _ARM.size for i in range(n_arms)]

    def write(self, t_ns: int, telemetry_seq: int, applied_epoch: int, applied_seq: int, applied_send_ns: int,
              applied_rx_ns: int, arms: list[tuple[int, CartesianSetpoint, Vec3]]) -> int:
        """One consistent state (`arms`: mode, measured_cp, measured_cf per arm, in wire order); its seq."""
        m, gen = self._map, self._gen + 1
        self._seq += 1
        _GEN.pack_into(m, 0, gen)  # odd: a reader that sees this retries
        _STATE.pack_into(m, 0, gen, VERSION, self.n_arms, self._seq, t_ns, telemetry_seq, applied_epoch, 0,
                         applied_seq, applied_send_ns, applied_rx_ns)
        pack_arm = _ARM.pack_into
        for off, (mode, sp, cf) in zip(self._arm_off, arms, strict=True):
            p, q = sp.position, sp.orientation
            pack_arm(m, off, mode, p[0], p[1], p[2], q[0], q[1], q[2], q[3], sp.jaw, cf[0], cf[1], cf[2])
        self._gen = gen + 1
        _GEN.pack_into(m, 0, self._gen)  # even: settled
        return self._seq

    def close(self) -> None:
        self._map.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


class StateReader:
    """The video process's side: maps the block read-only; `read` returns the newest settled state."""

    def __init__(self, path: str) -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise StateError(f"cannot open the bedside state block {path}: {exc.strerror}") from None
        try:
            n = os.fstat(fd).st_size
            if n < _STATE.size:
                raise StateError(f"bedside state block {path} has {n} bytes: not a state block")
            self._map = mmap.mmap(fd, n, mmap.MAP_SHARED, mmap.PROT_READ)
        finally:
            os.close(fd)
        self.path = path
        self.retries = 0

    def read(self, attempts: int = 1000) -> BedsideState | None:
        """The newest settled state; None while the bedside has written none."""
        m = self._map
        for _ in range(attempts):
            (g1,) = _GEN.unpack_from(m, 0)
            if g1 == 0:
                return None
            if not g1 & 1:
                data = m[:]
                (g2,) = _GEN.unpack_from(m, 0)
                if g1 == g2:
                    return unpack(data)
            self.retries += 1
            os.sched_yield()
        raise StateError(f"bedside state block {self.path} did not settle in {attempts} attempts")

    def close(self) -> None:
        self._map.close()
