"""Motion-to-photon: a console command's send time -> the moment the first frame showing it is painted.

Runs a real `teleop bedside` (its video child renders the endoscope view from the arms' state, video/rendered.py),
with --scenario a `teleop linkemu` in between, and in this process the console window exactly as `teleop demo
--window` opens it (offscreen Qt, its engine a `teleop console --ui` child, the window at `console.window_nice`),
driven by a scripted operator: presence, align, engage (console/ui/drive.py), then the right hand's instrument moved
in steps of --step-mm (screen x, alternating, every --dwell-s) by mouse drags through the window's own master.

Two methods (video/m2p.py):
* metadata: every frame says which command it shows (the `SceneStamp` in the video header); the window logs each
  new picture it paints with its paint time and stamp (console/ui/video.py `paint_log`); the engine's recording
  gives every command's send time. m2p of every command sent while the arm followed, its breakdown (network out, bedside
  apply, wait for the next render, render, encode, network back, decode, paint), and the RTT of the same run
  (command->ack, the engine's) so `m2p - rtt` is the overhead.
* optical: the stepped instrument is found in the decoded pixels of each painted frame (a band of the left eye
  chosen from two rest pictures); per step, the first frame whose tip passed half the step against the first
  whose stamp reaches the command that passed half the step. They must agree within one frame period.

Clocks: bedside, video child, linkemu and console run on this host, so every time is the one CLOCK_MONOTONIC;
the link emulator delays the traffic but shares the clock. "Painted" is the end of the window's paint into its
backing store (offscreen here); a physical display adds its compositor and scan-out (up to a refresh, 16.7 ms at
60 Hz, plus the panel), not measured.

Targets (issue #13): lan m2p p50 <= 35 ms and p95 <= 50 ms at 720p60 stereo (or the best mode the machine
sustains, stated); long-distance scenarios m2p p50 - rtt p50 <= 35 ms; methods agree within one frame period.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from base.procs import free_ports, port_overrides, start_role
from base.stats import percentiles
from teleop.args import positive_seconds
from teleop.bench.emulated import EmulatedLink
from teleop.bench.link import machine
from transport.security import throwaway_keys
from video.m2p import Commands, PaintLog, Step, crop, find_band, metadata_m2p, optical_steps, tip_x

SETTLE_S = 1.5
TAIL_S = 1.0
STEP_SPEED_MM_S = 100.0
"""Tool-side speed of a step: below the console's limit (teleop.max_speed_mm_s, 150), which would clamp it."""
CALIB_TRIES = 5
"""Calibration steps tried before the run measures without the optical probe (a hold during one spoils it)."""
TARGETS = {"lan_p50_ms": 35.0, "lan_p95_ms": 50.0, "overhead_p50_ms": 35.0}


