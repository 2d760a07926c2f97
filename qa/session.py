"""Recorded sessions (docs/recording.md) as time-indexed numpy columns and one event list, on one timeline.

Why this shape: every QA tool (replay window, re-drive, report) asks "what was X at time t" or "plot X over
t", so each topic becomes columns sorted by time. Reading is streaming (a file cut short by SIGKILL still
yields everything up to the cut), topics are parsed from JSON only when first asked for (the report never
touches video bytes, the window never touches acks), and video payloads stay undecoded base64 JSON until a
frame is displayed.

Timeline: the console's monotonic clock when a console file is present (what the surgeon experienced),
else the bedside's. Bedside times map with `t_console = t_bedside − clock_offset_ns`, the offset being the
latest `/console/link` value at or before the instant. `Session.t0_ns` is the earliest message;
`seconds(t)` gives the axis the tools show.
"""

from __future__ import annotations

import json
import logging
import math
import re
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zstandard
from mcap.records import Channel, Chunk, Message, Metadata
from mcap.stream_reader import StreamReader

from base.errors import UserError
from recording.catalog import BEDSIDE, CONSOLE, Topics
from recording.writer import MAX_CHUNK_BYTES
from transport.messages import ARM_NAMES, N_ARMS
from transport.video_wire import MAX_PAYLOAD_BYTES

log = logging.getLogger("qa.session")


class RecordingError(UserError):
    """A recording that cannot be shown: one line naming the file and what is wrong with it."""

    label = "recording error"

MCAP_MAGIC = b"\x89MCAP0\r\n"


def check_files(paths: list[str]) -> list[str]:
    """Every path names a non-empty MCAP file; else the first bad one, why, and what to give instead."""
    for p in paths:
        path = Path(p)
        if not path.exists():
            raise RecordingError(f"{p} does not exist: give the path of a .mcap recording (`ls "
                                     "~/.local/state/teleop/recordings`, or `recording.dir` in the configuration)")
        if not path.is_file():
            raise RecordingError(f"{p} is not a file: give the path of a .mcap recording")
        try:
            with path.open("rb") as f:
                head = f.read(len(MCAP_MAGIC))
        except OSError as exc:
            raise RecordingError(f"{p} cannot be read ({exc.strerror}): check its permissions") from None
        if not head:
            raise RecordingError(f"{p} is empty (a recording cut off before its first byte): give another "
                                     "recording")
        if head != MCAP_MAGIC:
            raise RecordingError(f"{p} is not an MCAP recording (it does not start with the MCAP magic "
                                     "bytes): give a .mcap file written by teleop")
    return paths


Progress = Callable[[float, str], None]
"""progress(fraction 0..1, what): called now and then while loading."""

EVENT_KINDS = ("engagement", "clutch", "hold", "video", "freeze", "alarm", "limit", "rejection", "refusal", "state",
               "info")
"""Timeline marker kinds, in legend order."""
KIND_COLOURS = {"engagement": "#2ca02c", "clutch": "#1f77b4", "hold": "#ff7f0e", "video": "#9467bd",
                "freeze": "#d62728", "alarm": "#e377c2", "limit": "#d4a017", "rejection": "#8c564b",
                "refusal": "#17becf", "state": "#7f7f7f", "info": "#bcbd22"}
"""One colour per kind, in every plot and in the replay window's lanes."""

_FILE_RE = re.compile(r"^(bedside|console)-")


@dataclass
class FileInfo:
    path: Path
    role: str
    messages: int = 0
    truncated: bool = False
    error: str = ""
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class QaEvent:
    """One marker on the timeline: `t_ns` on the session timeline."""

    t_ns: int
    kind: str
    role: str
    name: str
    reason: str = ""
    text: str = ""
    latency_ms: float | None = None


class Raw:
    """One topic's undecoded messages in time order: publish_time (producer monotonic ns) and JSON bytes."""

    __slots__ = ("data", "t")

    def __init__(self) -> None:
        self.t: list[int] = []
        self.data: list[bytes] = []


