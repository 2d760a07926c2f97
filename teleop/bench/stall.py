"""Stall: the two 1 kHz loops under the stress of issue #19's session, for N minutes; does either stand still?

Runs a real `teleop bedside` (stereo video, recorder) and a real `teleop console --ui` engine (recorder)
driven by a scripted surgeon (rehearsal/surgeon.py: follows in a circle, re-engages after any hold), and
beside them the stress the issue lists, each counted in `stress`:

* `console_window`: a real `teleop console` window (Qt, QT_QPA_PLATFORM=offscreen) with its own engine, as a
  second surgeon's station (`surgeon-2`: it connects, shows the video and state, never takes control);
* `monitor_windows`: a real `teleop monitor` window (offscreen) restarted every MONITOR_LIFE_S: real
  connect/disconnect churn of a window with video; and `monitor_connects`: a monitor station that connects
  (control and telemetry: two CURVE handshakes through the bedside's ZAP handler), pings and disconnects every
  100 ms (teleop/bench/estop.py's MonitorChurn);
* `wrong_key_attempts`: stations with keys the registry does not know (refused by the ZAP handler) and with
  the wrong bedside key (the CURVE handshake fails before ZAP), a few every 0.5 s, and every STORM_EVERY_S a
  handshake storm of STORM_SIZE at once; the bedside's own count is `refused_handshakes`;
* `hogs`: one busy process per CPU at normal priority (teleop/bench/estop.py);
* `slow_stderr`: the bedside's stderr read by a thread that pauses `--stderr-line-ms` after every line, as a
  busy window's pump thread reads the stderr of the roles it started: once the pipe's 64 KiB are full, every
  write to the bedside's stderr waits for the reader;
* `slow_disk`: the recordings on a real slow disk: an ext4 file system on a loop device whose writes the
  kernel throttles to `--disk-mbps` (cgroup-v1 blkio `throttle.write_bps_device` of the root group, which
  writeback obeys) and whose page cache may hold only 1 % of the dirty limit (`bdi max_ratio` +
  `strict_limit`), so the recorders' writes wait in the kernel, not in memory. Needs root and losetup; where
  unavailable, the recordings go to the output folder and `slow_disk` says why.

Reports `bedside_tick_ms` and `engine_tick_ms` {p999, max} (each loop's own period histogram, its summary's
`loop`), `over_bound` (ticks over `<role>.tick_bound_ms`), `stalls`: every stall whose stacks were captured
(≤ 1 a second, base/stalls.py) with its file in `--out` and the call the loop was in (`blocked_call`), the
threads that were running Python meanwhile (`running`: for a `wake` stall, who held the GIL), and
`unexplained_freezes`: bedside holds no one asked for (no e-stop, no console request), each with the stall
that preceded it. Targets (issue #19, over 10 minutes): tick max <= 10 ms on both loops, 0 unexplained
freezes, judged in `targets`. The exit status is non-zero only when the harness itself failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from base.config import load_config
from base.procs import Role, free_ports, port_overrides, start_role, teleop_command
from teleop.args import positive_minutes
from teleop.bench.estop import HOG_MARGIN_S, MonitorChurn, _hogs
from teleop.bench.link import machine
from teleop.bench.soak import SOAK_VIDEO, _tracebacks
from transport import codec
from transport.messages import Ping
from transport.security import client_security, throwaway_keys
from transport.zmqlink import tcp

TICK_TARGET_MS = 10.0
MONITOR_LIFE_S = 20.0
"""Each `teleop monitor` window lives this long, then the next one starts (window connect/disconnect churn)."""
WRONG_KEY_EVERY_S = 0.5
WRONG_KEYS_EACH = 3
"""Every WRONG_KEY_EVERY_S: this many stations with unknown keys, and one pinned to the wrong bedside key."""
STORM_EVERY_S = 30.0
STORM_SIZE = 200
"""A handshake storm: this many unknown-key connections opened at once, every STORM_EVERY_S."""
FREEZE_AFTER_STALL_NS = 2_000_000_000
"""A freeze this soon after a stall ended is attributed to it (the watchdog fires when the loop resumes)."""
OK_FREEZES = ("CONSOLE_REQUEST", "ESTOP")
"""Holds someone asked for; every other bedside freeze in this bench is unexplained."""
WAITING_CALLS = frozenset({
    "wait", "select", "poll", "recv", "recv_multipart", "recv_string", "recv_json", "sleep", "get", "accept",
    "readline", "read", "_wait_for_tstate_lock", "join", "epoll", "_poll", "run_forever", "readinto",
    "_recv", "_handle_workers", "_worker", "_feed", "wait_readable",
})
"""Innermost Python frames of a thread that waits with the GIL released (a faulthandler dump cannot say it)."""


SHARED_SLACK_NS = 2_000_000
"""Two stalls whose spans overlap within this much happened at the same time."""
PROBE_PRIORITY = 5
PROBE = r"""
import json, os, signal, sys, time
# A witness that does nothing else: SCHED_FIFO (below the loops), 1 ms sleeps; every gap over the bound, with the
# host's steal time (per CPU, jiffies) meanwhile. If it stood still with the loops, so did the machine.
try:
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(int(sys.argv[3])))
except OSError:
    pass
