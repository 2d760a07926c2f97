"""Process plumbing shared by every role: stop on SIGTERM/SIGINT, announce readiness, JSON-lines logs."""

from __future__ import annotations

import atexit
import contextlib
import gc
import json
import logging
import logging.handlers
import os
import queue
import signal
import struct
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any


def die_with_parent() -> None:
    """SIGTERM this process when its parent dies, however the parent dies (Linux PR_SET_PDEATHSIG): a bedside's
    children (video sender, recorder) must not outlive it, streaming or holding ports with nobody in charge."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class StopFlag:
    """Set by SIGTERM/SIGINT (or by a test or another thread) so loops end cleanly and write their summaries.

    A plain attribute, not a threading.Event: a signal handler runs between two bytecodes of the main thread,
    possibly inside the handler of a previous signal, and Event.set takes a non-reentrant lock; two SIGTERMs
    close together (the parent's death signal and a harness's stop) deadlocked a recorder that way, leaving
    its file without a summary (tests/test_runtime.py). Assigning a bool takes no lock."""

    def __init__(self, install_signals: bool = True,
                 signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)) -> None:
        self._set = False
        if install_signals and threading.current_thread() is threading.main_thread():
            for sig in signals:
                signal.signal(sig, self._on_signal)

    def _on_signal(self, _signum: int, _frame: Any) -> None:
        self._set = True

    def set(self) -> None:
        self._set = True

    def __bool__(self) -> bool:
        return self._set


def announce_ready(**fields: Any) -> None:
    """One line on stdout that parent processes wait for: `READY key=value ...`."""
    print("READY " + " ".join(f"{k}={v}" for k, v in fields.items()), flush=True)


def realtime_gc() -> None:
    """Keep the collector off the 1 kHz path: freeze start-up objects, collect young ones rarely."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


LOG_QUEUE_RECORDS = 10_000
"""Log records waiting for the writer thread at most; more are dropped and counted (a stderr nobody reads)."""


class _DroppingQueueHandler(logging.handlers.QueueHandler):
    """Hands a formatted record to the writer thread; never waits: a full queue drops it, and the writer says
    how many it lost once it can."""

    def __init__(self, q: queue.Queue) -> None:
        super().__init__(q)
        self.dropped = 0
        self._told = 0

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            if self.dropped != self._told:
                lost = self.dropped - self._told
                note = logging.LogRecord("logging", logging.WARNING, __file__, 0,
                                         "%d log records dropped: stderr was not read fast enough", (lost,), None)
                self.queue.put_nowait(self.prepare(note))
                self._told = self.dropped
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1


_log_writer: logging.handlers.QueueListener | None = None


def queued_logging(level: int, fmt: str, stream: IO[str] | None = None) -> logging.handlers.QueueListener:
    """Log through a queue: every thread's `log.x()` formats its record and queues it without waiting; one writer
    thread (`log-writer`) alone writes to `stream` (stderr).

    Why (issue #19): with the handler writing itself, a log call waits for the stream, and for the handler's
    lock while another thread waits for the stream. A stderr pipe whose reader is slow (a busy window's pump
    thread) filled up; the ZAP thread, logging a refused key, blocked in write() holding the handler's lock;
    the bedside loop, logging a state change, waited for that lock: 1.2 s in the session, 12.7 s in
    `teleop bench stall` before this. Now a full pipe only delays the writer thread, and a full queue drops
    records (counted and said). Replaces any previous handlers of the root logger; the writer drains at exit."""
    global _log_writer
    _stop_log_writer()
    handler = logging.StreamHandler(stream or sys.stderr)
    q: queue.Queue = queue.Queue(LOG_QUEUE_RECORDS)
    qh = _DroppingQueueHandler(q)
    qh.setFormatter(logging.Formatter(fmt))  # formatted in the caller: the writer only writes
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    root.addHandler(qh)
    root.setLevel(level)
    _log_writer = logging.handlers.QueueListener(q, handler)
    _log_writer.start()
    if _log_writer._thread is not None:  # the stdlib names no other handle on its thread
        _log_writer._thread.name = "log-writer"
        gil_helper(_log_writer._thread)
    atexit.register(_stop_log_writer)
    return _log_writer


LOG_DRAIN_S = 2.0
"""At exit the writer gets this long to write what is queued: a stderr nobody reads must not hold the exit."""


