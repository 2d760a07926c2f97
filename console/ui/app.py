"""`teleop console` with a window: the engine runs as a child process, the window in this one.

Order matters: the engine (`teleop console --ui`, console/runner.py) is started first and at normal
priority; then this process lowers its own priority (`console.window_nice`, before it creates any thread:
Linux applies nice per thread and new threads inherit it; `lower_priority` gives the measurements) so the
control processes win the CPU; then the window opens. Closing the window stops the engine (SIGTERM: it releases its
session and writes its summary). SIGTERM to this process closes the window the same way.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

from base.config import Config, load_config
from base.procs import Role, start_role


def passthrough(args: argparse.Namespace, overrides: Sequence[str]) -> list[str]:
    """The common options of this invocation (config file, overrides, log level, insecure) as argv."""
    out: list[str] = []
    if getattr(args, "config", None):
        out += ["--config", args.config]
    for o in overrides:
        out += ["--set", o]
    if getattr(args, "log_level", None):
        out += ["--log-level", args.log_level]
    if getattr(args, "insecure", False):
        out.append("--insecure")
    return out


def window_config(args: argparse.Namespace, before: Sequence[str]) -> tuple[Config, list[str]]:
    """The validated config with `before` (saved connection, harness ports) under the command line's --set."""
    overrides = [*before, *(getattr(args, "overrides", None) or [])]
    extra = []
    if getattr(args, "log_level", None):
        extra.append(f"logging.level={args.log_level}")
    if getattr(args, "insecure", False):
        extra.append("security.insecure=true")
    return load_config(getattr(args, "config", None), overrides + extra), overrides


def tied_to_us() -> list[str] | None:
    """A start_role prefix that makes the child get SIGTERM when this process dies, however it dies (Linux
    PR_SET_PDEATHSIG): a crashed window must not leave its engine, or a screenshot its bedside, running."""
    if not sys.platform.startswith("linux"):
        return None
    return [sys.executable, "-m", "console.ui.app", "--die-with-parent", str(os.getpid())]


def _exec_tied(argv: list[str]) -> None:
    """`python -m console.ui.app --die-with-parent PID CMD...`: exec CMD with PR_SET_PDEATHSIG = SIGTERM."""
    import ctypes

    ppid, cmd = int(argv[1]), argv[2:]
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != ppid:  # the parent died before the prctl
        sys.exit(1)
    os.execv(cmd[0], cmd)


def start_engine(args: argparse.Namespace, overrides: Sequence[str], summary: str | None = None) -> Role:
    argv = ["console", "--ui", *passthrough(args, overrides)]
    if summary:
        argv += ["--summary", summary]
    role = start_role("console-engine", argv, prefix=tied_to_us())
    from recording.tap import set_window_recorder

    set_window_recorder(role.ready)  # the window's video receiver records into the engine's recorder
    return role


def lower_priority(nice: int, idle: bool = False) -> list[str]:
    """Yield the CPU to the control processes; call before this process starts any thread of its own (Linux
    applies both settings per thread; threads inherit them). OpenCV is kept to one thread: its pool would
    spread each resize over every core, the control processes' included.

    Measured on the 2-core benchmark machine (docs/benchmarks.md, "Control stream with the window and
    monitors"): the window at nice 10 leaves the engine's send gaps p99 at ≈3.4 ms, SCHED_IDLE at ≈2.8 ms;
    but with three monitors on the same machine a SCHED_IDLE window shares the leftover CPU equally with
    them, stalls past its 250 ms heartbeat and the arms hold twice in 10 s, while at nice 10 it outranks
    them (SCHED_IDLE, `idle=True`) and never does. So: monitors SCHED_IDLE. Those figures predate the real-time
    engine loop: with it SCHED_FIFO, the window's nice no longer protects the loop, and at nice 10 the window lost
    to the bedside's renderer and encoder on a shared 2-core machine (60-s demos: 3 VIDEO_STALE holds at nice 10,
    0 and 5 at nice 0; the engine's send gap p99.9 1210.5 vs 1468.5 µs, both under 2 ms). So the window runs
    at `console.window_nice`, 0 by default (docs/benchmarks.md, "The window demo")."""
    done = []
    try:
        os.nice(nice)
        done.append(f"nice +{nice}")
    except OSError:
        pass
    if idle and hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            done.append("SCHED_IDLE")
        except OSError:
            pass
    import cv2

    cv2.setNumThreads(1)
    return done


def make_app(name: str):
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([name])
    app.setOrganizationName("teleop")
    app.setApplicationName(name)
    return app


def quit_on_sigterm(app) -> None:
    """SIGTERM/SIGINT close the window cleanly. The handler only notes the signal; the windows close from Qt's
    event loop (a timer's slot), never inside whatever code the signal interrupted: a Python handler runs
    between any two bytecodes, and closing from there shut the sockets under a running slot (the monitor's
    `_drain` then read a closed socket: a traceback; libzmq aborted with `_input_stopped`). The timer also gives
    the handler its chance to run while Qt's loop sleeps."""
    from PySide6.QtCore import QTimer

    asked: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: asked.append(signum))
    timer = QTimer(app)
    timer.setInterval(100)
    timer.timeout.connect(lambda: app.closeAllWindows() if asked else None)
    timer.start()
    app._sig_timer = timer  # keep it alive


def report_engine(engine: Role) -> None:
    rc = engine.stop()
    if rc not in (0, -signal.SIGTERM):
        print(f"teleop console: the control process exited {rc}:\n{engine.stderr_text()[-3000:]}", file=sys.stderr)


def run_window(args: argparse.Namespace, use_saved_connection: bool = True) -> int:
    """`teleop console`: engine child process + window; returns when the window is closed. The demo passes
    `use_saved_connection=False`: its bedside is the one it just started."""
    from console.ui.settings import Prefs

    prefs = Prefs("console")
    cfg, overrides = window_config(args, prefs.connection_overrides() if use_saved_connection else [])
    try:
        engine = start_engine(args, overrides, getattr(args, "summary", None))
    except RuntimeError as exc:  # it said why on its stderr (a port in use, a key problem…)
        print(f"teleop console: the control process did not start: {exc}", file=sys.stderr)
        return 1
    lower_priority(cfg.console.window_nice)
    app = make_app("teleop console")
    from PySide6.QtCore import QTimer

    from console.ui.window import ConsoleWindow

    state = {"engine": engine}

    def reconnect(conn: list[str]) -> Config:
        new_cfg, new_over = window_config(args, conn)
        state["engine"].stop()
        state["engine"] = start_engine(args, new_over, getattr(args, "summary", None))
        win.engine = state["engine"]
        return new_cfg

    win = ConsoleWindow(cfg, prefs, engine=engine, reconnect=reconnect)
    try:
        quit_on_sigterm(app)
        win.show()
        win.pane.setFocus()
        if getattr(args, "seconds", None):
            QTimer.singleShot(int(args.seconds * 1000), win.close)
        app.exec()
    finally:
        win.shutdown()
        report_engine(state["engine"])
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[1] == "--die-with-parent":
        _exec_tied(sys.argv[1:])
    sys.exit("usage: python -m console.ui.app --die-with-parent PID CMD...")