def steal():
    return {l.split()[0]: int(l.split()[8]) for l in open("/proc/stat") if l.startswith("cpu") and l[3] != " "}
end, bound = time.monotonic() + float(sys.argv[1]), int(float(sys.argv[2]) * 1e6)
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
gaps, prev, st = [], time.monotonic_ns(), steal()
while time.monotonic() < end and not stop:
    time.sleep(0.001)
    t, s = time.monotonic_ns(), steal()
    if t - prev > bound:
        gaps.append({"t_ns": t, "gap_ms": round((t - prev) / 1e6, 2), "steal_jiffies": {k: s[k] - st[k] for k in s}})
    prev, st = t, s
json.dump({"gaps": gaps}, sys.stdout)
"""
"""The host probe (`python -c PROBE SECONDS BOUND_MS PRIORITY`): a process beside the loops that only sleeps."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--minutes", type=positive_minutes, default=10.0, help="how long (default 10)")
    p.add_argument("--out", metavar="DIR", help="where the stacks, logs and summaries go (default: a new temporary "
                                                 "folder, kept and named in the report)")
    p.add_argument("--disk-mbps", type=float, default=2.0, help="the slow disk's write rate, MB/s (default 2)")
    p.add_argument("--stderr-line-ms", type=float, default=50.0,
                   help="the bedside's stderr reader pauses this long after each line (default 50)")
    p.add_argument("--stacks", choices=("all", "loop"), default="all",
                   help="logging.stall_stacks for the bench's processes (default all: every thread's stack names a "
                        "GIL holder, at a small risk of crashing the dumping process; docs/reliability.md)")
    p.add_argument("--no-window", action="store_true", help="without the Qt console window and monitor windows")


# ---------------------------------------------------------------------------------------------- stall files


@dataclass(frozen=True)
class StallFile:
    """One stall as base/stalls.py saved it: the header line, `t_ns`, then every thread's stack."""

    path: str
    role: str
    tick_ms: float | None
    bound_ms: float | None
    step: str
    step_ms: float | None
    t_ns: int | None
    threads: list[tuple[str, bool, list[str]]] = field(default_factory=list)
    """(thread id, is the thread that took the signal, frames innermost first as `function (file:line)`)."""


_HEADER = re.compile(r"^(?P<role>\w+) loop: a tick of (?P<tick>[\d.]+) ms \(bound (?P<bound>[\d.]+) ms\); "
                     r"slowest step (?P<step>\w+) (?P<step_ms>[\d.]+) ms")
_THREAD = re.compile(r"^(?P<cur>Current thread|Thread) (?P<id>0x[0-9a-f]+) \(most recent call first\):$")
_FRAME = re.compile(r'^\s+File "(?P<file>[^"]+)", line (?P<line>\d+) in (?P<fn>\S+)')


def parse_stall_file(path: str, text: str) -> StallFile:
    """A stall file's figures and stacks (only the last dump's threads if several were appended)."""
    lines = text.splitlines()
    m = _HEADER.match(lines[0]) if lines else None
    t_ns = next((int(x[5:]) for x in lines[1:3] if x.startswith("t_ns=")), None)
    threads: list[tuple[str, bool, list[str]]] = []
    for line in lines:
        t = _THREAD.match(line)
        if t:
            if any(th[0] == t["id"] for th in threads):  # a second dump begins: keep the first (the stall's)
                break
            threads.append((t["id"], t["cur"] == "Current thread", []))
            continue
        f = _FRAME.match(line)
        if f and threads:
            threads[-1][2].append(f"{f['fn']} ({Path(f['file']).name}:{f['line']})")
    role = m["role"] if m else Path(path).name.split("-", 1)[0]
    return StallFile(path, role, float(m["tick"]) if m else None, float(m["bound"]) if m else None,
                     m["step"] if m else "", float(m["step_ms"]) if m else None, t_ns, threads)


