"""Start and stop project roles as real OS processes (demo, benchmarks, cross-process tests)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path


def free_ports(n: int) -> list[int]:
    """`n` distinct TCP ports that were free on loopback a moment ago."""
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def port_overrides(control: int, telemetry: int, video: int | None = None) -> list[str]:
    out = [f"link.control_port={control}", f"link.telemetry_port={telemetry}"]
    if video is not None:
        out.append(f"link.video_port={video}")
    return out


@dataclass
class Role:
    """A running `teleop` subcommand; stderr is kept (last 200 lines) for error reports."""

    name: str
    proc: subprocess.Popen
    ready: str = ""
    stderr_tail: deque = field(default_factory=lambda: deque(maxlen=200))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM, then SIGKILL if it does not exit in `timeout` s. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def stderr_text(self) -> str:
        return "".join(self.stderr_tail)


def teleop_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "teleop.cli", *args]


def start_role(name: str, argv: list[str], timeout: float = 30.0, prefix: list[str] | None = None,
               env: dict[str, str] | None = None, command: list[str] | None = None,
               stderr_line_delay_s: float = 0.0) -> Role:
    """Start `teleop <argv>` (optionally under `prefix`, e.g. `ip netns exec NS`) and wait for READY.
    `command`: another program that prints READY the same way, run instead of `teleop` (a test's own role).
    `stderr_line_delay_s`: read its stderr that slowly, a pause after every line (teleop bench stall: a busy
    window's reader thread; once the pipe's 64 KiB are full, every write to stderr in the role waits)."""
    cmd = (prefix or []) + (command if command is not None else teleop_command(*argv))
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
        env={**os.environ, **(env or {})},
    )
    role = Role(name, proc)

    def pump_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            role.stderr_tail.append(line)
            if stderr_line_delay_s:
                time.sleep(stderr_line_delay_s)

    threading.Thread(target=pump_stderr, daemon=True).start()
    ready = threading.Event()

    def pump_stdout() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("READY") and not ready.is_set():
                role.ready = line.strip()
                ready.set()

    threading.Thread(target=pump_stdout, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not ready.wait(0.05):
        if proc.poll() is not None or time.monotonic() > deadline:
            role.stop()
            raise RuntimeError(f"{name} did not start (exit {proc.returncode}):\n{role.stderr_text()}")
    return role


def pid_listening_on(port: int) -> int | None:
    """The process that owns the listening TCP socket on `port` (e.g. a bedside's video sender), or None."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if int(f[1].rsplit(":", 1)[1], 16) == port and f[3] == "0A":  # LISTEN
                inodes.add(f[9])
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return int(pid)
        except OSError:
            continue
    return None
