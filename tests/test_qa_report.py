"""`teleop report`: every number in the report equals what happened, on a synthetic session of known truth
(qa/synth.py, story) and on a real demo session against the console's own summary; plots and tables exist."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from base.procs import teleop_command
from qa.report import Report, make_report
from qa.session import Session
from qa.synth import synthesize

DELAY_US = 300
FPS = 10


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("rec"), seconds=4.0)


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("story"), seconds=10.0, video="jpeg", eye_w=160, eye_h=96, fps=FPS,
                      delay_us=DELAY_US, story=True, wall_ns=1_700_000_000_000_000_000)


def _rows(r: Report) -> dict[str, object]:
    return {name: val for _sec, name, val in r.rows}


def _table(r: Report, title: str) -> list[list[object]]:
    return next(rows for t, _h, rows, _n in r.tables if t == title)


def test_every_number_of_the_report_equals_the_synthetic_truth(story, tmp_path):
    truth = story.truth
    r = Report(Session([story.console, story.bedside]), tmp_path)
    for step in ("overview", "key_figures", "latency", "frame_age", "freezes", "limits", "events_table"):
        getattr(r, step)()
    rows = _rows(r)
    # when: the wall clock at the start, and clock times beside relative ones
    assert rows["started (wall clock, UTC)"] == "2023-11-14 22:13:20.000"
    assert rows["duration (s)"] == pytest.approx(10.0, abs=0.01)
    # stale-video episodes: count, starts, durations; the console's counter beside them
    eps = truth["stale_episodes"]
    assert rows["stale-video episodes"] == f"{len(eps)} (console counter {truth['link_counter_episodes']})"
    table = _table(r, "Stale-video episodes")
    assert [float(str(row[3])) for row in table] == [d for _t, d in eps]
    s = Session([story.console])
    for row, (t, _d) in zip(table, eps, strict=True):
        rel = (t - s.t0_ns) / 1e9
        wall = time.strftime("%H:%M:%S", time.gmtime((truth["wall_start_ns"] + t - s.t0_ns) // 10**9))
        assert row[1] == f"{rel:.3f} s ({wall}.{round(rel * 1000) % 1000:03d})"
    assert rows["stale video, total / longest (ms)"] == f"{sum(d for _t, d in eps):.1f} / {max(d for _t, d in eps):.1f}"
    # holds by reason, as the console counted them (one per arm), and the stale-video hold instants
    assert rows["holds (arms engaged → HELD)"] == sum(truth["holds"].values())
    assert rows["holds by reason"] == ", ".join(f"{k} {v}" for k, v in sorted(
        truth["holds"].items(), key=lambda kv: -kv[1]))
    assert rows["video-stale holds (instants)"] == len(eps)
    # freezes: the bedside's own list; the grace hold apart from the watchdog's
    fz = truth["freezes"]
    assert rows["bedside freezes"] == len(fz)
    n_watch = sum(1 for reason, _l in fz if reason == "LINK_LOST") - truth["grace_holds"]
    n_estop = sum(1 for reason, _l in fz if reason == "ESTOP")
    assert rows["freezes by kind: watchdog / first-command grace / e-stop / other"] == \
        f"{n_watch} / {truth['grace_holds']} / {n_estop} / 0"
    ftab = _table(r, "Bedside freezes")
    assert [(row[2], float(str(row[4]))) for row in ftab] == [(reason, round(lat, 1)) for reason, lat in fz]
    assert [row[3] for row in ftab].count("grace") == truth["grace_holds"] == 1
    assert rows["freeze latency max (ms)"] == pytest.approx(max(lat for _r, lat in fz))
    # alarms, e-stops, handovers, refusals (not limits), limit hits and rejections
    assert rows["alarms"] == truth["alarms"]
    assert rows["e-stops"] == truth["estops"] == 1
    assert rows["handovers"] == truth["handovers"] == 1
    assert rows["refusals (console refused a request)"] == truth["refusals"] == 1
    assert rows["limit events / rejections"] == f"{truth['limit_rejections']} / {truth['other_rejections']}"
    assert not any("engage refused" in str(v) for sec, _k, v in r.rows if sec == "limits")  # a refusal, no limit
    assert rows["path failovers"] == rows["voice losses"] == "not in this session"
    # latency and video figures: the synthetic link is a fixed 2 × 300 µs, every frame 8 ms old
    for q in ("p50", "p95", "p99", "p99.9"):
        assert rows[f"RTT {q} (ms)"] == pytest.approx(2 * DELAY_US / 1000)
    assert rows["frames received"] == 10 * FPS and rows["frame age max (ms)"] == pytest.approx(8.0)
    # the events table: every event, with time, source, what and why
    ev = _table(r, "Events")
    assert len(ev) == len(r.s.events())
    assert any(row[2] == "refusal" and row[3] == "teleop: engage refused" and row[4] == "OPERATOR_ABSENT"
               for row in ev)
    assert sum(1 for row in ev if row[2] == "video" and "stale" in str(row[3])) == len(eps)


def test_report_writes_html_and_every_plot(rec, tmp_path):
    seen: list[float] = []
    html = make_report([str(rec.console), str(rec.bedside)], tmp_path / "r", progress=lambda f, _w: seen.append(f))
    text = html.read_text()
    for png in ("latency_hist.png", "latency_time.png", "frame_age.png", "freezes.png", "tool_paths.png",
                "events.png"):
        assert (tmp_path / "r" / png).stat().st_size > 5000
        assert f"src='{png}'" in text
    for item in ("RTT p99 (ms)", "frame age p95 (ms)", "bedside freezes", "freeze latency max (ms)",
                 "PSM1 path length (mm)", "limit hits and rejections", "REJECTED_STEP", "started (wall clock, UTC)",
                 "bedside: tick p99.9 / max (ms)", "console: ticks over the 10 ms bound", "console stall",
                 "right/left hand drove", "PSM1/PSM2", "arm swaps", "<h2>Events</h2>", "(22:13:2"):
        assert item in text
    assert seen[-1] == 1.0 and seen == sorted(seen)


def test_report_command_line_on_a_bedside_recording_alone(rec, tmp_path):
    p = subprocess.run(teleop_command("report", str(rec.bedside), "-o", str(tmp_path / "b")), capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "100%" in p.stderr  # the progress bar
    text = (tmp_path / "b" / "report.html").read_text()
    assert "RTT is measured at the console" in text and "capture → sent" in text


def test_a_real_demo_sessions_report_counts_what_the_console_counted(tmp_path):
    """`teleop demo --window` (bedside with video, console engine, the window offscreen, ~15 s): the report of
    its recordings has the stale-video episodes and the holds by reason of the console's own summary."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    out = subprocess.run([sys.executable, "-m", "teleop.cli", "demo", "--window", "--seconds", "2", "--json",
                          "--set", f"recording.dir={tmp_path}"], capture_output=True, text=True, timeout=240, env=env)
    assert out.stdout.strip(), f"no summary (exit {out.returncode}): {out.stderr[-3000:]}"
    summary = json.loads(out.stdout)
    files = sorted(str(p) for p in Path(tmp_path).glob("*.mcap"))
    assert len(files) == 2, files
    s = Session(files)
    assert s.count("console", "/console/state") > 10  # what the window was told: the replay's HUD and banner
    r = Report(s, tmp_path / "report")
    r.key_figures()
    rows = _rows(r)
    eps = summary["video_stale_episodes"]
    assert rows["stale-video episodes"] == f"{eps} (console counter {eps})"
    assert r.fig.holds == summary["arm_holds_by_reason"]
    assert rows["video-stale holds (instants)"] == summary["video_stale_holds"]
    # the hold log: one entry per instant, in time order, each with its reason (VIDEO_STALE ones counted above)
    log = summary["holds"]
    assert [h["t_s"] for h in log] == sorted({h["t_s"] for h in log})
    assert sum(h["reason"] == "VIDEO_STALE" for h in log) == summary["video_stale_holds"]
