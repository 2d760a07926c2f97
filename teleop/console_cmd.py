"""`teleop console`: the surgeon console: the window (default), or the engine alone (--headless, --ui)."""

from __future__ import annotations

import argparse

from base.runtime import hold_cpu_wake_latency, realtime_scheduling, write_json
from console.runner import ConsoleRunner
from recording.recorder import start_recorder
from teleop.args import positive_seconds, require_display
from teleop.role_run import run_role
from transport import security
from transport.zmqlink import start_io_thread


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--headless", action="store_true", help="no window: the engine alone")
    p.add_argument("--ui", action="store_true",
                   help="serve a console window on loopback (master poses, intents, state; see console/uilink.py)")
    p.add_argument("--seconds", type=positive_seconds, default=None, help="stop after this long")
    p.add_argument("--summary", metavar="FILE", help="write the run's figures as JSON on exit ('-' = stdout)")


def start_voice_child(args: argparse.Namespace):
    """`teleop voice --side console` with this console's configuration. Its stderr is this process's own (no
    reader thread beside the 1 kHz loop), and it is not waited for: voice is not needed to operate, and a voice
    child that cannot start says why in one line and exits while the console runs on."""
    import subprocess

    from base.procs import teleop_command

    sets = [a for o in args.overrides or [] for a in ("--set", o)]
    conf = ["--config", args.config] if getattr(args, "config", None) else []
    insecure = ["--insecure"] if args.cfg.security.insecure else []
    return subprocess.Popen(teleop_command("voice", "--side", "console", *conf, *sets, *insecure),
                            stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)


def stop_voice_child(proc) -> None:
    import subprocess

    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run(args: argparse.Namespace) -> int:
    if not args.headless and not args.ui:
        require_display("console", instead="teleop console --headless")
        from console.ui.app import run_window

        return run_window(args)
    security.for_client(args.cfg)  # a key error is one line before the recorder starts
    recorder = start_recorder(args.cfg, "console")
    # Real-time for this process, not in ConsoleRunner.run (in-process test consoles run that in a pytest
    # thread), and before the runner's clock starts (finding zmq's I/O thread may take a few ms). Start that
    # thread first so it is made real-time too.
    # The headless console's voice (voice.enabled): `teleop voice --side console` as a child process of its own,
    # never a thread of this 1 kHz loop. (With a window, the window runs it: console/ui/voice_panel.py.)
    voice = start_voice_child(args) if args.headless and args.cfg.voice.enabled else None
    start_io_thread()
    realtime_scheduling(args.cfg.console.realtime_priority, "console")
    hold_cpu_wake_latency(args.cfg.console.cpu_wake_latency_us, "console")
    try:
        runner = run_role(lambda: ConsoleRunner(args.cfg, ui=args.ui, recorder=recorder), recorder, args.seconds)
    finally:
        if voice is not None:
            stop_voice_child(voice)
    if args.summary:
        write_json(None if args.summary == "-" else args.summary, runner.summary())
    return 0
