"""`teleop report`: HTML + PNGs with the summary numbers, from a console + bedside pair."""

from __future__ import annotations

import subprocess

import pytest

from base.procs import teleop_command
from qa.report import make_report
from qa.synth import synthesize


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("rec"), seconds=4.0)


def test_report_writes_html_and_every_plot(rec, tmp_path):
    seen: list[float] = []
    html = make_report([str(rec.console), str(rec.bedside)], tmp_path / "r", progress=lambda f, _w: seen.append(f))
    text = html.read_text()
    for png in ("latency_hist.png", "latency_time.png", "frame_age.png", "freezes.png", "tool_paths.png",
                "events.png"):
        assert (tmp_path / "r" / png).stat().st_size > 5000
        assert f"src='{png}'" in text
    for item in ("RTT p99 (ms)", "frame age p95 (ms)", "bedside freezes", "freeze latency max (ms)",
                 "PSM1 path length (mm)", "limit hits and rejections", "REJECTED_STEP",
                 "bedside: tick p99.9 / max (ms)", "console: ticks over the 10 ms bound", "console stall",
                 "right/left hand drove", "PSM1/PSM2", "arm swaps"):
        assert item in text
    assert seen[-1] == 1.0 and seen == sorted(seen)


def test_report_command_line_on_a_bedside_recording_alone(rec, tmp_path):
    p = subprocess.run(teleop_command("report", str(rec.bedside), "-o", str(tmp_path / "b")), capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "100%" in p.stderr  # the progress bar
    text = (tmp_path / "b" / "report.html").read_text()
    assert "RTT is measured at the console" in text and "capture → sent" in text