def waiting(frame: str) -> bool:
    """A frame (`function (file:line)`) in which a thread waits without the GIL."""
    return frame.split(" ", 1)[0] in WAITING_CALLS


def classify_stall(s: StallFile) -> dict[str, Any]:
    """What a stall says about its cause.

    `kind`: `step` when a step of the loop itself took the time (its frame names the blocked call); `wake` when
    the loop was waiting for its next tick and came back late: it was not running (not scheduled, or waiting for
    the GIL; `running` names the threads that were in Python meanwhile: the candidates for the GIL's holder);
    `no stacks` when the dump holds no loop thread. `explained` is true when the stacks name a call."""
    loop = next((th for th in s.threads if th[1]), None)
    running = [f"{frames[0]} <- {frames[1]}" if len(frames) > 1 else frames[0]
               for tid, cur, frames in s.threads if not cur and frames and not waiting(frames[0])]
    if loop is None or not loop[2]:
        return {"kind": "no stacks", "blocked_call": None, "running": running, "explained": False}
    frames = loop[2]
    kind = "wake" if s.step == "wake" else "step"
    return {"kind": kind, "blocked_call": frames[0], "loop_stack": frames[:4], "running": running,
            "explained": True}


def stall_entry(s: StallFile) -> dict[str, Any]:
    return {"role": s.role, "file": s.path, "pid": _pid_of(s.path), "t_ns": s.t_ns, "tick_ms": s.tick_ms,
            "step": s.step, "step_ms": s.step_ms, **classify_stall(s)}


def _pid_of(path: str) -> int | None:
    """The process a stall file came from: `<role>-<date>-<time>-<pid>-<n>.txt` (base/stalls.py)."""
    parts = Path(path).stem.split("-")
    return int(parts[-2]) if len(parts) >= 3 and parts[-2].isdigit() else None


def _span(t_end_ns: int, ms: float) -> tuple[int, int]:
    return t_end_ns - int(ms * 1e6) - SHARED_SLACK_NS, t_end_ns + SHARED_SLACK_NS


def mark_shared(entries: list[dict[str, Any]], probe_gaps: list[dict[str, Any]]) -> None:
    """Mark each stall that overlapped a stall of another process, or a gap of the host probe: `shared` (what
    else stood still then) and `machine` True. Separate processes share no lock and no GIL: what stops them all
    at once is the host (its scheduler, the hypervisor, the kernel), not either loop."""
    spans = [(e, _span(e["t_ns"], e["tick_ms"])) for e in entries if e.get("t_ns") is not None and e.get("tick_ms")]
    gaps = [(g, _span(g["t_ns"], g["gap_ms"])) for g in probe_gaps]
    for e, (a0, a1) in spans:
        shared = [f"{o['role']}:{o['pid']}" for o, (b0, b1) in spans
                  if o is not e and o.get("pid") != e.get("pid") and a0 < b1 and b0 < a1]
        shared += [f"probe {g['gap_ms']} ms (steal {sum(g['steal_jiffies'].values())} jiffies)"
                   for g, (b0, b1) in gaps if a0 < b1 and b0 < a1]
        e["shared"] = shared
        e["machine"] = bool(shared)