def _positive_mm(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of millimetres (e.g. --step-mm 4)") from None
    if not 0 < value <= 20:
        raise argparse.ArgumentTypeError(f"{text} mm: a step must be above 0 and at most 20 mm (e.g. --step-mm 4)")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    from rehearsal.linkemu import SCENARIOS

    p.add_argument("--scenario", choices=sorted(SCENARIOS),
                   help="through `teleop linkemu --scenario S`; default: direct loopback")
    p.add_argument("--seconds", type=positive_seconds, default=30.0, help="measuring time (default 30)")
    p.add_argument("--step-mm", type=_positive_mm, default=4.0, metavar="MM",
                   help="instrument step, tool side (default 4)")
    p.add_argument("--dwell-s", type=positive_seconds, default=0.8, help="rest between steps (default 0.8)")
    p.add_argument("--size", default="1600x1000", help="window size WxH (default %(default)s)")
    p.add_argument("--keep", type=Path, metavar="DIR", help="also write the paint log (JSON lines), the per-step "
                                                             "optical results, the summaries and recordings here")


# --------------------------------------------------------------------------------------------- commands


def read_commands(rec_dir: Path, arm: str, since_ns: int = 0) -> Commands:
    """Every servo_cp the console engine sent (its `/console/command` recording) while `arm` was following (in the
    command's arm mask), with `arm`'s position along the axis it moved most after `since_ns` (the steps)."""
    from mcap.reader import make_reader

    from transport.messages import ARM_NAMES

    j = ARM_NAMES.index(arm)
    rows: list[tuple[int, int, int, tuple[float, float, float]]] = []
    for path in sorted(rec_dir.glob("console-*.mcap")):
        with open(path, "rb") as f:
            for _s, _c, m in make_reader(f).iter_messages(topics=["/console/command"], log_time_order=False):
                d = json.loads(m.data)
                if d.get("type") != "servo_cp" or not int(d.get("arm_mask", 0)) & (1 << j):
                    continue  # not a motion of the stepped arm (it was not following)
                pos = d["arms"][j]["position"] if len(d.get("arms", ())) > j else (np.nan, np.nan, np.nan)
                rows.append((int(d["epoch"]), int(d["seq"]), int(d["send_ns"]), tuple(pos)))
    if not rows:
        return Commands.of([])
    pos = np.asarray([r[3] for r in rows], np.float64)
    late = pos[np.asarray([r[2] for r in rows]) >= since_ns]
    late = late if len(late) else pos
    axis = int(np.nanargmax(np.nanmax(late, axis=0) - np.nanmin(late, axis=0)))
    return Commands.of([(e, s, t, float(p[axis])) for (e, s, t, _), p in zip(rows, pos, strict=True)])


# --------------------------------------------------------------------------------------------- the run


class Operator:
    """The scripted operator of the run, on a 10 ms Qt timer: engage (AutoDriver, still hands), settle, two
    calibration steps that locate the instrument for the optical probe, then --seconds of measured steps."""

    def __init__(self, win, log: PaintLog, args: argparse.Namespace, app) -> None:
        from PySide6.QtCore import QTimer

        from console.ui.drive import AutoDriver

        self.win, self.log, self.args, self.app = win, log, args, app
        self.driver = AutoDriver(win, radius_px=0.0)
        self.phase = "engage"
        self.t0 = time.monotonic()
        self.t_phase = self.t0
        self.sign = 1.0
        self.to_move_px = 0.0
        self.px_per_s = 0.0
        self.last_move = self.t0
        self.rest_a = None
        self.band = None
        self.steps: list[Step] = []
        self.measure_ns: tuple[int, int] | None = None
        self.error = ""
        self.arm = "PSM1"
        self.calib_ns = 0
        self.calib_tries = 0
        self.calib_held = False
        self.last_step = 0
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self.poll)
        self.timer.start()

    def following(self) -> bool:
        w = self.win
        return all(w.arm_state(n) == "FOLLOWING" for n in w.hand_arms()) and not w.source.stale

    def _left_eye(self) -> np.ndarray | None:
        from video.framecode import eye_views

        v = self.win.source.view
        return None if v is None else eye_views(v.image, v.layout)[0].copy()

    def step(self) -> int:
        """Start moving the right hand by one step along screen x (alternating direction), spread over timer ticks
        at STEP_SPEED_MM_S tool-side: below the console's speed limit, so no part of the hand's motion is dropped
        (console/controller.py keeps at most one step of leash). Returns when it started (console clock)."""
        scale = ((self.win.state or {}).get("teleop") or {}).get("effective_scale") or self.args.cfg.teleop.motion_scale
        m_per_px = self.win.streamer.with_master(lambda m: m.m_per_px)
        self.to_move_px = self.sign * self.args.step_mm / 1e3 / (m_per_px * float(scale))
        self.px_per_s = STEP_SPEED_MM_S / 1e3 / (m_per_px * float(scale))
        self.last_move = time.monotonic()
        self.sign = -self.sign
        t = time.monotonic_ns()  # before the hand moves: every command sent earlier is at rest
        self._move(first=True)
        return t

    def _move(self, first: bool = False) -> None:
        """Drag the next part of the step: as much as the time since the last part allows (a late timer tick
        drags more, never faster on average)."""
        if not self.to_move_px:
            return
        now = time.monotonic()
        budget = self.px_per_s * (0.01 if first else min(0.05, now - self.last_move))
        self.last_move = now
        dx = max(-budget, min(budget, self.to_move_px))
        self.to_move_px = 0.0 if abs(self.to_move_px - dx) < 1e-9 else self.to_move_px - dx

        def move(m) -> None:
            active, m.active = m.active, 0
            m.mouse_drag(dx, 0.0, True, False)
            m.active = active
        self.win.streamer.with_master(move)

    def _next(self, phase: str) -> None:
        self.phase, self.t_phase = phase, time.monotonic()

    def poll(self) -> None:
        self._move()
        now = time.monotonic()
        since = now - self.t_phase
        dwell = self.args.dwell_s
        if now - self.t0 > self.args.seconds + 120:
            self.error = self.error or f"timed out in phase {self.phase}"
            return self.finish()
        if self.phase in ("settle", "calib_b") and not self.following():
            self.calib_held = True  # a hold (a stale picture while the mode settles) between the two rests
        if self.phase == "engage" and self.following():
            self.arm = self.win.hand_arms()[0]
            self.calib_held = False
            self._next("settle")
        elif self.phase == "settle" and since >= SETTLE_S:
            self.rest_a = self._left_eye()
            self.calib_ns = self.step()
            self._next("calib_b")
        elif self.phase == "calib_b" and since >= dwell:
            rest_b = self._left_eye()
            self.step()
            self.rest_b = rest_b
            band = None if self.calib_held or self.rest_a is None or rest_b is None else find_band(self.rest_a, rest_b)
            if band is None:
                # The arm held during the calibration step, or the step was not seen: calibrate again once it
                # follows (the AutoDriver engages again), rather than measure without the optical probe.
                self.calib_tries += 1
                if self.calib_tries >= CALIB_TRIES:
                    self.error = (f"the stepped instrument was not seen to move in {CALIB_TRIES} calibration "
                                  "steps: no optical probe")
                    self._next("calib_back")
                else:
                    self._next("engage")
                return
            self.band = band
            self.log.probe = lambda v, b=band: tip_x(crop(_eye(v), b))
            self._next("calib_back")
        elif self.phase == "calib_back" and since >= dwell:
            t = self.step()
            self.measure_ns = (t, 0)
            self.last_step = t
            self._next("measure")
        elif self.phase == "measure":
            t_now = time.monotonic_ns()
            if t_now - self.last_step >= dwell * 1e9:
                self.steps.append(Step(self.last_step, t_now))
                if (t_now - self.measure_ns[0]) / 1e9 >= self.args.seconds:
                    self.measure_ns = (self.measure_ns[0], t_now)
                    self._next("tail")
                else:
                    self.last_step = self.step()
        elif self.phase == "tail" and since >= TAIL_S:
            self.finish()

    def finish(self) -> None:
        self.timer.stop()
        self.driver.stop()
        self.app.quit()


