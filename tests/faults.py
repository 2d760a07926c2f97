"""The fault suite's rig (tests/test_faults_*.py): real processes, and what each of them records.

* `teleop bedside` (event log JSON lines, --summary; stereo video child with `video=True`);
* optionally `teleop linkemu` between console and bedside (--commands: the test faults the link *now*;
  --report: what it did, with monotonic timestamps);
* `teleop console --ui`: the real engine process (--summary), driven by a HeadlessWindow (rehearsal/surgeon.py)
  that presses engage only when the test says so;
* a telemetry recorder: a monitor's SUB on the bedside's telemetry, keeping each arm's setpoint.

Same host: every timestamp (bedside, console, linkemu, this process) is CLOCK_MONOTONIC.

With TELEOP_FAULT_REPORT=FILE each test appends its measured figures (one JSON line) to FILE: the
measured column of docs/reliability.md.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import zmq
from crossproc import Session, TelemetryTap, sets

from base import procs
from base.config import load_config
from base.procs import Role, free_ports, teleop_command
from rehearsal.surgeon import HeadlessWindow
from transport import codec
from transport.messages import INSTRUMENT_ARMS, Telemetry

N_INSTRUMENTS = len(INSTRUMENT_ARMS)

HARNESS = [
    # The master bridge and heartbeats come from a Python thread in the test process on a loaded 2-core
    # machine: its own hiccups must not read as a master fault or a hung window (not under test here).
    # 250 ms was once not enough in a CI run (a master FAULT hold in a healthy-link test): the key's maximum.
    "console.master_timeout_ms=1000", "console.gui_timeout_ms=1500",
]
SMALL_VIDEO = ["video.width=160", "video.height=120", "video.fps=30", "video.codec=jpeg"]
LOAD_MARGIN_MS = 25.0
"""Scheduling margin on top of a documented bound (a loaded 2-core CI machine); docs/reliability.md."""


def pid_listening_on(port: int) -> int:
    """The process that owns the listening TCP socket on `port` (e.g. the bedside's video child)."""
    pid = procs.pid_listening_on(port)
    assert pid is not None, f"nobody listens on port {port}"
    return pid


def report(test: str, **figures: Any) -> None:
    path = os.environ.get("TELEOP_FAULT_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"test": test, **figures}, default=str) + "\n")


class LinkEmu:
    """A `teleop linkemu --commands` process between console and bedside."""

    def __init__(self, tmp: Path, bed_sets: list[str], args: list[str]) -> None:
        self.report_path = tmp / "linkemu.json"
        cmd = teleop_command("linkemu", "--listen-port", "0", "--commands", "--report", str(self.report_path),
                             *args, *sets(bed_sets))
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, bufsize=1)
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines.put), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr.append), daemon=True).start()
        ready = self._line("READY", 30)
        f = dict(kv.split("=", 1) for kv in ready.split()[1:])
        self.ports = (int(f["control"]), int(f["telemetry"]), int(f["video"]))

    @staticmethod
    def _pump(stream, put) -> None:
        for line in stream:
            put(line)

    def _line(self, prefix: str, timeout: float) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            if line.startswith(prefix):
                return line.strip()
        time.sleep(0.2)  # let the pump collect the last of stderr
        raise AssertionError(f"linkemu: no {prefix} line; stderr:\n{''.join(self.stderr[-30:])}")

    def command(self, line: str) -> dict[str, int]:
        """e.g. "stall 1.5": returns start_ns/end_ns of what was scheduled."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        ok = self._line("OK", 10)
        return {k: int(v) for k, v in (kv.split("=", 1) for kv in ok.split()[1:]) if k.endswith("_ns")}

    def stop(self) -> dict:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()  # end of commands: it reports and exits
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return json.loads(self.report_path.read_text()) if self.report_path.exists() else {}


class TelemetryRecorder:
    """Every telemetry message's instrument setpoints (mm) and the bedside's state, with arrival times."""

    def __init__(self, session: Session, host: str = "127.0.0.1") -> None:
        self.tap = TelemetryTap(host, session.ports[1], session)
        self.samples: list[tuple[int, str, int, tuple[tuple[float, float, float], ...]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.tap.sock.poll(50):
                continue
            while True:
                try:
                    data = self.tap.sock.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                msg = codec.decode(data)
                if isinstance(msg, Telemetry):
                    sp = tuple(tuple(c * 1000 for c in a.setpoint_cp.position) for a in msg.arms[:N_INSTRUMENTS])
                    self.samples.append((time.monotonic_ns(), msg.operating_state.name, msg.epoch, sp))

    def max_setpoint_step_mm(self, since_ns: int) -> float:
        """Largest change of an instrument setpoint between consecutive telemetry messages since `since_ns`."""
        s = [x for x in self.samples if x[0] >= since_ns]
        return max((math.dist(a[3][i], b[3][i]) for a, b in itertools.pairwise(s) for i in range(N_INSTRUMENTS)),
                   default=0.0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.tap.close()


class Rig:
    """bedside [+ linkemu] + console engine + headless window + telemetry recorder, on fresh ports."""

    def __init__(self, tmp: Path, video: bool = False, link: list[str] | None = None, extra: list[str] = (),
                 bed_prefix: list[str] | None = None, bed_host: str = "127.0.0.1") -> None:
        self.tmp = tmp
        self.bed_host = bed_host
        bed_extra = [f"link.bind_host={bed_host}"]
        con_extra = [f"link.bedside_host={bed_host}"]
        self.video = video
        self.link_args = link
        base = HARNESS + (SMALL_VIDEO if video else []) + list(extra)
        self.s = Session(tmp, extra=base, bed_prefix=bed_prefix, bed_extra=bed_extra, con_extra=con_extra,
                         video=video)
        m, st, it = free_ports(3)
        self.s.con_sets += [f"console.master_port={m}", f"console.ui_state_port={st}",
                            f"console.ui_intent_port={it}"]
        self.linkemu: LinkEmu | None = None
        self.window: HeadlessWindow | None = None
        self.telemetry: TelemetryRecorder | None = None
        self.link_report: dict = {}

    # ------------------------------------------------------------------ start

    def start(self, console: bool = True) -> Rig:
        self.s.start_bedside()
        self.telemetry = TelemetryRecorder(self.s, self.bed_host)
        self._direct = list(self.s.con_sets)
        if console:
            self.attach(self.link_args)
        return self

    def attach(self, link: list[str] | None) -> None:
        """A console (and, with `link`, a `teleop linkemu` in front of the bedside) for one test."""
        self.s.con_sets = list(self._direct)
        if link is not None:
            self.linkemu = LinkEmu(self.tmp, self.s.bed_sets, link)
            keep = [o for o in self.s.con_sets if not o.startswith(("link.control_port", "link.telemetry_port",
                                                                    "link.video_port"))]
            c, t, v = self.linkemu.ports
            self.s.con_sets = [*keep, f"link.control_port={c}", f"link.telemetry_port={t}", f"link.video_port={v}"]
        self.start_console()

    def detach(self) -> tuple[dict, dict]:
        """Stop this test's console and link emulator: (console summary, link report); the bedside stays."""
        con = self.s.console_summary() if self.s.console is not None else {}
        if self.window is not None:
            self.window.close()
            self.window = None
        self.s.console = None
        self.link_report = self.linkemu.stop() if self.linkemu is not None else {}
        self.linkemu = None
        return con, self.link_report

    def start_console(self) -> Role:
        from base.procs import start_role

        self.s.console = start_role("console", ["console", "--ui", "--summary", str(self.s.con_summary),
                                                *sets(self.s.con_sets)])
        self.window = HeadlessWindow(load_config(None, self.s.con_sets), video=self.video)
        return self.s.console

    # ------------------------------------------------------------------ observe

    @property
    def watchdog_ms(self) -> float:
        assert self.s.bedside is not None
        return float(self.s.bedside.ready.split("watchdog_ms=")[1].split()[0])

    def engage(self, timeout: float = 20.0) -> int:
        """The surgeon engages; both instruments follow. Returns the press time."""
        assert self.window is not None
        if not self.window.wait(HeadlessWindow.usable, timeout):
            raise AssertionError(f"console never usable: {self.window.state}\n{self.s.diagnostics()}")
        return self.window.engage_until_following(timeout)

    def freeze_after(self, t_ns: int, timeout: float = 5.0) -> dict:
        rec = self.s.wait_event(lambda r: r.get("type") == "freeze" and r["t_ns"] >= t_ns, timeout)
        assert rec is not None, f"no bedside freeze after the fault\n{self.s.diagnostics()}"
        return rec

    def enabled_after(self, t_ns: int, timeout: float = 0.0) -> dict | None:
        return self.s.wait_event(lambda r: r.get("type") == "event" and r.get("to") == "ENABLED"
                                 and r["t_ns"] >= t_ns, timeout)

    def console_events(self, source: str | None = None, since_ns: int = 0) -> list[dict]:
        assert self.window is not None
        with self.window.lock:
            evs = list(self.window.events)
        return [e for e in evs if e["t_ns"] >= since_ns and (source is None or e["source"] == source)]

    def held_event(self, reason: str, since_ns: int, timeout: float = 5.0) -> dict:
        """The console's first 'PSMx …->HELD' with `reason` after `since_ns` (the surgeon's alarm)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for e in self.console_events("teleop", since_ns):
                if e["name"].endswith("->HELD") and e["reason"] == reason:
                    return e
            time.sleep(0.02)
        raise AssertionError(f"no HELD({reason}) on the console: {self.console_events(since_ns=since_ns)}")

    def assert_stays_held(self, seconds: float, since_ns: int) -> None:
        """Recovery waits for the surgeon: with the fault gone and nobody pressing engage, nothing resumes."""
        assert self.window is not None
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            states = self.window.arm_states()
            assert "FOLLOWING" not in states.values(), states
            time.sleep(0.05)
        assert self.enabled_after(since_ns) is None, "the bedside re-enabled without the surgeon"

    def console_lost(self) -> None:
        """The console process is gone (killed): forget it without asking for its summary."""
        if self.window is not None:
            self.window.close()
            self.window = None
        if self.s.console is not None:
            self.s.console.stop()
            self.s.console = None

    def assert_no_jump(self, since_ns: int, limit_mm: float = 2.5) -> float:
        """From the re-engage press on, no instrument setpoint moves more than one console step (2 mm, plus
        150 mm/s over a 5 ms telemetry period ≈ 0.75 mm) between telemetry messages."""
        assert self.telemetry is not None
        step = self.telemetry.max_setpoint_step_mm(since_ns)
        assert step <= limit_mm, f"setpoint jumped {step:.2f} mm on re-engage"
        return step

    # ------------------------------------------------------------------ stop

    def finish(self) -> tuple[dict, dict]:
        """Stop everything; (console summary, bedside summary)."""
        con, _ = self.detach()
        return con, self.s.bedside_summary()

    def close(self) -> None:
        if self.window is not None:
            self.window.close()
        if self.telemetry is not None:
            self.telemetry.close()
        self.s.close()
        if self.linkemu is not None:
            self.linkemu.stop()
