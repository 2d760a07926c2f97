"""Start a simulated bedside with stereo video and the console window offscreen, drive it like a person
(presence, align, engage, both hands moving), wait until both instruments follow with a live picture, and
save the window as a PNG. This is how docs/img/console.png is made.

With --attach it uses the bedside named by the --set link.* options instead of starting one, and with
--seconds it keeps driving that long before the grab: `teleop bench link --with-gui` uses that to measure
the control stream while the window paints and is being driven. --summary gets the engine's run summary,
--stats the window's own figures (frames painted, fps, picture age).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from base.procs import free_ports, port_overrides, start_role
from base.runtime import announce_ready, write_json
from console.ui.app import (
    lower_priority,
    make_app,
    passthrough,
    quit_on_sigterm,
    report_engine,
    start_engine,
    tied_to_us,
    window_config,
)
from transport.security import throwaway_keys
from video.compositor import DisplayMode


def console_ports() -> list[str]:
    m, s, i = free_ports(3)
    return [f"console.master_port={m}", f"console.ui_state_port={s}", f"console.ui_intent_port={i}"]


def window_ready(win) -> bool:
    """Both hands' instruments following, a live picture on screen, no alarm."""
    state = win.state or {}
    return (all(win.arm_state(n) == "FOLLOWING" for n in win.hand_arms()) and not win.source.stale
            and bool((state.get("video") or {}).get("ok")) and state.get("link") == "UP" and not win.banner.alarms)


def take_screenshot(args: argparse.Namespace) -> int:
    if not getattr(args, "on_screen", False):  # `teleop demo --window` on a machine with a display shows it
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    w, h = (int(x) for x in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory(prefix="teleop-shot-") as tmp:
        before: list[str] = []
        if not args.attach:
            keys = [] if args.cfg.security.insecure else throwaway_keys(Path(tmp) / "keys")
            before += port_overrides(*free_ports(3)) + keys
        cfg, overrides = window_config(args, before + console_ports())
        bedside = None if args.attach else start_role("bedside", ["bedside", *passthrough(args, overrides)],
                                                      prefix=tied_to_us())
        engine = None
        try:
            engine = start_engine(args, overrides, args.summary)
            lower_priority(cfg.console.window_nice)
            return _shoot(args, cfg, engine, Path(tmp), (w, h))
        finally:
            if engine is not None:
                report_engine(engine)
            if bedside is not None:
                bedside.stop()


def _shoot(args: argparse.Namespace, cfg, engine, tmp: Path, size: tuple[int, int]) -> int:
    from PySide6.QtCore import QTimer

    from console.ui.drive import AutoDriver
    from console.ui.settings import Prefs
    from console.ui.window import ConsoleWindow

    app = make_app("teleop screenshot")
    prefs = Prefs("console", tmp / "settings")
    prefs.set_display_mode(DisplayMode(args.mode))
    win = ConsoleWindow(cfg, prefs, engine=engine, sound=False)
    win.resize(*size)
    win.show()
    driver = AutoDriver(win)
    quit_on_sigterm(app)
    t0 = time.monotonic()
    result: dict = {"ok": False}
    marks: dict[str, float | int] = {}

    swap = getattr(args, "swap", False)

    def ready() -> bool:
        """Following with a live picture; with --swap, after the swap hand took the idle instrument."""
        return window_ready(win) and (not swap or ("swapped" in marks and win.hand_arms() != ("PSM1", "PSM2")))

    def poll() -> None:
        now = time.monotonic()
        if swap and "swapped" not in marks and window_ready(win):
            marks["swapped"] = now
            win.press("s")  # the arm-swap pedal, as a person presses it
            return
        if "follow" not in marks and ready():
            marks["follow"] = now
            marks["painted0"] = win.source.painted_frames
        if "follow" in marks and now - marks["follow"] >= args.seconds and ready():
            result["ok"] = True
            finish()
        elif now - t0 > args.timeout + args.seconds:
            finish()

    def finish() -> None:
        timer.stop()
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        win.grab().save(str(out))
        now = time.monotonic()
        follow = marks.get("follow")
        span = None if follow is None else now - follow
        painted = win.source.painted_frames - int(marks.get("painted0", 0))
        result.update({
            "seconds_to_follow": None if follow is None else round(follow - t0, 2),
            "driven_s": None if span is None else round(span, 2),
            "painted_frames": painted,
            "painted_fps": round(painted / span, 1) if span else None,
            "receiver": win.source.receiver.stats(),
            "picture": None if win.source.view is None else win.source.view.picture(),
            "picture_changes": win.source.picture_log,
            "engages": driver.engages,
            "hands": dict(zip(("right", "left"), win.hand_arms(), strict=True)),
            "alarms": [a.title for a in win.banner.alarms],
            "output": str(out),
        })
        driver.stop()
        win.close()
        app.quit()

    timer = QTimer()
    timer.setInterval(50)
    timer.timeout.connect(poll)
    timer.start()
    announce_ready(window="offscreen", output=args.output)
    app.exec()
    win.shutdown()
    if args.stats:
        write_json(args.stats, result)
    if not result["ok"]:
        print(f"teleop screenshot: the window was not following with a live picture within {args.timeout} s "
              f"(alarms: {result.get('alarms')}); saved what it showed to {args.output}", file=sys.stderr)
        print(json.dumps(result, default=str), file=sys.stderr)
        return 1
    print(f"teleop screenshot: saved {args.output}")
    return 0
