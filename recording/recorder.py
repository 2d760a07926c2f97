"""The recorder child process of a role, and the parent's handle on it.

Why a process: JSON, base64 and zstd of 1 kHz control data plus stereo video must not share a GIL (or a
crash) with the control loop. It is started with multiprocessing 'spawn' (like the video sender), runs at
nice +10 so the control processes win the CPU, and asks the kernel for SIGTERM when its parent dies
(PR_SET_PDEATHSIG) so a killed bedside or console still leaves a closed, indexed file.

It binds two PULL sockets on ipc:// endpoints in a private temporary directory: control first, always;
video only when no control data waits. Producers send with NOBLOCK and count what does not fit
(tap.py), so under pressure video is dropped before control data, and every drop is written to
`/<role>/recording` (1 Hz, and at once when a drop count changes).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import zmq

from base.config import Config, to_toml
from base.runtime import StopFlag, die_with_parent
from recording.catalog import Topics
from recording.convert import Item, ItemError, Translator, split_items
from recording.tap import ControlTap, NullTap, VideoTap
from transport.zmqlink import recording_control_sink, recording_video_sink

log = logging.getLogger("recording")

RECORDER_NICE = 10
STATUS_NS = 1_000_000_000
CONTROL_BURST = 2000  # control messages handled before the recorder looks at video again
STOP_DRAIN_NS = 1_500_000_000  # after a stop request: keep draining until quiet, at most this long
QUIET_NS = 100_000_000
TRACEMALLOC_ENV = "TELEOP_RECORDER_TRACEMALLOC"  # debug: "<dir>[:period_s[:warmup_s[:frames]]]", MemoryTrace


def _malloc_trim() -> Any:
    """glibc's malloc_trim, or None (another libc). See RecorderLoop.housekeeping."""
    try:
        import ctypes

        f = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    f.argtypes = [ctypes.c_size_t]
    return f