def _stop_log_writer() -> None:
    global _log_writer
    w, _log_writer = _log_writer, None
    if w is None or w._thread is None:
        return
    with contextlib.suppress(queue.Full):
        w.enqueue_sentinel()
    w._thread.join(LOG_DRAIN_S)  # alive after that: a daemon thread, it ends with the process


_gil_helpers: list[threading.Thread] = []


def gil_helper(thread: threading.Thread) -> None:
    """Name a thread of this process that runs Python (so holds the GIL at times) beside a control loop: when
    the loop goes real-time, so does it, one priority below (`realtime_scheduling`).

    Why (issue #19): at normal priority such a thread can be preempted by any CPU hog while it holds the GIL;
    the real-time loop, woken, then waits for the GIL until the scheduler runs that thread again. In
    `teleop bench stall`, 46 of 59 captured bedside stalls of 10–20 ms had pyzmq's ZAP thread in Python and
    the loop waiting to wake. One below the loop: it never preempts the loop, and nothing time-shared
    preempts it. Threads the loop starts after going real-time inherit its priority (the arm drivers')."""
    _gil_helpers[:] = [t for t in _gil_helpers if t.is_alive()]
    _gil_helpers.append(thread)


ZMQ_IO_THREAD = "ZMQbg/IO/"
"""libzmq names its I/O threads so (pthread_setname_np): they carry every message of the control path."""
RT_PRIORITY_MAX = 49
"""Highest priority a control loop may ask for: below the kernel's threaded interrupt handlers (FIFO 50)."""

_log = logging.getLogger("runtime")


def _zmq_io_threads(wait_s: float = 0.0) -> list[int]:
    """Thread ids of this process's libzmq I/O threads (Linux /proc), started when a context's first socket is.
    A new thread names itself a moment after it starts: `wait_s` allows for that."""
    deadline = time.monotonic() + wait_s
    while True:
        tids = []
        try:
            tasks = list(Path("/proc/self/task").iterdir())
        except OSError:
            return tids
        for task in tasks:
            try:
                if (task / "comm").read_text().startswith(ZMQ_IO_THREAD):
                    tids.append(int(task.name))
            except (OSError, ValueError):
                pass
        if tids or time.monotonic() >= deadline:
            return tids
        time.sleep(0.005)


def realtime_scheduling(priority: int, role: str) -> str:
    """Run the calling thread and the zmq I/O threads under SCHED_FIFO at `priority` (0 = leave them alone).

    Why: on a busy host a time-shared task (video, window, recorder, another engineer's tests) delays the
    wake-up of the 1 kHz loop by up to a scheduler slice; a FIFO thread preempts it at once. Safe because
    every loop using this blocks on its sockets between ticks and the kernel's RT throttling
    (sched_rt_runtime_us) keeps 5 % of the CPU for everything else. SCHED_RESET_ON_FORK: children (the
    video sender, the recorder) start at normal priority. No mlockall: it grew each role from 80 to ~570 MB
    resident to save 4–8 minor page faults a second (docs/benchmarks.md).
    Not permitted (no root, no RLIMIT_RTPRIO): a logged warning, normal scheduling. Returns what was done,
    for the READY line. Call after the sockets exist (zmq starts its I/O threads with the first socket)."""
    if priority <= 0:
        return "normal"
    if not 1 <= priority <= RT_PRIORITY_MAX or not hasattr(os, "SCHED_FIFO"):
        _log.warning("%s: realtime priority %d unavailable here; normal scheduling", role, priority)
        return "normal"
    policy = os.SCHED_FIFO | getattr(os, "SCHED_RESET_ON_FORK", 0)
    param = os.sched_param(priority)
    try:
        os.sched_setscheduler(0, policy, param)  # 0 = the calling thread (Linux schedules threads)
    except OSError as exc:
        _log.warning("%s: SCHED_FIFO %d not permitted (%s); running at normal priority, expect more jitter "
                     "under load (run as root, or grant RLIMIT_RTPRIO / CAP_SYS_NICE)", role, priority,
                     exc.strerror)
        return "normal (not permitted)"
    # The I/O threads at the loop's own priority: left time-shared they wait behind the load as the loop did
    # (measured under load: RTT p99 up to 9 ms); one above it doubled the raw floor's p50.
    io_threads = _zmq_io_threads(wait_s=0.5)
    if not io_threads:
        _log.warning("%s: no zmq I/O thread found; it stays at normal priority", role)
    for tid in io_threads:
        try:
            os.sched_setscheduler(tid, policy, param)
        except OSError as exc:
            _log.warning("%s: zmq I/O thread %d stays at normal priority: %s", role, tid, exc.strerror)
    helper_param = os.sched_param(max(1, priority - 1))
    helpers = [t for t in _gil_helpers if t.is_alive() and t.native_id is not None]
    for t in helpers:
        try:
            os.sched_setscheduler(t.native_id, policy, helper_param)
        except OSError as exc:
            _log.warning("%s: thread %s stays at normal priority: %s", role, t.name, exc.strerror)
    _log.info("%s: control loop and zmq I/O thread at SCHED_FIFO %d%s", role, priority,
              f", {', '.join(t.name for t in helpers)} at {helper_param.sched_priority}" if helpers else "")
    return f"fifo:{priority}"