def stall_causes(entries: list[dict[str, Any]]) -> dict[str, int]:
    """How often each thread's frame was running during a stall, across the stalls (the GIL suspects)."""
    out: dict[str, int] = {}
    for e in entries:
        for r in set(e.get("running", [])):
            out[r] = out.get(r, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def unexplained_freezes(freezes: list[dict[str, Any]], stalls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The bedside freezes no one asked for, each with the bedside stall that ended just before it (if any)."""
    out = []
    bed = [s for s in stalls if s["role"] == "bedside" and s.get("t_ns") is not None]
    for f in freezes:
        if f.get("reason") in OK_FREEZES:
            continue
        t = int(f.get("t_ns", 0))
        before = [s for s in bed if 0 <= t - s["t_ns"] <= FREEZE_AFTER_STALL_NS]
        out.append({"reason": f.get("reason"), "t_ns": t, "text": str(f.get("text", ""))[:300],
                    "after_stall": before[-1]["file"] if before else None,
                    "after_machine_stall": bool(before and before[-1].get("machine"))})
    return out


def tick_ms(loop: dict[str, Any] | None) -> dict[str, float | None]:
    """{p999, max, p50, n} in ms from a role summary's `loop` (µs); None figures when the loop did not run."""
    t = (loop or {}).get("tick_us") or {}

    def ms(k: str) -> float | None:
        v = t.get(k)
        return None if v is None else round(v / 1000, 3)

    return {"p50": ms("p50"), "p999": ms("p999"), "max": ms("max"), "n": t.get("n")}


def judge(result: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, each met or missed (a figure that is missing is missed)."""

    def under(fig: dict[str, Any] | None) -> str:
        v = (fig or {}).get("max")
        return "met" if v is not None and v <= TICK_TARGET_MS else "missed"

    out = {"bedside_tick_max_le_10ms": under(result.get("bedside_tick_ms")),
           "engine_tick_max_le_10ms": under(result.get("engine_tick_ms")),
           "unexplained_freezes_0": "met" if result.get("unexplained_freezes") == 0 else "missed"}
    out["all"] = "met" if all(v == "met" for v in out.values()) else "missed"
    return out


# ---------------------------------------------------------------------------------------------- stress


class SlowDisk:
    """A file system whose writes the kernel throttles (see the module's docstring); `path` is where to write,
    or None with `why`. `close()` unmounts and removes it."""

    def __init__(self, folder: Path, mbps: float, size_mb: int = 4096) -> None:
        self.folder, self.mbps = folder, mbps
        self.path: Path | None = None
        self.why = ""
        self.loop_dev = ""
        self.majmin = ""
        self._img = folder / "slowdisk.img"
        self._mnt = folder / "slowdisk"
        throttle = Path("/sys/fs/cgroup/blkio/blkio.throttle.write_bps_device")
        if os.geteuid() != 0:
            self.why = "not root: no loop device"
            return
        if not throttle.exists() or not shutil.which("losetup") or not shutil.which("mkfs.ext4"):
            self.why = "no cgroup-v1 blkio throttle, losetup or mkfs.ext4 here"
            return
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with open(self._img, "wb") as f:
                f.truncate(size_mb * 1024 * 1024)  # sparse: only what is written takes space
            self.loop_dev = _run(["losetup", "-f", "--show", str(self._img)])
            _run(["mkfs.ext4", "-q", "-F", str(self._img)])
            self._mnt.mkdir(exist_ok=True)
            _run(["mount", self.loop_dev, str(self._mnt)])
            self.majmin = _run(["lsblk", "-dno", "MAJ:MIN", self.loop_dev]).strip()
            throttle.write_text(f"{self.majmin} {int(mbps * 1e6)}\n")
            bdi = Path("/sys/class/bdi") / self.majmin
            with contextlib.suppress(OSError):
                (bdi / "strict_limit").write_text("1\n")
            (bdi / "max_ratio").write_text("1\n")
            self.path = self._mnt
        except (OSError, subprocess.CalledProcessError) as exc:
            self.why = f"could not make the slow disk: {exc}"
            self.close()

    def close(self) -> None:
        if self.majmin:
            with contextlib.suppress(OSError):
                Path("/sys/fs/cgroup/blkio/blkio.throttle.write_bps_device").write_text(f"{self.majmin} 0\n")
        if self._mnt.is_mount() and subprocess.run(["umount", str(self._mnt)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(self._mnt)], capture_output=True)  # busy: detach it now
        for _ in range(20):  # a lazily unmounted file system lets go of its device a moment later
            if not self.loop_dev or not subprocess.run(["losetup", "-d", self.loop_dev],
                                                       capture_output=True).returncode:
                break
            time.sleep(0.5)
        self.loop_dev = ""
        with contextlib.suppress(OSError):
            self._img.unlink()
        self.path = None


def _run(cmd: list[str]) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


class WrongKeys:
    """Stations the bedside must refuse: unknown client keys (refused by its ZAP handler) and a client pinned to
    the wrong bedside key (its CURVE handshake fails), a few every WRONG_KEY_EVERY_S and a storm every
    STORM_EVERY_S. Each connection lives ~0.3 s (long enough for its handshake), then closes."""

    def __init__(self, host: str, control_port: int, telemetry_port: int, server_public: bytes) -> None:
        self.endpoints = (tcp(host, control_port), tcp(host, telemetry_port))
        self.server_public = server_public
        self.unknown = self.wrong_server = self.storms = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wrong-keys", daemon=True)
        self._thread.start()

    def _open(self, ctx: zmq.Context, server_public: bytes, n: int) -> list[zmq.Socket]:
        socks = []
        for i in range(n):
            pub, sec = zmq.curve_keypair()
            s = ctx.socket(zmq.DEALER)
            s.linger = 0
            s.curve_publickey, s.curve_secretkey, s.curve_serverkey = pub, sec, server_public
            s.connect(self.endpoints[i % 2])
            with contextlib.suppress(zmq.Again):
                s.send(codec.encode(Ping(0, i, time.monotonic_ns())), zmq.NOBLOCK)
            socks.append(s)
        return socks

    def _run(self) -> None:
        ctx = zmq.Context.instance()
        wrong_server, _ = zmq.curve_keypair()
        next_storm = time.monotonic() + STORM_EVERY_S / 2
        while not self._stop.is_set():
            n = WRONG_KEYS_EACH
            if time.monotonic() >= next_storm:
                n, next_storm = STORM_SIZE, time.monotonic() + STORM_EVERY_S
                self.storms += 1
            socks = self._open(ctx, self.server_public, n)
            self.unknown += n
            socks += self._open(ctx, wrong_server, 1)
            self.wrong_server += 1
            self._stop.wait(0.3)
            for s in socks:
                s.close(0)
            self._stop.wait(max(0.0, WRONG_KEY_EVERY_S - 0.3))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


class MonitorWindows:
    """`teleop monitor` windows (offscreen), one after another, each living MONITOR_LIFE_S."""

    def __init__(self, sets: list[str], out: Path, env: dict[str, str]) -> None:
        self.sets, self.out, self.env = sets, out, env
        self.started = 0
        self.failed: list[str] = []
        self.proc: subprocess.Popen | None = None
        self._log = open(out / "monitor-windows.log", "ab")  # noqa: SIM115 - closed in close()

    def poll(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        if self.proc is not None and self.proc.returncode not in (0, None):
            self.failed.append(f"monitor window {self.started} exited {self.proc.returncode}")
        self.started += 1
        self.proc = subprocess.Popen(
            teleop_command("monitor", "--seconds", str(MONITOR_LIFE_S), "--settings-dir",
                           str(self.out / "monitor-settings"), *_sets(self.sets)),
            stdout=self._log, stderr=self._log, env=self.env)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def _sets(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def _count_lines(path: Path, needle: str) -> int:
    try:
        return sum(1 for line in path.read_text(errors="replace").splitlines() if needle in line)
    except OSError:
        return 0


# ---------------------------------------------------------------------------------------------- run


def measure(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    from rehearsal.surgeon import HeadlessWindow

    seconds = args.minutes * 60
    ctrl, telem, video, m_port, s_port, i_port, wm, ws, wi = free_ports(9)
    keys = throwaway_keys(out / "keys")
    keys_dir = keys[0].split("=", 1)[1]
    stall_dir = out / "stalls"
    disk = SlowDisk(out, args.disk_mbps)
    rec_root = disk.path or out
    base = (SOAK_VIDEO + port_overrides(ctrl, telem, video) + keys
            + [f"logging.stall_dir={stall_dir}", f"logging.stall_stacks={args.stacks}", "link.bedside_host=127.0.0.1"]
            + list(args.overrides or []))
    bed_sets = [*base, f"recording.dir={rec_root / 'rec-bedside'}"]
    con_sets = [*base, f"recording.dir={rec_root / 'rec-console'}", f"console.master_port={m_port}",
                f"console.ui_state_port={s_port}", f"console.ui_intent_port={i_port}",
                "console.master_timeout_ms=250", "console.gui_timeout_ms=1500"]  # the bridge is a Python thread here
    win_sets = [*base, f"recording.dir={rec_root / 'rec-window'}", "security.identity=surgeon-2",
                f"console.master_port={wm}", f"console.ui_state_port={ws}", f"console.ui_intent_port={wi}"]
    mon_sets = [*base, "security.identity=monitor"]
    gui_env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(out / "qt-config")}
    events_path = out / "bedside-events.jsonl"
    roles: dict[str, Role] = {}
    window = churn = wrong = monitors = None
    console_window: subprocess.Popen | None = None
    hogs: list[subprocess.Popen] = []
    failures: list[str] = []
    t0 = time.monotonic()
    probe = subprocess.Popen([sys.executable, "-c", PROBE, str(seconds + 60), str(TICK_TARGET_MS), str(PROBE_PRIORITY)],
                             stdout=subprocess.PIPE, text=True)
    try:
        roles["bedside"] = start_role("bedside", ["bedside", "--event-log", str(events_path), "--summary",
                                                  str(out / "bedside.json"), *_sets(bed_sets)], timeout=60,
                                      stderr_line_delay_s=args.stderr_line_ms / 1000)
        roles["console"] = start_role("console", ["console", "--ui", "--summary", str(out / "console.json"),
                                                  *_sets(con_sets)], timeout=60)
        window = HeadlessWindow(load_config(None, con_sets), video=True, auto_engage_s=1.0)
        if not args.no_window:
            with open(out / "console-window.log", "ab") as log:
                console_window = subprocess.Popen(
                    teleop_command("console", "--summary", str(out / "window-engine.json"), *_sets(win_sets)),
                    stdout=log, stderr=log, env=gui_env)
            monitors = MonitorWindows(mon_sets, out, gui_env)
        churn = MonitorChurn(keys_dir, "127.0.0.1", ctrl, telem)
        wrong = WrongKeys("127.0.0.1", ctrl, telem, client_security(keys_dir, "monitor").server_public)
        hogs = _hogs(seconds + HOG_MARGIN_S)
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            for name, r in roles.items():
                if r.proc.poll() is not None:
                    raise RuntimeError(f"{name} exited early ({r.proc.returncode})")
            if monitors is not None:
                monitors.poll()
            if console_window is not None and console_window.poll() is not None:
                failures.append(f"the console window exited early ({console_window.returncode})")
                console_window = None
            time.sleep(min(1.0, max(0.0, t_end - time.monotonic())))
    except Exception:  # the harness's own failure: reported, and the exit status says so
        failures.append(traceback.format_exc()[-1500:])
    finally:
        stress = {
            "hogs": len(hogs),
            "monitor_connects": churn.connects if churn else 0, "monitor_pongs": churn.pongs if churn else 0,
            "monitor_windows": monitors.started if monitors else 0,
            "console_window": console_window is not None,
            "wrong_key_attempts": (wrong.unknown + wrong.wrong_server) if wrong else 0,
            "unknown_key_connections": wrong.unknown if wrong else 0,
            "wrong_bedside_key_connections": wrong.wrong_server if wrong else 0,
            "handshake_storms": wrong.storms if wrong else 0,
            "slow_stderr": {"line_delay_ms": args.stderr_line_ms},
            "slow_disk": ({"mb_per_s": args.disk_mbps, "device": disk.loop_dev, "path": str(disk.path)}
                          if disk.path else {"off": disk.why}),
        }
        engages = len(window.engages) if window is not None else 0
        for closer in (wrong, churn, window):
            if closer is not None:
                closer.close()
        for h in hogs:
            h.kill()
            h.wait()
        if monitors is not None:
            if monitors.failed:
                stress["monitor_window_failures"] = monitors.failed[:5]
            monitors.close()
        if console_window is not None:
            console_window.terminate()
            try:
                console_window.wait(20)
            except subprocess.TimeoutExpired:
                console_window.kill()
                console_window.wait()
        bed_stderr = ""
        for name in ("console", "bedside"):
            if name in roles:
                code = roles[name].stop(timeout=20)
                if code not in (0, None, -15):
                    failures.append(f"{name} exited with {code}")
                failures += [f"{name}: {tb}" for tb in _tracebacks(roles[name])]
        if "bedside" in roles:
            bed_stderr = roles["bedside"].stderr_text()
        recording = _dir_bytes(rec_root)
        disk.close()
        probe.terminate()  # it reports what it saw and ends
        try:
            probe_gaps = json.loads(probe.communicate(timeout=10)[0] or "{}").get("gaps", [])
        except (subprocess.TimeoutExpired, ValueError):
            probe.kill()
            probe_gaps = []
    (out / "bedside-stderr-tail.log").write_text(bed_stderr, encoding="utf-8")
    bed = _json(out / "bedside.json")
    con = _json(out / "console.json")
    win = _json(out / "window-engine.json")
    lines = events_path.read_text().splitlines() if events_path.exists() else []
    records = [json.loads(line) for line in lines if line]
    freezes = [r for r in records if r.get("type") == "freeze"]
    stall_files = sorted(stall_dir.glob("*.txt")) if stall_dir.exists() else []
    stalls = [stall_entry(parse_stall_file(str(p), p.read_text(errors="replace"))) for p in stall_files]
    mark_shared(stalls, probe_gaps)
    unexplained = unexplained_freezes(freezes, stalls)
    counters = bed.get("counters") or {}
    stress["refused_handshakes"] = counters.get("refused_handshakes")
    result: dict[str, Any] = {
        "minutes": args.minutes, "stacks": args.stacks, "out": str(out), "run_s": round(time.monotonic() - t0, 1),
        "bedside_tick_ms": tick_ms(bed.get("loop")),
        "engine_tick_ms": tick_ms(con.get("loop")),
        "window_engine_tick_ms": tick_ms(win.get("loop")) if win else None,
        "over_bound": {"bedside": (bed.get("loop") or {}).get("over_bound"),
                       "engine": (con.get("loop") or {}).get("over_bound"),
                       "window_engine": (win.get("loop") or {}).get("over_bound") if win else None},
        "step_max_ms": {"bedside": _step_ms(bed.get("loop")), "engine": _step_ms(con.get("loop"))},
        "stalls": stalls,
        "stalls_by_kind": _by(stalls, "kind"),
        "running_during_stalls": stall_causes([e for e in stalls if not e.get("machine")]),
        "probe_gaps": probe_gaps,
        "steal_jiffies_in_probe_gaps": sum(sum(g["steal_jiffies"].values()) for g in probe_gaps),
        "unexplained_freezes": len(unexplained),
        "freezes": unexplained,
        "requested_freezes": len(freezes) - len(unexplained),
        "surgeon_engages": engages,
        "commands_sent": con.get("commands_sent"), "commands_applied": con.get("commands_applied"),
        "lost": con.get("lost"),
        "stress": stress,
        "log_lines_refused": _count_lines(out / "bedside-stderr-tail.log", "refused"),
        "recording_bytes": recording,
        "failures": failures,
    }
    result["targets"] = judge(result)
    return result


def _by(entries: list[dict[str, Any]], key: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in entries:
        k = f"{e['role']}:{e[key]}" + (" (machine-wide)" if e.get("machine") else "")
        out[k] = out.get(k, 0) + 1
    return out


def _step_ms(loop: dict[str, Any] | None) -> dict[str, float]:
    return {k: round(v / 1000, 2) for k, v in ((loop or {}).get("step_max_us") or {}).items()}


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _dir_bytes(d: Path) -> int:
    try:
        return sum(p.stat().st_size for p in d.rglob("*") if p.is_file() and p.suffix == ".mcap")
    except OSError:
        return 0


def run(args: argparse.Namespace) -> int:
    out = Path(args.out).expanduser() if args.out else Path(tempfile.mkdtemp(prefix="teleop-stall-"))
    out.mkdir(parents=True, exist_ok=True)
    load0 = [round(x, 2) for x in os.getloadavg()]
    result = {"machine": machine(), **measure(args, out)}
    result["loadavg_start"], result["loadavg_end"] = load0, [round(x, 2) for x in os.getloadavg()]
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        r = result
        b, e = r["bedside_tick_ms"], r["engine_tick_ms"]
        print(f"stall bench {r['minutes']} min, output in {r['out']}; load {r['loadavg_start']} -> {r['loadavg_end']}")
        print(f"  bedside tick p99.9 {b['p999']} ms, max {b['max']} ms; engine tick p99.9 {e['p999']} ms, max "
              f"{e['max']} ms; over bound {r['over_bound']}")
        for s in r["stalls"]:
            print(f"  stall {s['role']} {s['tick_ms']} ms ({s['kind']}{', machine-wide' if s['machine'] else ''}): "
                  f"{s['blocked_call']}; running: {'; '.join(s['running']) or '-'}  [{s['file']}]")
        print(f"  unexplained freezes {r['unexplained_freezes']}; stress {r['stress']}")
        print(f"  targets: {r['targets']}")
        for f in r["failures"]:
            print(f, file=sys.stderr)
    return 1 if result["failures"] else 0