def _mallinfo() -> dict[str, int]:
    """glibc mallinfo2 (all arenas), kB: heap = sbrk/arena bytes, mmap = large blocks, used/free in the arenas."""
    import ctypes

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                   "fsmblks", "uordblks", "fordblks", "keepcost")]
    try:
        f = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return {}
    f.restype = MallInfo2
    m = f()
    return {"arena": m.arena // 1024, "mmap": m.hblkhd // 1024, "used": m.uordblks // 1024,
            "free": m.fordblks // 1024, "top": m.keepcost // 1024}


class MemoryTrace:
    """Debug hook (off unless $TELEOP_RECORDER_TRACEMALLOC is set) for the recorder's memory.

    $TELEOP_RECORDER_TRACEMALLOC = "<dir>[:period_s[:warmup_s[:frames]]]" (defaults 30, 60, 12). Every
    `period_s` it appends to `<dir>/recorder-<role>-<pid>.txt` RSS (anon/file), glibc's heap figures and,
    with tracemalloc (frames > 0), the traced total and the allocations by traceback that grew since the
    snapshot taken at `warmup_s` (what a soak's growth figure measures). tracemalloc costs CPU (every
    allocation is traced): for diagnosis only; frames = 0 keeps only the cheap RSS/heap lines."""

    def __init__(self, spec: str, role: str) -> None:
        import tracemalloc

        parts = [*spec.split(":"), "", "", ""]
        self.tm = tracemalloc
        self.period_ns = int(float(parts[1] or 30) * 1e9)
        self.warmup_ns = int(float(parts[2] or 60) * 1e9)
        frames = int(parts[3] or 12)
        Path(parts[0]).mkdir(parents=True, exist_ok=True)
        self.path = Path(parts[0]) / f"recorder-{role}-{os.getpid()}.txt"
        self.t0 = time.monotonic_ns()
        self.base: Any = None
        self.next_ns = self.t0 + self.warmup_ns
        if frames > 0:
            tracemalloc.start(frames)

    def poll(self, now_ns: int) -> None:
        if now_ns < self.next_ns:
            return
        self.next_ns = now_ns + self.period_ns
        status = dict(ln.split(":", 1) for ln in Path("/proc/self/status").read_text().splitlines() if ":" in ln)
        rss = " ".join(f"{k}={status.get(k, '?').split()[0]}" for k in ("VmRSS", "RssAnon", "RssFile"))
        lines = [f"=== t={(now_ns - self.t0) / 1e9:.0f}s {rss} (kB) malloc_kb={_mallinfo()}"]
        if self.tm.is_tracing():
            own = [self.tm.Filter(False, self.tm.__file__), self.tm.Filter(False, "*/linecache.py")]
            snap = self.tm.take_snapshot().filter_traces(own)
            cur, peak = self.tm.get_traced_memory()
            lines.append(f"traced_kb={cur // 1024} peak_kb={peak // 1024}")
            if self.base is None:
                self.base = snap
                lines += [str(st) for st in snap.statistics("lineno")[:15]]
            else:
                for st in snap.compare_to(self.base, "traceback")[:12]:
                    lines.append(f"{st.size_diff / 1024:+.1f} KiB ({st.count_diff:+d} blocks), "
                                 f"now {st.size / 1024:.1f} KiB")
                    lines += ["    " + ln for ln in st.traceback.format(limit=8)]
        with open(self.path, "a") as f:
            f.write("\n".join(lines) + "\n")


class RecorderLoop:
    """Sockets → Translator → RecordingFiles, with flushing, rotation and status on time."""

    def __init__(self, cfg: Config, role: str, ipc_dir: str, ctx: zmq.Context | None = None) -> None:
        from recording.writer import RecordingFiles  # mcap, zstd, lz4: only in the recorder process

        rc = cfg.recording
        self.role = role
        self.chunk_ns = rc.chunk_ms * 1_000_000
        self.mono_to_wall_ns = time.time_ns() - time.monotonic_ns()
        self.translator = Translator(role, self.mono_to_wall_ns)
        self.files = RecordingFiles(
            rc.dir, role, compression=rc.compression, max_file_bytes=int(rc.max_file_mb * 1e6),
            max_file_ns=int(rc.max_file_s * 1e9), retention_bytes=int(rc.retention_mb * 1e6),
            config=cfg.to_dict(), config_toml=to_toml(cfg), mono_to_wall_ns=self.mono_to_wall_ns,
            video_codec=cfg.video.codec, video=rc.video)
        self.ctx = ctx or zmq.Context.instance()
        self.control_endpoint = f"ipc://{ipc_dir}/control"
        self.video_endpoint = f"ipc://{ipc_dir}/video"
        self.control = recording_control_sink(self.ctx, self.control_endpoint, rc.control_queue)
        self.video = recording_video_sink(self.ctx, self.video_endpoint, rc.video_queue)
        self.poller = zmq.Poller()
        self.poller.register(self.control, zmq.POLLIN)
        self.poller.register(self.video, zmq.POLLIN)
        self.queue_depth = 0
        self._status_dropped: dict[str, int] = {"control": 0, "video": 0}
        self._next_status = 0
        self._next_flush = 0
        self._trim = _malloc_trim()
        spec = os.environ.get(TRACEMALLOC_ENV)
        self.memtrace = MemoryTrace(spec, role) if spec else None
        self.live: Any = None
        if rc.live_view:  # read-only Foxglove view of the same records (recording/live.py); off by default
            from recording.live import LiveView

            try:
                self.live = LiveView(rc.live_host, rc.live_port, f"teleop {role}")
            except Exception as exc:  # port taken, bad address: the black box records on without its view
                log.error("live view not started on %s:%d: %s: choose another recording.live_port",
                          rc.live_host, rc.live_port, exc)

    def start(self, now_ns: int) -> None:
        self.files.open(now_ns)
        self._next_flush = now_ns + self.chunk_ns
        self._status(now_ns)

    def _handle(self, frames: list[Any]) -> None:
        try:
            items: list[Item] = list(split_items(frames))
        except ItemError as exc:
            self.translator.invalid += 1
            self.translator.last_error = str(exc)
            return
        for item in items:
            for topic, t_ns, msg in self.translator.translate(item):
                schema = Translator.video_schema_of((topic, t_ns, msg)) if topic.endswith("/video") else None
                self.files.write(topic, t_ns, msg, schema)
                if self.live is not None:
                    self.live.publish(topic, schema or self.files.schema_for(topic), t_ns + self.mono_to_wall_ns, msg)

    def _status(self, now_ns: int) -> None:
        self._next_status = now_ns + STATUS_NS
        dropped = self.translator.dropped
        self._status_dropped = dropped
        tot = self.files.total
        self.files.write(Topics(self.role).recording, now_ns, {
            "t_ns": now_ns, "messages": tot.messages, "bytes": tot.bytes, "dropped": dropped,
            "invalid": self.translator.invalid, "queue_depth": self.queue_depth, "file": str(self.files.path),
        })

    def drain(self, max_control: int = CONTROL_BURST) -> int:
        """Everything waiting on the control socket (up to a burst), then one video frame if control is
        empty. Returns the number of messages taken."""
        n = 0
        while n < max_control:
            try:
                frames = self.control.recv_multipart(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                break
            self._handle(frames)
            n += 1
            if n % 64 == 0 and time.monotonic_ns() >= self._next_flush:
                break  # a long backlog must not hold back the timed chunk flush (the kill-loss bound)
        if n < max_control:
            try:
                frames = self.video.recv_multipart(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                pass
            else:
                self._handle(frames)
                n += 1
        self.queue_depth = n
        return n

    def housekeeping(self, now_ns: int) -> None:
        if now_ns >= self._next_status and self._trim is not None:
            # Once a second, give glibc's free pages back to the OS. A backlog (the recorder at nice +10
            # starved of CPU, up to control_queue + video_queue messages, received by ZeroMQ's I/O thread
            # into its own malloc arena) or a big chunk leaves megabytes free but resident in the arenas;
            # without this, RSS ratchets up to the largest burst seen. ~0.05 ms, a few ms after a burst.
            self._trim(0)
        if self.translator.dropped != self._status_dropped or now_ns >= self._next_status:
            self._status(now_ns)
        if now_ns >= self._next_flush:
            self.files.flush()
            self._next_flush = now_ns + self.chunk_ns
            self.files.maybe_rotate(now_ns)
        if self.memtrace is not None:
            self.memtrace.poll(now_ns)

    def run(self, should_stop: Any) -> None:
        while not should_stop():
            now = time.monotonic_ns()
            self.housekeeping(now)
            if self.drain() == 0:
                wait_ms = max(1, min(self._next_flush, self._next_status) - time.monotonic_ns()) // 1_000_000
                self.poller.poll(min(wait_ms, 50))
        # Stopping: take what the producers handed over before they closed, then close the file.
        end = time.monotonic_ns() + STOP_DRAIN_NS
        quiet_since = time.monotonic_ns()
        while time.monotonic_ns() < end and time.monotonic_ns() - quiet_since < QUIET_NS:
            if self.drain(10**9):
                quiet_since = time.monotonic_ns()
            else:
                self.poller.poll(10)
        self.close(time.monotonic_ns())

    def close(self, now_ns: int) -> None:
        with contextlib.suppress(Exception):
            self._status(now_ns)
        self.files.close()
        if self.live is not None:
            with contextlib.suppress(Exception):
                self.live.close()
        self.control.close(0)
        self.video.close(0)


def run_recorder(cfg: Config, role: str, ipc_dir: str, stop: Any, report: Any) -> None:
    """Process entry ('spawn'): record until `stop` is set, SIGTERM arrives or the parent dies."""
    die_with_parent()
    with contextlib.suppress(OSError):
        os.nice(RECORDER_NICE)
    logging.basicConfig(level=getattr(logging, cfg.logging.level),
                        format=f"%(asctime)s recorder-{role}[{os.getpid()}] %(levelname)s %(message)s")
    flag = StopFlag(signals=(signal.SIGTERM,))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides
    try:
        loop = RecorderLoop(cfg, role, ipc_dir)
        loop.start(time.monotonic_ns())
    except (OSError, zmq.ZMQError, ValueError) as exc:
        log.error("recording disabled: %s", exc)
        report.put(("error", str(exc)))
        return
    report.put(("ready", {"control": loop.control_endpoint, "video": loop.video_endpoint,
                          "dir": str(loop.files.dir), "file": str(loop.files.path), "pid": os.getpid(),
                          "live": loop.live.url if loop.live is not None else ""}))
    try:
        loop.run(lambda: bool(flag) or stop.is_set())
    finally:
        report.put(("summary", {"files": [str(p) for p in loop.files.files], "messages": loop.files.total.messages,
                                "per_topic": loop.files.total.per_topic, "dropped": loop.translator.dropped,
                                "invalid": loop.translator.invalid, "last_error": loop.translator.last_error}))


class RecorderChild:
    """The parent's handle: start the recorder, give producers their taps, stop it and read its summary."""

    def __init__(self, cfg: Config, role: str, start_timeout_s: float = 30.0) -> None:
        self.cfg = cfg
        self.role = role
        self.ipc_dir = tempfile.mkdtemp(prefix=f"teleop-rec-{role}-")
        mp = multiprocessing.get_context("spawn")
        self.stop_event = mp.Event()
        self.report = mp.Queue()
        self.proc = mp.Process(target=run_recorder, args=(cfg, role, self.ipc_dir, self.stop_event, self.report),
                               name=f"recorder-{role}", daemon=True)
        self.proc.start()
        self.info: dict[str, Any] = {}
        self.summary: dict[str, Any] | None = None
        self.error = ""
        kind, value = "error", f"recorder did not start within {start_timeout_s:.0f} s"
        deadline = time.monotonic() + start_timeout_s
        while time.monotonic() < deadline:
            try:
                kind, value = self.report.get(timeout=0.1)
                break
            except queue.Empty:
                if not self.proc.is_alive():
                    kind, value = "error", f"recorder exited {self.proc.exitcode} before it was ready"
                    break
        if kind == "ready":
            self.info = value
        else:
            self.error = str(value)
            log.error("NOT RECORDING: %s", value)
        self._taps: list[Any] = []

    @property
    def ok(self) -> bool:
        return bool(self.info)

    @property
    def pid(self) -> int | None:
        return self.proc.pid

    @property
    def video_endpoint(self) -> str | None:
        return self.info.get("video") if self.ok and self.cfg.recording.video else None

    def control_tap(self) -> ControlTap | NullTap:
        if not self.ok:
            return NullTap()
        t = ControlTap(self.info["control"], self.cfg.recording.control_queue, name=f"{self.role}-control")
        self._taps.append(t)
        return t

    def video_tap(self) -> VideoTap | NullTap:
        ep = self.video_endpoint
        if ep is None:
            return NullTap()
        t = VideoTap(ep, self.cfg.recording.video_queue, name=f"{self.role}-video")
        self._taps.append(t)
        return t

    def close(self, timeout_s: float = 5.0, discard: bool = False) -> dict[str, Any] | None:
        """Close our taps (their lingering sends complete), stop the recorder, wait for its file to close.
        `discard`: the role never started (a key or port error), so its file records nothing: delete it rather
        than leave an empty recording for QA to find."""
        for t in self._taps:
            t.close()
        self._taps = []
        self.stop_event.set()
        deadline = time.monotonic() + timeout_s
        while self.summary is None and time.monotonic() < deadline and (self.proc.is_alive() or not
                                                                          self.report.empty()):
            try:
                kind, value = self.report.get(timeout=0.1)
            except queue.Empty:
                continue
            if kind == "summary":
                self.summary = value
        self.proc.join(max(0.1, deadline - time.monotonic()))
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(2)
        shutil.rmtree(self.ipc_dir, ignore_errors=True)
        if discard and self.summary is not None:
            for path in self.summary.get("files", []):
                with contextlib.suppress(OSError):
                    os.unlink(path)
        return self.summary


def start_recorder(cfg: Config, role: str) -> RecorderChild | None:
    """The role's recorder, or None when recording is off (said once, loudly: the black box is off)."""
    if not cfg.recording.enabled:
        log.warning("recording is OFF (recording.enabled = false): this session leaves no black-box record")
        return None
    return RecorderChild(cfg, role)


def recording_dir(cfg: Config) -> Path:
    return Path(cfg.recording.dir).expanduser()
