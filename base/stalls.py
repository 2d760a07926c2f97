"""Stall capture: the Python stack of a control loop that stands still (or of every thread), written without
the loop's help and without the GIL.

How: faulthandler's C handler for SIGALRM (`faulthandler.register`) and the process's wall-clock timer
(`setitimer(ITIMER_REAL)`), which the loop re-arms for `bound` at every tick (`arm`). A loop that does not
come back within the bound lets the timer expire: the kernel delivers SIGALRM, giving the process's main
thread (where both loops run) first claim on it, and faulthandler, inside the signal handler, writes that
thread's stack to a file (`all_threads`: every thread's; see `StallCapture`). When the loop runs again it
reads what was written (`collect`) and its shell logs, saves and records it (safety/loop_watch.py).

Why not `faulthandler.dump_traceback_later`: each re-arm cancels its watchdog thread, waits for that thread
to exit and starts another: 113–174 µs a call on the development machine, and a SCHED_FIFO loop waited up
to 2.9 ms for the time-shared watchdog thread to exit; re-arming only every 50 ms would leave stalls between
the bound and bound + 50 ms unexplained. `setitimer` is one system call: 0.8 µs (docs/benchmarks.md).

SIGALRM and ITIMER_REAL belong to the whole process: one capture per process. A second one (a test running
two loops in one process), or a process where SIGALRM already has a handler or the timer already runs
(pytest-timeout), stays off and says why (`why_off`). The timer is disarmed before the handler is removed:
SIGALRM without a handler would end the process.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import re
import signal
import threading
import time
from pathlib import Path

HOLDOFF_NS = 1_000_000_000
"""After a dump, the timer stays off this long: a loop overrunning again and again writes ≤ 1 dump a second."""
MAX_DUMPS = 1000
"""Then the capture stops (bounds the disk a loop overrunning for hours can fill: ~5 kB a dump)."""

_owner: object | None = None  # the one capture that holds SIGALRM in this process


def thread_stack(dump: str, thread_id: int) -> list[str]:
    """The frames (innermost first, faulthandler's `File "…", line n in f` lines) of thread `thread_id`
    (`threading.get_ident()`) in the last dump of `dump`; [] if it is not there."""
    header = re.compile(rf"^(Current thread|Thread) 0x0*{thread_id:x} \(most recent call first\):$")
    found: list[str] = []
    lines = dump.splitlines()
    for i, line in enumerate(lines):
        if header.match(line):
            found = []
            for frame in lines[i + 1:]:
                if not frame.startswith("  File "):
                    break
                found.append(frame.strip())
    return found


class StallCapture:
    """One per process: `arm(now)` at every tick of the loop it watches, `collect(now)` when a tick was over the
    bound, `close()` when the loop ends. Dumps accumulate in `live_path` (kept if any was written)."""

    def __init__(self, folder: str | Path, role: str, bound_ns: int, all_threads: bool = False) -> None:
        """`all_threads`: every thread's stack, not only the one the signal lands in (the loop's: see below).
        Walking another thread's frames from a signal handler, without the GIL, races with that thread when it
        runs Python on another CPU, and once crashed the bedside (SIGSEGV mid-dump, docs/reliability.md):
        a diagnosis tool, never a default. Without it the capture runs only for a loop in the main thread (the
        one SIGALRM lands in), and `collect` names that thread in the dump, as an every-thread dump would."""
        global _owner
        self.role = role
        self.folder = Path(folder).expanduser()
        self.bound_s = bound_ns / 1e9
        self.active = False
        self.why_off = ""
        self.dumps = 0
        self.live_path: Path | None = None
        self._file = None
        self._read = 0
        self._holdoff_until = 0
        self.all_threads = all_threads
        self._main = threading.main_thread().ident or 0
        if not all_threads and threading.get_ident() != self._main:
            self.why_off = ("the loop is not the process's main thread, which SIGALRM reaches "
                            "(logging.stall_stacks=all captures every thread)")
            return
        if _owner is not None:
            self.why_off = "another loop of this process captures its stalls (SIGALRM is the process's)"
            return
        if signal.getsignal(signal.SIGALRM) not in (signal.SIG_DFL, None) or any(signal.getitimer(signal.ITIMER_REAL)):
            self.why_off = "SIGALRM or the process's wall-clock timer is in use here"
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.live_path = self.folder / f"{role}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.stacks"
            self._file = open(self.live_path, "w+b", buffering=0)  # noqa: SIM115 - faulthandler writes its fd
        except OSError as exc:
            self.why_off = f"cannot write the stall folder {self.folder}: {exc.strerror or exc}"
            self.live_path = None
            return
        faulthandler.register(signal.SIGALRM, file=self._file, all_threads=all_threads, chain=False)
        _owner = self
        self.active = True

    def arm(self, now_ns: int) -> None:
        """The loop is alive at `now_ns`: the stacks are written if it is not back within the bound."""
        if self.active and now_ns >= self._holdoff_until:
            signal.setitimer(signal.ITIMER_REAL, self.bound_s)

    def collect(self, now_ns: int) -> str:
        """What faulthandler wrote since the last call ('' if nothing: the tick was over the bound by less
        than the timer's slack, or the capture is off or holding off)."""
        if self._file is None:
            return ""
        size = os.fstat(self._file.fileno()).st_size
        if size <= self._read:
            return ""
        text = os.pread(self._file.fileno(), size - self._read, self._read).decode("utf-8", "replace")
        if not self.all_threads:  # faulthandler names no thread in a one-thread dump: it is the main one's
            text = text.replace("Stack (most recent call first):",
                                f"Current thread 0x{self._main:016x} (most recent call first):")
        self._read = size
        self.dumps += 1
        self._holdoff_until = now_ns + HOLDOFF_NS
        if self.dumps >= MAX_DUMPS and self.active:
            self._disarm()
            self.why_off = f"stopped after {MAX_DUMPS} dumps"
        return text

    def save(self, text: str, header: str, now_ns: int) -> Path | None:
        """One stall's stacks in a file of its own, `<role>-<date>-<pid>-<n>.txt`, under `header`."""
        if not text:
            return None
        path = self.folder / f"{self.role}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{self.dumps}.txt"
        try:
            path.write_text(f"{header}\nt_ns={now_ns}\n\n{text}", encoding="utf-8")
        except OSError:
            return None
        return path

    def _disarm(self) -> None:
        global _owner
        if self.active:
            signal.setitimer(signal.ITIMER_REAL, 0)  # first: SIGALRM without faulthandler's handler would kill
            faulthandler.unregister(signal.SIGALRM)
            self.active = False
            _owner = None

    def close(self) -> None:
        """Stop capturing; the live file stays only if a dump was written to it."""
        self._disarm()
        if self._file is not None:
            empty = os.fstat(self._file.fileno()).st_size == 0
            self._file.close()
            self._file = None
            if empty and self.live_path is not None:
                with contextlib.suppress(OSError):
                    self.live_path.unlink()
