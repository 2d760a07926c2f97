"""MCAP files of one role: chunks closed and flushed on time, rotation by size/age, retention by total size.

`RecordingFiles` owns the open mcap.writer.Writer. `flush()` closes the chunk in progress and hands it to
the OS (Writer.flush); the recorder calls it every `recording.chunk_ms`, so a SIGKILL of the whole process
group loses at most that much plus what was still queued, and the file, though it has no summary, reads
to its last complete chunk with mcap's non-seeking reader. A clean close writes the summary and footer.
Time is passed in (monotonic ns); nothing here reads a clock.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mcap
from mcap.data_stream import RecordBuilder
from mcap.records import ChunkIndex
from mcap.writer import CompressionType, Writer

from base import __version__
from recording.catalog import (
    MESSAGE_ENCODING,
    METADATA_NAME,
    PROFILE,
    SCHEMA_ENCODING,
    Channel,
    Topics,
    channels,
    schema_bytes,
)

log = logging.getLogger("recording")

COMPRESSION = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}
MAX_CHUNK_BYTES = 2 * 1024 * 1024
"""A size bound too, for JPEG bursts and for a recorder catching up after being starved of CPU (then a
chunk_ms chunk can hold seconds of data). Closing a chunk holds ~4× its size for a moment (builder buffer,
its copy, the compressed data, the record): 8 MB chunks made ~30 MB transient peaks, 2 MB ones ~8 MB. At the
bedside a 250 ms chunk is ~0.6 MB (640×360 H.264), so this rarely adds chunks in normal operation."""


def file_pattern(role: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(role)}-\d{{8}}-\d{{6}}-\d{{3,}}\.mcap$")


def role_files(directory: Path, role: str) -> list[Path]:
    """This role's recordings in `directory`, oldest first (names sort by time, then sequence)."""
    pat = file_pattern(role)
    return sorted(p for p in directory.iterdir() if pat.match(p.name)) if directory.is_dir() else []


def enforce_retention(directory: Path, role: str, limit_bytes: int, keep: Path | None = None) -> list[Path]:
    """Delete this role's oldest files while the role's total exceeds `limit_bytes`; never `keep`."""
    files = role_files(directory, role)
    sizes = {}
    for p in files:
        try:
            sizes[p] = p.stat().st_size
        except FileNotFoundError:
            sizes[p] = 0
    total = sum(sizes.values())
    deleted = []
    for p in files:
        if total <= limit_bytes:
            break
        if p == keep:
            continue
        p.unlink(missing_ok=True)
        total -= sizes[p]
        deleted.append(p)
    return deleted