def _eye(view) -> np.ndarray:
    from video.framecode import eye_views

    return eye_views(view.image, view.layout)[0]


def measure(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
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
    from console.ui.screenshot import console_ports
    from console.ui.settings import Prefs
    from console.ui.window import ConsoleWindow

    ctrl, telem, video = free_ports(3)
    keys = ["security.insecure=true"] if args.cfg.security.insecure else throwaway_keys(tmp / "keys")
    rec_dir = tmp / "recordings"
    common = [*keys, f"recording.dir={rec_dir}", *console_ports()]
    bed_sets = [*port_overrides(ctrl, telem, video), *common]
    con_sets = list(bed_sets)
    linkemu, link_report = None, {}
    bedside = start_role("bedside", ["bedside", "--summary", str(tmp / "bedside.json"),
                                     *passthrough(args, [*bed_sets, *(args.overrides or [])])],
                         prefix=tied_to_us(), timeout=60)
    engine = None
    op = None
    log = PaintLog()
    win_stats: dict[str, Any] = {}
    try:
        if args.scenario:
            linkemu = EmulatedLink(args.scenario, tmp, passthrough(args, [*bed_sets, *(args.overrides or [])]))
            con_sets = linkemu.console_sets(con_sets)
        cfg, overrides = window_config(args, con_sets)
        engine = start_engine(args, overrides, str(tmp / "console.json"))
        lower_priority(cfg.console.window_nice)
        app = make_app("teleop bench m2p")
        prefs = Prefs("console", tmp / "settings")
        win = ConsoleWindow(cfg, prefs, engine=engine, sound=False)
        w, h = (int(x) for x in args.size.lower().split("x"))
        win.resize(w, h)
        win.show()
        win.source.paint_log = log
        quit_on_sigterm(app)
        op = Operator(win, log, args, app)
        app.exec()
        win.source.paint_log = None
        win_stats = {"receiver": win.source.receiver.stats(), "painted_frames": win.source.painted_frames,
                     "picture_log": list(getattr(win.source, "picture_log", []))[-20:],
                     "engages": op.driver.engages}
        win.close()
        win.shutdown()
    finally:
        if engine is not None:
            report_engine(engine)
        bedside.stop(timeout=15)
        if linkemu is not None:
            link_report = linkemu.stop()
    assert op is not None
    if op.measure_ns is None or not op.measure_ns[1]:
        raise RuntimeError(op.error or f"the run never measured (phase {op.phase}): {engine.stderr_text()[-2000:]}")
    con = json.loads((tmp / "console.json").read_text()) if (tmp / "console.json").exists() else {}
    cmds = read_commands(rec_dir, op.arm, op.calib_ns)
    if not len(cmds):
        raise RuntimeError("no servo_cp of the stepped arm in the console's recording: the bench reads the send "
                           "times there (keep recording.enabled, the default)")
    paints = list(log.records)
    t0, t1 = op.measure_ns
    meta = metadata_m2p(cmds, paints, t0, t1)
    optical = optical_steps(cmds, paints, op.steps)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        with open(args.keep / "paints.jsonl", "w") as f:
            for p in paints:
                f.write(json.dumps({k: getattr(p, k) for k in p.__slots__}) + "\n")
        (args.keep / "optical.json").write_text(json.dumps(optical, indent=1))
        shutil.copytree(rec_dir, args.keep / "recordings", dirs_exist_ok=True)
        import cv2

        for name in ("rest_a", "rest_b"):
            img = getattr(op, name, None)
            if img is not None:
                cv2.imwrite(str(args.keep / f"{name}.png"), img)
        for name in ("console.json", "bedside.json"):
            if (tmp / name).exists():
                shutil.copy(tmp / name, args.keep / name)
    in_run = [p for p in paints if t0 <= p.paint_ns < t1]
    modes = Counter(f"{p.eye_w}x{p.eye_h}@{p.fps}" for p in in_run)
    span = (in_run[-1].paint_ns - in_run[0].paint_ns) / 1e9 if len(in_run) > 1 else 0.0
    rtt = {k: (None if v is None else round(v / 1000, 3)) for k, v in (con.get("rtt_us") or {}).items()
           if k in ("p50", "p99", "p999", "max")}
    holds = [e for e in con.get("events", []) if str(e.get("name", "")).endswith("->HELD")]
    return {
        **meta, "rtt_ms": rtt, "optical": optical, "arm": op.arm, "band": op.band,
        "video_modes_painted": dict(modes.most_common()),
        "video_mode": modes.most_common(1)[0][0] if modes else None,
        "painted_fps": round((len(in_run) - 1) / span, 1) if span else None,
        "paint_event_ms": percentiles([p.paint_us / 1000 for p in in_run], True, ("p50", "p95"), 2),
        "paint_log": {"records": len(paints), "overwritten": log.overwritten},
        "window": win_stats, "holds": len(holds), "hold_reasons": sorted({str(e.get("reason")) for e in holds}),
        "commands_applied": con.get("commands_applied"), "commands_rejected": con.get("commands_rejected"),
        "link": {k: link_report.get(k) for k in ("links",)} if link_report else None,
        "operator_error": op.error,
    }


def verdict(r: dict[str, Any], scenario: str) -> dict[str, Any]:
    """Targets met or missed (never loosened)."""
    m, rtt = r.get("m2p_ms") or {}, (r.get("rtt_ms") or {}).get("p50")
    out: dict[str, Any] = {}
    if m.get("p50") is not None and rtt is not None:
        r["overhead_ms"] = {"p50": round(m["p50"] - rtt, 2)}
    if scenario in ("lan", "direct"):
        out["m2p_p50_le_35"] = m.get("p50") is not None and m["p50"] <= TARGETS["lan_p50_ms"]
        out["m2p_p95_le_50"] = m.get("p95") is not None and m["p95"] <= TARGETS["lan_p95_ms"]
    else:
        oh = (r.get("overhead_ms") or {}).get("p50")
        out["m2p_p50_minus_rtt_p50_le_35"] = oh is not None and oh <= TARGETS["overhead_p50_ms"]
    out["methods_agree_within_one_frame"] = bool(r.get("optical", {}).get("all_agree"))
    return out


def run(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    load0 = [round(x, 2) for x in os.getloadavg()]
    scenario = args.scenario or "direct"
    result: dict[str, Any] = {"scenario": scenario, "machine": machine(),
                              "clocks": "one host: console, bedside, video child and link emulator share "
                                        "CLOCK_MONOTONIC; paint = end of the offscreen paint (no display scan-out)"}
    try:
        with tempfile.TemporaryDirectory(prefix="teleop-m2p-") as tmp:
            result.update(measure(args, Path(tmp)))
    except Exception as exc:  # a bench reports its failure as a result
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc()[-2000:]
    result["targets"] = verdict(result, scenario)
    result["loadavg_start"], result["loadavg_end"] = load0, [round(x, 2) for x in os.getloadavg()]
    result["wall_s"] = round(time.monotonic() - t0, 1)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        _print(result)
    return 0 if "error" not in result and all(result["targets"].values()) else 1


def _print(r: dict[str, Any]) -> None:
    if "error" in r:
        print(f"m2p: {r['error']}", file=sys.stderr)
        return
    m, o = r["m2p_ms"], r["optical"]
    print(f"m2p {r['scenario']}: mode {r['video_mode']} painted at {r['painted_fps']} fps, "
          f"{r['commands_shown']} of {r['commands']} commands shown")
    print(f"  m2p ms p50 {m['p50']} p95 {m['p95']} p99 {m['p99']} max {m['max']} (mean {m.get('mean')}); "
          f"RTT p50 {r['rtt_ms'].get('p50')} ms; overhead p50 {(r.get('overhead_ms') or {}).get('p50')} ms")
    print("  breakdown (p50 / mean ms): " + ", ".join(
        f"{k} {v.get('p50')}/{v.get('mean')}" for k, v in r["breakdown_ms"].items()))
    print(f"  optical: {o['measured']} of {o['steps']} steps, agree {o['agree']}, optical p50 "
          f"{o['optical_ms'].get('p50')} ms vs metadata {o['metadata_ms'].get('p50')} ms, |diff| p95 "
          f"{o['abs_diff_ms'].get('p95')} ms (frame {o['frame_period_ms']} ms)")
    print(f"  targets: {r['targets']}; load {r['loadavg_start']} -> {r['loadavg_end']}")
