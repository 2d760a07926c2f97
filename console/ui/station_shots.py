"""`teleop screenshot --station DIR`: the bedside station in each main state, offscreen, as the team sees it.

Starts a simulated bedside with stereo video and a headless remote console (key `surgeon`), opens the
station (key `station`) and walks the story the team's procedure covers (docs/operations.md): the remote
surgeon in control; the remote console killed (link lost, arms held); the bedside console (key
`surgeon-2`) taking over; the station's e-stop held and latched, with the reset dialog. Each state is
saved as DIR/station-<state>.png once the station shows it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from base.procs import free_ports, port_overrides, start_role
from console.ui.app import make_app, passthrough, tied_to_us, window_config
from transport.security import throwaway_keys

SHOT_VIDEO = ["video.width=640", "video.height=360", "video.fps=30"]
STATES = ("in-control", "link-lost", "taken-over", "estop", "estop-reset")


def take_station_screenshots(args: argparse.Namespace) -> int:
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    out_dir = Path(args.station)
    out_dir.mkdir(parents=True, exist_ok=True)
    w, h = (int(x) for x in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory(prefix="teleop-station-shot-") as tmp:
        before = port_overrides(*free_ports(3)) + throwaway_keys(Path(tmp) / "keys") + SHOT_VIDEO + \
            [f"recording.dir={tmp}/rec", "console.engage_at_s=0.5", "console.alarm_output=null"]
        _, overrides = window_config(args, before)
        roles = {"bedside": start_role("bedside", ["bedside", *passthrough(args, overrides)], prefix=tied_to_us(),
                                       timeout=args.timeout)}
        try:
            roles["remote"] = start_role("console", ["console", "--headless", *passthrough(args, overrides)],
                                         prefix=tied_to_us(), timeout=args.timeout)
            return _shoot(args, overrides, roles, out_dir, (w, h), Path(tmp))
        finally:
            for r in reversed(list(roles.values())):
                r.stop()


def _shoot(args, overrides: list[str], roles: dict, out_dir: Path, size: tuple[int, int], tmp: Path) -> int:
    from PySide6.QtCore import QTimer

    from base.config import load_config
    from console.ui.settings import Prefs
    from console.ui.station import build_window

    app = make_app("teleop screenshot --station")
    cfg = load_config(None, [*overrides, "security.identity=station"])
    win = build_window(cfg, Prefs("station", tmp / "settings"), "theatre 3", sound=False)
    win.resize(*size)
    win.show()
    t0 = time.monotonic()
    step = {"i": 0, "since": time.monotonic()}
    saved: list[str] = []
    dialog = {}

    clean = {"since": None}

    def live() -> bool:
        """A live picture and no alarm for a second (a loaded machine stalls the video now and then): the state
        as the team sees it on a healthy system; after 40 s in a step, whatever the station shows."""
        src = win.source
        ok = src is not None and not src.stale and not win.banner.alarms
        if not ok:
            clean["since"] = None
        elif clean["since"] is None:
            clean["since"] = time.monotonic()
        return (ok and time.monotonic() - clean["since"] >= 1.0) or time.monotonic() - step["since"] > 40.0

    def shot(name: str) -> None:
        path = out_dir / f"station-{name}.png"
        win.grab().save(str(path))
        saved.append(str(path))
        print(f"saved {path}", flush=True)

    def title() -> str:
        return win.view.guidance.title if win.view is not None else ""

    def advance() -> None:
        step["i"] += 1
        step["since"] = time.monotonic()

    def poll() -> None:
        i = step["i"]
        waited = time.monotonic() - step["since"]
        if time.monotonic() - t0 > args.timeout * 4:
            print(f"gave up in step {STATES[min(i, len(STATES) - 1)]}: station shows {title()!r}", flush=True)
            finish()
        elif i == 0 and title() == "SURGEON IN CONTROL" and live() and waited > 2.0:
            shot("in-control")
            roles["remote"].proc.kill()  # the remote site goes dark
            advance()
        elif i == 1 and title().startswith("LINK TO THE SURGEON LOST") and waited > 1.0:
            shot("link-lost")
            roles["local"] = start_role("console", ["console", "--headless", *passthrough(
                args, [*overrides, "security.identity=surgeon-2"])], prefix=tied_to_us(), timeout=args.timeout)
            advance()
        elif i == 2 and waited > 30.0 and not title().startswith("TAKEN OVER"):
            # a loaded machine stalled the bedside console into a hold before its grant showed: start it again
            roles.pop("local").stop()
            roles["local"] = start_role("console", ["console", "--headless", *passthrough(
                args, [*overrides, "security.identity=surgeon-2"])], prefix=tied_to_us(), timeout=args.timeout)
            step["since"] = time.monotonic()
        elif i == 2 and title().startswith("TAKEN OVER") and live() and waited > 2.0:
            shot("taken-over")
            win.send_estop(time.monotonic_ns())  # as the held button does (the hold itself: tests)
            advance()
        elif i == 3 and title().startswith("E-STOP") and waited > 1.0:
            shot("estop")
            dlg = dialog["d"] = win.reset_dialog()
            dlg.reason.setText("instrument clear, team ready")
            dlg.show()
            advance()
        elif i == 4 and waited > 0.5:
            dlg = dialog["d"]
            path = out_dir / "station-estop-reset.png"
            # the dialog over the window, as the nurse sees it
            from PySide6.QtGui import QPainter, QPixmap

            base: QPixmap = win.grab()
            over = dlg.grab()
            p = QPainter(base)
            p.drawPixmap((base.width() - over.width()) // 2, (base.height() - over.height()) // 3, over)
            p.end()
            base.save(str(path))
            saved.append(str(path))
            print(f"saved {path}", flush=True)
            dlg.close()
            finish()

    def finish() -> None:
        timer.stop()
        win.close()
        app.quit()

    timer = QTimer()
    timer.setInterval(100)
    timer.timeout.connect(poll)
    timer.start()
    app.exec()
    win.shutdown()
    return 0 if len(saved) == len(STATES) else 1