class PackedChunkIndexes:
    """Stands in for mcap Writer's list of ChunkIndex records, which it keeps, one per chunk, until `finish()`
    writes them to the summary (what lets Foxglove and `make_reader` seek). As Python objects each costs
    ~1.2 kB (a dataclass, a dict of message-index offsets, a dozen big ints): at a chunk every 250 ms that
    is ~17 MB per hour-long file, the recorder's only memory growing with time. Here each is serialized when
    the chunk closes (the record `finish()` would write, ~80 + 10 per channel bytes) and the summary gets the
    same bytes: a fifth of the memory, the file byte for byte the same."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._count = 0
        self._builder = RecordBuilder()

    def append(self, index: ChunkIndex) -> None:
        index.write(self._builder)
        self._data += self._builder.end()
        self._count += 1

    def __len__(self) -> int:
        return self._count

    @property
    def nbytes(self) -> int:
        return len(self._data)

    def __iter__(self) -> Any:
        """What `Writer.finish()` iterates, calling `.write(summary_builder)` on each: one packed block."""
        return iter([self] if self._count else [])

    def write(self, builder: RecordBuilder) -> None:
        builder.write(bytes(self._data))


_CHUNK_INDEXES = "_Writer__chunk_indices"  # mcap.writer.Writer's private list (mcap 1.1 … 1.6 at least)


def pack_chunk_indexes(w: Writer) -> PackedChunkIndexes | None:
    """Give a fresh Writer packed chunk-index storage; None (and a warning) if this mcap version differs."""
    current = getattr(w, _CHUNK_INDEXES, None)
    if not isinstance(current, list) or current:
        log.warning("mcap %s: chunk indexes kept as objects (~1.2 kB per chunk until the file rotates)",
                    getattr(mcap, "__version__", "?"))
        return None
    packed = PackedChunkIndexes()
    setattr(w, _CHUNK_INDEXES, packed)
    return packed


WRITE_SLICE = 64 * 1024


class _SlicedFileIO(io.FileIO):
    """Writes at most WRITE_SLICE bytes per system call (the buffered writer above loops over the rest).

    Why: this kernel runs without kernel preemption (PREEMPT_NONE); a task inside one `write()` of a 2 MB chunk
    keeps its CPU until the copy into the page cache is done (~0.5 ms), and a real-time control loop woken
    on that CPU waits for it. 64 kB slices return to user space every ~20 µs, where it is preempted at once."""

    def write(self, b) -> int | None:  # type: ignore[override]
        return super().write(memoryview(b)[:WRITE_SLICE])


@dataclass
class FileStats:
    messages: int = 0
    bytes: int = 0
    per_topic: dict[str, int] = field(default_factory=dict)


class RecordingFiles:
    """The open recording of one role and its successors."""

    def __init__(self, directory: str | Path, role: str, *, compression: str = "zstd", max_file_bytes: int,
                 max_file_ns: int, retention_bytes: int, config: dict[str, Any], config_toml: str,
                 mono_to_wall_ns: int, video_codec: str = "h264", video: bool = True) -> None:
        self.dir = Path(directory).expanduser()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.role = role
        self.compression = COMPRESSION[compression]
        self.max_file_bytes = max_file_bytes
        self.max_file_ns = max_file_ns
        self.retention_bytes = retention_bytes
        self.config = config
        self.config_toml = config_toml
        self.mono_to_wall_ns = mono_to_wall_ns
        self.catalogue: list[Channel] = channels(role, video_codec, video)
        self.path: Path | None = None
        self.files: list[Path] = []
        self.total = FileStats()
        self._writer: Writer | None = None
        self.chunk_indexes: PackedChunkIndexes | None = None
        self._stream: Any = None
        self._channels: dict[tuple[str, str], int] = {}
        self._schemas: dict[str, int] = {}
        self._opened_ns = 0
        self._seq = 0
        self._dirty = False

    # ------------------------------------------------------------------------------------- files
    def _new_path(self, now_ns: int) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime((now_ns + self.mono_to_wall_ns) / 1e9))
        while True:
            p = self.dir / f"{self.role}-{stamp}-{self._seq:03d}.mcap"
            self._seq += 1
            try:
                fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            except FileExistsError:
                continue  # another run of this role in the same second
            self._stream = io.BufferedWriter(_SlicedFileIO(fd, "wb"), buffer_size=WRITE_SLICE)
            return p

    def open(self, now_ns: int) -> Path:
        """Start a file: header, session metadata, every catalogue channel, the configuration."""
        self.path = self._new_path(now_ns)
        self.files.append(self.path)
        w = Writer(self._stream, chunk_size=MAX_CHUNK_BYTES, compression=self.compression)
        self.chunk_indexes = pack_chunk_indexes(w)
        w.start(profile=PROFILE, library=f"teleop {__version__}")
        w.add_metadata(METADATA_NAME, {
            "role": self.role, "host": socket.gethostname(), "pid": str(os.getpid()),
            "mono_to_wall_ns": str(self.mono_to_wall_ns), "software_version": __version__,
            "config_toml": self.config_toml,
        })
        self._writer = w
        self._channels = {}
        self._schemas = {}
        for ch in self.catalogue:
            self._channel(ch.topic, ch.schema)
        self._opened_ns = now_ns
        self.write(Topics(self.role).config, now_ns, {"t_ns": now_ns, "role": self.role, "config": self.config})
        self.flush()
        enforce_retention(self.dir, self.role, self.retention_bytes, keep=self.path)
        log.info("recording to %s", self.path)
        return self.path

    def _channel(self, topic: str, schema: str) -> int:
        key = (topic, schema)
        cid = self._channels.get(key)
        if cid is None:
            assert self._writer is not None
            sid = self._schemas.get(schema)
            if sid is None:
                sid = self._writer.register_schema(schema, SCHEMA_ENCODING, schema_bytes(schema))
                self._schemas[schema] = sid
            cid = self._writer.register_channel(topic, MESSAGE_ENCODING, sid)
            self._channels[key] = cid
        return cid

    def schema_for(self, topic: str) -> str | None:
        for ch in self.catalogue:
            if ch.topic == topic:
                return ch.schema
        return None

    # ------------------------------------------------------------------------------------- data
    def write(self, topic: str, t_ns: int, msg: dict[str, Any], schema: str | None = None) -> int:
        """One message; log_time = wall clock of `t_ns`, publish_time = `t_ns`. Returns its size."""
        assert self._writer is not None, "open() first"
        schema = schema or self.schema_for(topic)
        if schema is None:
            raise KeyError(f"{topic} is not in the {self.role} catalogue")
        cid = self._channel(topic, schema)
        data = json.dumps(msg, separators=(",", ":"), allow_nan=False).encode()
        self._writer.add_message(cid, max(0, t_ns + self.mono_to_wall_ns), data, max(0, t_ns))
        n = len(data)
        self.total.messages += 1
        self.total.bytes += n
        self.total.per_topic[topic] = self.total.per_topic.get(topic, 0) + 1
        self._dirty = True
        return n

    def flush(self) -> None:
        """Close the chunk in progress and hand everything to the OS (no fsync: a killed process loses
        nothing the OS has; power loss is the host's business)."""
        if self._writer is not None and self._dirty:
            self._writer.flush()
            self._dirty = False

    def file_bytes(self) -> int:
        return self._stream.tell() if self._stream is not None else 0

    def maybe_rotate(self, now_ns: int) -> bool:
        """A new file once this one is too big or too old (checked after a flush, so sizes are real)."""
        if self._writer is None:
            return False
        if self.file_bytes() < self.max_file_bytes and now_ns - self._opened_ns < self.max_file_ns:
            return False
        self.close()
        self.open(now_ns)
        return True

    def close(self) -> None:
        """Summary, footer, fsync: a cleanly closed file opens with mcap's seeking reader."""
        if self._writer is None:
            return
        w, self._writer = self._writer, None
        try:
            w.finish()
            self._stream.flush()
            os.fsync(self._stream.fileno())
        finally:
            self._stream.close()
            self._stream = None