CPU_LATENCY_DEVICE = "/dev/cpu_dma_latency"
_cpu_latency_fd: int | None = None


def hold_cpu_wake_latency(us: int, role: str, device: str = CPU_LATENCY_DEVICE) -> str:
    """Ask the kernel to keep every CPU able to wake within `us` µs for as long as this process lives (Linux PM QoS:
    the request holds while the file stays open); -1 = leave the machine's idle policy alone.

    Why: between two 1 kHz commands an idle CPU halts (a VM's vCPU leaves the host CPU; bare metal enters a
    C-state), and the wake-up of the next one waits for it: on this 2-vCPU VM a FIFO sleeper woke 54 µs late at the
    median, 15 µs with 0 here, and the raw socket round trip fell from 241–267 to 55–59 µs (docs/benchmarks.md).
    The price: idle CPUs poll instead of halting, for every process on the machine, while the role runs; a
    dedicated console or bedside host is where it belongs (docs/operations.md). Not permitted (no root): a logged
    warning and the machine's policy. Returns what was done."""
    global _cpu_latency_fd
    if us < 0:
        return "default"
    try:
        fd = os.open(device, os.O_WRONLY)
    except OSError as exc:
        _log.warning("%s: cannot hold the CPU wake-up latency at %d us (%s: %s); idle CPUs keep the machine's policy "
                     "(run as root, or set %s.cpu_wake_latency_us = -1)", role, us, device, exc.strerror, role)
        return "default (not permitted)"
    try:
        os.write(fd, struct.pack("i", us))
    except OSError as exc:
        os.close(fd)
        _log.warning("%s: %s refused %d us (%s); idle CPUs keep the machine's policy", role, device, us, exc.strerror)
        return "default (refused)"
    if _cpu_latency_fd is not None:
        os.close(_cpu_latency_fd)
    _cpu_latency_fd = fd  # kept open: closing it (or the process ending) withdraws the request
    _log.info("%s: CPU wake-up latency held at %d us while this process runs", role, us)
    return f"{us}us"


def normal_scheduling() -> None:
    """Back to SCHED_OTHER for the calling thread and the zmq I/O threads (a harness after a measurement)."""
    if not hasattr(os, "SCHED_OTHER"):
        return
    for tid in [0, *_zmq_io_threads()]:
        with contextlib.suppress(OSError):
            os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))


def thread_sched_ns() -> tuple[int, int] | None:
    """(on a CPU, runnable but waiting for one) of the calling thread since it started, in ns, from the kernel's
    schedstat; None where it keeps none. Across a stall the two tell starvation (the waiting grew: other tasks
    held the CPUs) from a block (neither grew: the thread slept in a call) and from work (the running grew).
    One small file read (~10 µs): for loops that tick tens of times a second, not the 1 kHz ones."""
    try:
        with open("/proc/thread-self/schedstat", "rb") as f:
            ran, waited = f.read().split()[:2]
        return int(ran), int(waited)
    except (OSError, ValueError):
        return None


class JsonLines:
    """Append-only JSON-lines file, flushed per line so a killed process leaves a readable log."""

    def __init__(self, path: str | Path | None) -> None:
        self._f: IO[str] | None = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115

    def write(self, record: dict[str, Any]) -> None:
        if self._f is not None:
            self._f.write(json.dumps(record, separators=(",", ":")) + "\n")
            self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def write_json(path: str | Path | None, obj: Any) -> None:
    if path:
        Path(path).write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    else:
        json.dump(obj, sys.stdout, indent=2)
        print()
