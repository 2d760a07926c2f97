"""Process plumbing shared by every role: stop on SIGTERM/SIGINT, announce readiness, JSON-lines logs."""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import signal
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
    _log.info("%s: control loop and zmq I/O thread at SCHED_FIFO %d", role, priority)
    return f"fifo:{priority}"


def normal_scheduling() -> None:
    """Back to SCHED_OTHER for the calling thread and the zmq I/O threads (a harness after a measurement)."""
    if not hasattr(os, "SCHED_OTHER"):
        return
    for tid in [0, *_zmq_io_threads()]:
        with contextlib.suppress(OSError):
            os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))


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