_SHAPE_ERRORS = (KeyError, IndexError, TypeError, ValueError, AttributeError, OverflowError)
"""What building a table from well-formed JSON of the wrong shape raises (a string where a list belongs…)."""
_TELEOP_PREFIXES = (f"{CONSOLE.prefix}/", f"{BEDSIDE.prefix}/")
_I64_MAX = 2**63 - 1
MAX_SPAN_NS = 7 * 86_400_000_000_000
"""The longest a file or a session may span: a file rotates after at most a day (`recording.max_file_s`), a
week of parts is still one session. Beyond it a time is damaged (one bit flipped high in a publish time
stretches the timeline to 146 years) or the files are of different sessions; the replay window's slider
(milliseconds in a 32-bit int) would overflow past 24 days."""


def _one_line(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text(row: dict, key: str) -> str:
    """A field shown as text: what was recorded, as a string whatever its JSON type."""
    v = row.get(key, "")
    return v if isinstance(v, str) else "" if v is None else json.dumps(v)[:200]


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _check_file(info: FileInfo, raws: dict[str, Raw]) -> None:
    """A file with nothing to show, or with times no clock can have, is refused by name: an empty window or
    report would say nothing about why."""
    if not info.messages:
        why = f" ({info.error})" if info.error else ""
        raise RecordingError(_one_line(f"{info.path}: no message could be read{why}: the file is damaged or was "
                                       "cut off before its first chunk; give another recording"))
    if not any(topic.startswith(_TELEOP_PREFIXES) for topic in raws):
        found = ", ".join(sorted(raws)[:3])
        raise RecordingError(_one_line(f"{info.path}: none of its topics ({found}) is a teleop one (/console/… or "
                                       "/bedside/…): give a recording made by teleop"))
    lo, hi = min(min(r.t) for r in raws.values() if r.t), max(max(r.t) for r in raws.values() if r.t)
    if hi > _I64_MAX:
        raise RecordingError(_one_line(f"{info.path}: a message has a publish time beyond 2^63 ns: the file is "
                                       "damaged; give another recording"))
    if hi - lo > MAX_SPAN_NS:
        raise RecordingError(_one_line(f"{info.path}: its messages span {(hi - lo) / 86400e9:.0f} days, more than "
                                       f"the {MAX_SPAN_NS // 86_400_000_000_000} a recording can: a publish time is "
                                       "damaged; give another recording"))


def _role_of(path: Path, topics: Iterable[str], meta: dict[str, str]) -> str:
    if meta.get("role") in ("bedside", "console"):
        return meta["role"]
    m = _FILE_RE.match(path.name)
    if m:
        return m.group(1)
    for t in topics:
        if t.startswith(f"{CONSOLE.prefix}/"):
            return "console"
    return "bedside"


_MSG = struct.Struct("<HIQQ")  # channel id, sequence, log_time, publish_time
_REC = struct.Struct("<BQ")  # opcode, record length
_OP_CHANNEL, _OP_MESSAGE = 0x04, 0x05


MAX_CHUNK_READ = MAX_CHUNK_BYTES + 2 * MAX_PAYLOAD_BYTES
"""The most a chunk may hold uncompressed: the recorder closes one at MAX_CHUNK_BYTES plus the message that
crossed it, at most a 16 MiB video payload in base64 JSON. Bigger is a decompression bomb, not a recording:
a 4 MB lz4 chunk can expand to 1 GB, and zstd trusts the size its frame header declares over any limit."""


def _decompress(chunk: Chunk) -> bytes:
    size = chunk.uncompressed_size
    if size > MAX_CHUNK_READ:
        raise ValueError(f"a chunk declares {size} bytes uncompressed, over the {MAX_CHUNK_READ}-byte limit")
    if chunk.compression == "zstd":
        declared = zstandard.frame_content_size(chunk.data)  # -1: the frame does not say
        if declared > size:
            raise ValueError(f"a zstd chunk expands to {declared} bytes, its record declares {size}")
        return zstandard.ZstdDecompressor().decompress(chunk.data, max_output_size=size)
    if chunk.compression == "lz4":
        import lz4.frame

        d = lz4.frame.LZ4FrameDecompressor()
        out = d.decompress(chunk.data, max_length=size)
        if not d.eof and d.decompress(b"", max_length=1):
            raise ValueError(f"an lz4 chunk expands beyond the {size} bytes its record declares")
        return out
    if chunk.compression == "":
        return chunk.data
    raise ValueError(f"unsupported chunk compression {chunk.compression!r}")


def _channel_topic(buf: bytes | memoryview, pos: int) -> tuple[int, str]:
    cid, _schema, n = struct.unpack_from("<HHI", buf, pos)
    return cid, bytes(buf[pos + 8 : pos + 8 + n]).decode("utf-8")


def _scan_records(buf: bytes, channels: dict[int, str], raws: dict[str, Raw]) -> int:
    """Message and channel records of one decompressed chunk, straight into `raws`. The mcap package parses
    every record into an object (~10 µs each); this loop does ~1 µs, which is what makes a 60-s file with
    ~150 k messages load in about a second."""
    n, pos, end = 0, 0, len(buf)
    mv = memoryview(buf)
    rec_unpack, msg_unpack = _REC.unpack_from, _MSG.unpack_from
    while pos + 9 <= end:
        op, length = rec_unpack(buf, pos)
        body = pos + 9
        pos = body + length
        if pos > end:
            raise EOFError("record runs past the end of its chunk")
        if op == _OP_MESSAGE:
            cid, _seq, _log, pub = msg_unpack(buf, body)
            topic = channels.get(cid)
            if topic is None:
                continue
            r = raws.get(topic)
            if r is None:
                r = raws[topic] = Raw()
            r.t.append(pub)
            r.data.append(bytes(mv[body + 22 : pos]))
            n += 1
        elif op == _OP_CHANNEL:
            cid, topic = _channel_topic(buf, body)
            channels[cid] = topic
    return n


def read_mcap(path: str | Path, raws: dict[str, Raw], progress: Progress | None = None) -> FileInfo:
    """Append every message of `path` to `raws` (by topic). Streaming and tolerant: a torn tail (SIGKILL,
    disk full) ends the read with `truncated` set instead of an exception; what came before is kept."""
    p = Path(path)
    info = FileInfo(p, "")
    size = max(1, p.stat().st_size)
    channels: dict[int, str] = {}
    n = 0
    next_report = 0
    with open(p, "rb") as f:
        try:
            for rec in StreamReader(f, skip_magic=False, emit_chunks=True).records:
                if isinstance(rec, Chunk):
                    n += _scan_records(_decompress(rec), channels, raws)
                    if progress is not None and n >= next_report:
                        next_report = n + 20000
                        progress(min(1.0, f.tell() / size), p.name)
                elif isinstance(rec, Message):  # an unchunked file
                    topic = channels.get(rec.channel_id)
                    if topic is not None:
                        raws.setdefault(topic, Raw())
                        raws[topic].t.append(rec.publish_time)
                        raws[topic].data.append(rec.data)
                        n += 1
                elif isinstance(rec, Channel):
                    channels[rec.id] = rec.topic
                elif isinstance(rec, Metadata) and rec.name == "teleop.session":
                    info.metadata = dict(rec.metadata)
        except Exception as exc:  # any torn record: keep what was read
            info.truncated = True
            info.error = f"{type(exc).__name__}: {exc}"
            log.warning("%s: read stopped after %d messages (%s): file cut short?", p.name, n, info.error)
    info.messages = n
    info.role = _role_of(p, channels.values(), info.metadata)
    if progress is not None:
        progress(1.0, p.name)
    return info


def _vec(p) -> tuple[float, float, float]:
    if isinstance(p, dict):
        return (p["x"], p["y"], p["z"])
    return (p[0], p[1], p[2])


def _quat(q) -> tuple[float, float, float, float]:
    if isinstance(q, dict):
        return (q["x"], q["y"], q["z"], q["w"])
    return (q[0], q[1], q[2], q[3])


class Table(dict):
    """Columns (numpy arrays) of one topic, all the same length, sorted by `t` (session timeline ns)."""

    def __len__(self) -> int:  # type: ignore[override]
        t = self.get("t")
        return 0 if t is None else int(t.shape[0])

    def at(self, t_ns: int) -> int:
        """Index of the last row at or before `t_ns` (-1 if none)."""
        return int(np.searchsorted(self["t"], t_ns, side="right")) - 1


_CMD_TYPES = ("servo_cp", "enable", "disable", "ping", "estop")
_SERVO_RE = re.compile(rb'"type":\s*"servo_cp"')
_CLUTCH_RE = re.compile(rb'"clutch":\s*true')


class Session:
    """One or more recordings of one session (console and/or bedside, rotated parts) on one timeline."""

    def __init__(self, paths: Iterable[str | Path], progress: Progress | None = None) -> None:
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise ValueError("no recording given")
        check_files([str(p) for p in self.paths])  # a missing, empty or non-MCAP file named before any is read
        self.raw: dict[str, dict[str, Raw]] = {"console": {}, "bedside": {}}
        self.files: list[FileInfo] = []
        total = sum(max(1, p.stat().st_size) for p in self.paths)
        done = 0
        for p in self.paths:
            size = max(1, p.stat().st_size)
            sub = (lambda f, w, d=done, s=size: progress((d + f * s) / total, w)) if progress else None
            tmp: dict[str, Raw] = {}
            info = read_mcap(p, tmp, sub)
            _check_file(info, tmp)
            self.files.append(info)
            dest = self.raw[info.role]
            for topic, r in tmp.items():
                if topic not in dest:
                    dest[topic] = r
                else:
                    dest[topic].t += r.t
                    dest[topic].data += r.data
            done += size
        for role_raws in self.raw.values():
            for r in role_raws.values():
                if any(b < a for a, b in zip(r.t, r.t[1:], strict=False)):
                    order = sorted(range(len(r.t)), key=r.t.__getitem__)
                    r.t = [r.t[i] for i in order]
                    r.data = [r.data[i] for i in order]
        self.roles = tuple(r for r in ("console", "bedside") if self.raw[r])
        self.clock = "console" if self.raw["console"] else "bedside"
        self._cache: dict[tuple[str, str], Table] = {}
        self._offsets: tuple[np.ndarray, np.ndarray] | None = None
        self.t0_ns, self.t1_ns = self._span()
        if self.t1_ns - self.t0_ns > MAX_SPAN_NS:
            days = (self.t1_ns - self.t0_ns) / 86400e9
            raise RecordingError(_one_line(
                f"{', '.join(str(p) for p in self.paths)}: together they span {days:.0f} days, more than the "
                f"{MAX_SPAN_NS // 86_400_000_000_000} a session can: give the files of one session"))

    # ------------------------------------------------------------------ time

    def offsets(self) -> tuple[np.ndarray, np.ndarray]:
        """(t console ns, bedside − console ns) from /console/link; empty when unknown."""
        if self._offsets is None:
            r = self.raw["console"].get(CONSOLE.link)
            ts, offs = [], []
            if r is not None:
                for t, row in zip(r.t, self._rows("console", CONSOLE.link), strict=True):
                    off = row.get("clock_offset_ns")
                    if off is not None:
                        ts.append(t)
                        offs.append(off)
            try:
                self._offsets = (np.asarray(ts, np.int64), np.asarray(offs, np.int64))
            except _SHAPE_ERRORS as exc:
                raise self._error("console", f"a clock_offset_ns on {CONSOLE.link} is not an integer "
                                             f"({type(exc).__name__}: {exc})") from None
        return self._offsets

    def to_timeline(self, role: str, t_ns: np.ndarray | int) -> np.ndarray:
        """Host-monotonic times of `role` onto the session timeline."""
        t = np.asarray(t_ns, dtype=np.int64)
        if role == self.clock:
            return t
        lt, off = self.offsets()
        if role == "bedside" and off.size:
            guess = t - int(np.median(off))  # console time, to pick the offset valid at that instant
            i = np.clip(np.searchsorted(lt, guess, side="right") - 1, 0, off.size - 1)
            return t - off[i]
        return t

    def from_timeline(self, role: str, t_ns: np.ndarray | int) -> np.ndarray:
        t = np.asarray(t_ns, dtype=np.int64)
        if role == self.clock:
            return t
        lt, off = self.offsets()
        if role == "bedside" and off.size:
            i = np.clip(np.searchsorted(lt, t, side="right") - 1, 0, off.size - 1)
            return t + off[i]
        return t

    def _span(self) -> tuple[int, int]:
        lo, hi = None, None
        for role in self.roles:
            for r in self.raw[role].values():
                if not r.t:
                    continue
                a, b = (int(x) for x in self.to_timeline(role, np.array([r.t[0], r.t[-1]])))
                lo = a if lo is None else min(lo, a)
                hi = b if hi is None else max(hi, b)
        return (lo or 0, hi or 0)

    def seconds(self, t_ns) -> np.ndarray | float:
        """Session time in seconds from the first message (the axis every tool shows)."""
        return (np.asarray(t_ns, dtype=np.int64) - self.t0_ns) / 1e9

    @property
    def duration_s(self) -> float:
        return (self.t1_ns - self.t0_ns) / 1e9

    def has(self, role: str, topic: str) -> bool:
        return bool(self.raw.get(role, {}).get(topic) and self.raw[role][topic].t)

    def count(self, role: str, topic: str) -> int:
        r = self.raw.get(role, {}).get(topic)
        return 0 if r is None else len(r.t)

    # ------------------------------------------------------------------ tables

    def _table(self, role: str, topic: str, build: Callable[[list[dict]], dict]) -> Table:
        key = (role, topic)
        if key not in self._cache:
            r = self.raw.get(role, {}).get(topic)
            rows = self._rows(role, topic)
            try:
                cols = build(rows) if rows else {}
                tab = Table({k: np.asarray(v) for k, v in cols.items()})
            except _SHAPE_ERRORS as exc:
                raise self._error(role, f"a message on {topic} does not have the recorded shape "
                                        f"({type(exc).__name__}: {exc})") from None
            if not rows and topic == Topics(role).command:
                tab["type"] = np.zeros(0, np.int8)
            tab["pub_ns"] = np.asarray(r.t if r else [], np.int64)
            tab["t"] = self.to_timeline(role, tab["pub_ns"])
            self._cache[key] = tab
        return self._cache[key]

    def commands(self, role: str) -> Table:
        """/<role>/command: type code (index in _CMD_TYPES), epoch, seq, send_ns, flags bits, arm_mask,
        pos (n,arms,3) m, ori (n,arms,4), jaw (n,arms), arms in wire order (ARM_NAMES: PSM1, PSM2, PSM3, ECM).
        Non-servo rows have NaN poses."""
        def build(rows: list[dict]) -> dict:
            n = len(rows)
            pos = np.full((n, N_ARMS, 3), np.nan)
            ori = np.full((n, N_ARMS, 4), np.nan)
            jaw = np.full((n, N_ARMS), np.nan)
            typ = np.empty(n, np.int8)
            flags = np.zeros(n, np.int8)
            mask = np.zeros(n, np.int8)
            for i, r in enumerate(rows):
                ty = r.get("type", "")
                typ[i] = _CMD_TYPES.index(ty) if ty in _CMD_TYPES else -1
                if ty == "servo_cp":
                    fl = r.get("flags") or {}
                    flags[i] = (1 if fl.get("operator_present") else 0) | (2 if fl.get("clutch") else 0) | (
                        4 if fl.get("camera") else 0)
                    mask[i] = r.get("arm_mask", 0)
                    for a in r.get("arms", ()):
                        j = ARM_NAMES.index(a["name"]) if a.get("name") in ARM_NAMES else -1
                        if j < 0:
                            continue
                        pos[i, j] = _vec(a["position"])
                        ori[i, j] = _quat(a["orientation"])
                        jaw[i, j] = a.get("jaw", np.nan)
            return {"type": typ, "epoch": [r.get("epoch", 0) for r in rows], "seq": [r.get("seq", 0) for r in rows],
                    "send_ns": np.asarray([r.get("send_ns", 0) for r in rows], np.int64), "flags": flags,
                    "arm_mask": mask, "pos": pos, "ori": ori, "jaw": jaw,
                    "engage": [bool(r.get("engage", False)) for r in rows]}
        return self._table(role, Topics(role).command, build)

    def acks(self, role: str) -> Table:
        """/<role>/ack: echo_seq, echo_send_ns, rx_ns, status (str), rejected, rtt_ms (console only, else NaN)."""
        def build(rows: list[dict]) -> dict:
            return {"echo_seq": [r.get("echo_seq", 0) for r in rows],
                    "echo_send_ns": np.asarray([r.get("echo_send_ns", 0) for r in rows], np.int64),
                    "rx_ns": np.asarray([r.get("rx_ns", 0) for r in rows], np.int64),
                    "status": np.asarray([r.get("status", "") for r in rows], object),
                    "rejected": np.asarray([bool(r.get("rejected")) for r in rows], bool),
                    "epoch": [r.get("epoch", 0) for r in rows],
                    "rtt_ms": np.asarray([r["rtt_us"] / 1000 if "rtt_us" in r else np.nan for r in rows], float)}
        return self._table(role, Topics(role).ack, build)

    def telemetry(self, role: str) -> Table:
        """/<role>/telemetry: epoch, state (str), last_applied_seq, pos/sp (n,arms,3) m, ori (n,arms,4), jaw
        (n,arms), limit (n,arms) bool, mode (n,arms) str; arms in wire order (ARM_NAMES)."""
        def build(rows: list[dict]) -> dict:
            n = len(rows)
            pos = np.full((n, N_ARMS, 3), np.nan)
            sp = np.full((n, N_ARMS, 3), np.nan)
            ori = np.full((n, N_ARMS, 4), np.nan)
            jaw = np.full((n, N_ARMS), np.nan)
            limit = np.zeros((n, N_ARMS), bool)
            mode = np.empty((n, N_ARMS), object)
            for i, r in enumerate(rows):
                for a in r.get("arms", ()):
                    j = ARM_NAMES.index(a["name"]) if a.get("name") in ARM_NAMES else -1
                    if j < 0:
                        continue
                    m = a.get("measured_cp") or {}
                    if "position" in m:
                        pos[i, j] = _vec(m["position"])
                        ori[i, j] = _quat(m["orientation"])
                    s = a.get("setpoint_cp") or {}
                    if "position" in s:
                        sp[i, j] = _vec(s["position"])
                    jaw[i, j] = a.get("jaw", np.nan)
                    limit[i, j] = "LIMIT" in (a.get("flags") or ())
                    mode[i, j] = a.get("mode", "")
            return {"epoch": [r.get("epoch", 0) for r in rows],
                    "state": np.asarray([r.get("operating_state", "") for r in rows], object),
                    "reason": np.asarray([r.get("reason", "") for r in rows], object),
                    "last_applied_seq": [r.get("last_applied_seq", 0) for r in rows],
                    "pos": pos, "sp": sp, "ori": ori, "jaw": jaw, "limit": limit, "mode": mode}
        return self._table(role, Topics(role).telemetry, build)

    def link(self) -> Table:
        """/console/link: rtt_ms, clock_offset_ns, scale, session_ready, link (str), hands ("right/left" arms)."""
        def build(rows: list[dict]) -> dict:
            return {"rtt_ms": np.asarray([r.get("rtt_ms", np.nan) if r.get("rtt_ms") is not None else np.nan
                                          for r in rows], float),
                    "clock_offset_ns": np.asarray([r.get("clock_offset_ns") or 0 for r in rows], np.int64),
                    "scale": np.asarray([r.get("scale", np.nan) for r in rows], float),
                    "session_ready": np.asarray([bool(r.get("session_ready")) for r in rows], bool),
                    "link": np.asarray([r.get("link", "") for r in rows], object),
                    "hands": np.asarray([_hands(r.get("hands")) for r in rows], object),
                    "paths": _objects([r.get("paths") for r in rows])}
        return self._table("console", CONSOLE.link, build)

    def video_frames(self, role: str) -> Table:
        """/<role>/video/frame on the timeline. `t` is when the frame existed for that role: sent by the
        bedside, ready to paint at the console (decoded_ns, else received_ns). `capture` is the capture
        instant mapped onto the timeline (bedside clock). age_ms is NaN when the role did not measure it."""
        def build(rows: list[dict]) -> dict:
            return {"capture_ns": np.asarray([r.get("capture_ns", 0) for r in rows], np.int64),
                    "source_seq": np.asarray([r.get("source_seq", -1) for r in rows], np.int64),
                    "frame_id": np.asarray([r.get("frame_id", -1) for r in rows], np.int64),
                    "keyframe": np.asarray([bool(r.get("keyframe")) for r in rows], bool),
                    "size_bytes": np.asarray([r.get("size_bytes", 0) for r in rows], np.int64),
                    "age_ms": np.asarray([r.get("age_ms", np.nan) if r.get("age_ms") is not None else np.nan
                                          for r in rows], float),
                    "stale": np.asarray([bool(r.get("stale")) for r in rows], bool),
                    "shown_ns": np.asarray([r.get("decoded_ns") or r.get("received_ns") or r.get("t_ns", 0)
                                            for r in rows], np.int64),
                    "layout": np.asarray([str(r.get("layout", "SIDE_BY_SIDE")) for r in rows], object),
                    "width": np.asarray([r.get("width", 0) for r in rows], np.int64),
                    "height": np.asarray([r.get("height", 0) for r in rows], np.int64)}
        tab = self._table(role, Topics(role).video_frame, build)
        if len(tab) and "capture" not in tab:
            tab["capture"] = self.to_timeline("bedside", tab["capture_ns"])
            if role == "console":
                tab["t"] = self.to_timeline("console", tab["shown_ns"])
                order = np.argsort(tab["t"], kind="stable")
                for k in list(tab):
                    tab[k] = tab[k][order]
        return tab

    def video_raw(self, role: str) -> Raw | None:
        """Undecoded `/<role>/video` messages (base64 JSON), in recorded order."""
        return self.raw.get(role, {}).get(Topics(role).video)

    def freezes(self) -> Table:
        """/bedside/freeze: latency_ms, reason, text."""
        def build(rows: list[dict]) -> dict:
            return {"latency_ms": np.asarray([r.get("latency_ms", np.nan) for r in rows], float),
                    "reason": np.asarray([r.get("reason", "") for r in rows], object),
                    "text": np.asarray([r.get("text", "") for r in rows], object)}
        return self._table("bedside", BEDSIDE.freeze, build)

    def json_rows(self, role: str, topic: str) -> list[tuple[int, dict]]:
        """(timeline ns, parsed body) of any topic: for the rare ones without a table."""
        r = self.raw.get(role, {}).get(topic)
        if not r:
            return []
        ts = self.to_timeline(role, np.asarray(r.t, np.int64))
        return [(int(t), row) for t, row in zip(ts, self._rows(role, topic), strict=True)]

    def names(self, role: str) -> str:
        """The files a role's messages came from, for messages that point at them."""
        return ", ".join(str(f.path) for f in self.files if f.role == role) or f"(no {role} recording)"

    def _error(self, role: str, what: str) -> RecordingError:
        return RecordingError(_one_line(f"{self.names(role)}: {what}: the file is damaged or was not written by "
                                        "teleop; give another recording"))

    def _rows(self, role: str, topic: str) -> list[dict]:
        """Every message of `topic` parsed; one that is not a JSON object is a RecordingError naming its file."""
        r = self.raw.get(role, {}).get(topic)
        rows: list[dict] = []
        for i, d in enumerate(r.data if r else ()):
            try:
                row = json.loads(d)
            except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
                raise self._error(role, f"message {i} on {topic} is not JSON ({type(exc).__name__}: {exc})") from None
            if not isinstance(row, dict):
                raise self._error(role, f"message {i} on {topic} is not a JSON object")
            rows.append(row)
        return rows

    # ------------------------------------------------------------------ events

    def events(self) -> list[QaEvent]:
        """Every marker for the timeline, time-ordered: engagements, clutches, freezes (with reason and
        latency), holds, alarms, limit hits, rejections, state changes."""
        if ("", "events") in self._cache:
            return self._cache[("", "events")]["list"]  # type: ignore[return-value]
        out: list[QaEvent] = []
        have_bedside = self.has("bedside", BEDSIDE.event)
        for t, e in self.json_rows("bedside", BEDSIDE.event):
            out.append(QaEvent(t, classify_bedside(e), "bedside", _bedside_name(e), _text(e, "reason"),
                               _text(e, "text")))
        for t, e in self.json_rows("bedside", BEDSIDE.freeze):
            lat = e.get("latency_ms")
            out.append(QaEvent(t, "freeze", "bedside", f"freeze {_text(e, 'reason')}", _text(e, "reason"),
                               _text(e, "text"), float(lat) if _is_number(lat) else None))
        for t, e in self.json_rows("console", CONSOLE.event):
            if e.get("source") == "bedside" and have_bedside:
                continue  # the bedside's own record of it is on the timeline already
            kind = classify_console(e)
            out.append(QaEvent(t, kind, "console", f"{_text(e, 'source')}: {_text(e, 'name')}",
                               _text(e, "reason"), _text(e, "text")))
        if not any(ev.kind == "clutch" for ev in out):
            out += self._clutches_from_commands()
        out.sort(key=lambda ev: ev.t_ns)
        self._cache[("", "events")] = Table({"list": out})  # type: ignore[dict-item]
        return out

    def _clutches_from_commands(self) -> list[QaEvent]:
        """Clutch edges from the servo_cp flags, by a byte search (no JSON parse of ~60 k commands/minute)."""
        role = "console" if self.has("console", CONSOLE.command) else "bedside"
        r = self.raw[role].get(Topics(role).command)
        if not r:
            return []
        is_servo, is_clutch = _SERVO_RE.search, _CLUTCH_RE.search
        keep = [i for i, d in enumerate(r.data) if is_servo(d)]
        if not keep:
            return []
        t = self.to_timeline(role, np.asarray([r.t[i] for i in keep], np.int64))
        cl = np.asarray([is_clutch(r.data[i]) is not None for i in keep], bool)
        edges = np.flatnonzero(np.diff(cl.astype(np.int8))) + 1
        if cl.size and cl[0]:
            edges = np.r_[0, edges]
        return [QaEvent(int(t[i]), "clutch", role, "clutch down" if cl[i] else "clutch up") for i in edges]

    def summary(self) -> dict[str, object]:
        """Counts for the header of the window and the report."""
        return {"files": [str(f.path) for f in self.files], "roles": list(self.roles), "clock": self.clock,
                "duration_s": round(self.duration_s, 3), "truncated": [f.path.name for f in self.files if f.truncated],
                "topics": {f"{r}:{k}": len(v.t) for r in self.roles for k, v in self.raw[r].items()}}


def classify_bedside(e: dict) -> str:
    kind, reason, to = e.get("kind", ""), e.get("reason", ""), e.get("to", "")
    if reason == "LOOP_OVERRUN":  # the bedside's own loop stood still longer than its bound
        return "alarm"
    if kind == "LIMIT" or (kind == "REJECTION" and reason == "LIMIT"):
        return "limit"
    if kind == "REJECTION":
        return "rejection"
    if kind == "STATE_CHANGE":
        if to == "ENABLED":
            return "engagement"
        if to in ("PAUSED", "FAULT"):
            return "alarm" if reason in ("ESTOP", "FAULT") else "state"
        return "state"
    return "info"


def _bedside_name(e: dict) -> str:
    if e.get("kind") == "STATE_CHANGE":
        return f"bedside {e.get('from', '')}→{e.get('to', '')} ({e.get('reason', '')})"
    return f"bedside {e.get('kind', '')} {e.get('reason', '')}".strip()


def classify_console(e: dict) -> str:
    """Console engine events (console/engine.py, console/controller.py names) into marker kinds."""
    src, name, reason = _text(e, "source"), _text(e, "name"), _text(e, "reason")
    low = name.lower()
    if src == "ui" or reason == "LOOP_OVERRUN":
        return "alarm"
    if src == "bedside":
        return classify_bedside({"kind": name, "reason": reason, "to": ""})
    if src == "video":  # the stale-video guard's state (console/runner.py): "ok", "stale", "stuck", "no video"
        return "video"
    if "refused" in low:  # the console refused what the surgeon asked (engage, swap, e-stop reset): no limit
        return "refusal"
    if "limit" in low:
        return "limit"
    if src == "teleop" and name == "swap":  # an arm swap: which instrument follows changed
        return "engagement"
    if "->held" in low:  # before the clutch test: "ECM CLUTCHED->HELD" is a hold
        return "hold"
    if "->clutched" in low or "clutched->" in low:
        return "clutch"
    if "->following" in low or (src == "session" and name == "granted") or low == "engage":
        return "engagement"
    if (src == "link" and name == "LOST") or "estop" in low or "latency" in low or reason in ("ESTOP", "FAULT"):
        return "alarm"
    return "info"


def envelope(x: np.ndarray, y: np.ndarray, bins: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """At most 2·bins points keeping each bin's min and max: spikes survive decimation."""
    ok = np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size <= 2 * bins:
        return x, y
    edges = np.linspace(x[0], x[-1], bins + 1)
    idx = np.clip(np.searchsorted(x, edges[:-1]), 0, x.size - 1)
    idx = np.unique(idx)
    lo, hi = np.minimum.reduceat(y, idx), np.maximum.reduceat(y, idx)
    xs = np.repeat(x[idx], 2)
    ys = np.empty(2 * idx.size)
    ys[0::2], ys[1::2] = lo, hi
    return xs, ys


def _objects(values: list) -> np.ndarray:
    """A 1-D object array of `values` as they are (lists stay lists; numpy would make a 2-D array of them)."""
    out = np.empty(len(values), object)
    for i, v in enumerate(values):
        out[i] = v
    return out


def _hands(h: object) -> str:
    """A link row's hand assignment as "right/left" ("PSM1/PSM2"); "" for a recording made before arm swaps."""
    return f"{h.get('right', '?')}/{h.get('left', '?')}" if isinstance(h, dict) and h else ""
