"""`teleop linkcheck` (qa/linkcheck.py): the verdicts, pure, from injected answers; then a live bedside with a
healthy path and a degraded emulated one (`teleop linkemu`), and the user errors."""

from __future__ import annotations

import json
import subprocess

from conftest import ms

from base.procs import free_ports, start_role, teleop_command
from qa.linkcheck import THRESHOLDS, PathProbe, render_html


def _probe(rtts_ms: list[float], lost: int = 0, swap: bool = False) -> PathProbe:
    p = PathProbe("path0", "tcp://h:1")
    t = ms(1000)
    for i in range(1, len(rtts_ms) + 1):
        p.on_send(t, i)
        t += ms(10)
    order = list(range(1, len(rtts_ms) + 1))
    if swap:
        order[0], order[1] = order[1], order[0]
    for i in order:
        p.on_answer(p.sent[i] + ms(rtts_ms[i - 1]), i, p.sent[i])
    for i in range(lost):
        p.on_send(t, 10_000 + i)
    p.expire(t + ms(2000))
    return p


def test_a_healthy_path_is_go():
    ok, why = _probe([20.0 + (i % 3) for i in range(300)]).verdict(THRESHOLDS, None)
    assert ok and why == []


def test_each_threshold_missed_is_named():
    slow = _probe([250.0] * 300)
    assert slow.verdict(THRESHOLDS, None) == (False, ["RTT p99 250.0 ms > 200 ms"])
    jittery = _probe([20.0 if i % 2 else 45.0 for i in range(300)])
    ok, why = jittery.verdict(THRESHOLDS, None)
    assert not ok and why[0].startswith("jitter 25.00 ms")
    lossy = _probe([20.0] * 300, lost=10)
    ok, why = lossy.verdict(THRESHOLDS, None)
    assert not ok and why[0].startswith("loss 3.23 %")
    reordered = _probe([20.0] * 300, swap=True)
    ok, why = reordered.verdict(THRESHOLDS, None)
    assert not ok and why[0].startswith("reordering")
    no_video = _probe([20.0] * 300)
    assert no_video.verdict(THRESHOLDS, 8000) == (False, ["no video received on this path"])
    no_video.video = {"frames": 100, "bitrate_kbps_p50": 4000}
    assert "video settled at 4000 kbit/s" in no_video.verdict(THRESHOLDS, 8000)[1][0]


def test_a_live_bedside_with_a_healthy_and_a_degraded_path(tmp_path, key_overrides):
    c0, t0, v0, c1, t1, v1 = free_ports(6)
    bed_sets = [*key_overrides, f"recording.dir={tmp_path / 'rec'}", f"link.control_port={c0}",
                f"link.telemetry_port={t0}", f"link.video_port={v0}", f"link.paths=127.0.0.1:{c1}:{t1}:{v1}"]
    sets = [a for o in bed_sets for a in ("--set", o)]
    bed = start_role("bedside", ["bedside", "--no-video", *sets], timeout=90)
    emu = subprocess.Popen(teleop_command("linkemu", "--scenario", "lan", "--delay-ms", "150", "--listen-port", "0",
                                          "--set", f"link.control_port={c1}", "--set", f"link.telemetry_port={t1}",
                                          "--set", f"link.video_port={v1}"),
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert emu.stdout is not None
        ready = dict(kv.split("=", 1) for kv in emu.stdout.readline().split()[1:])
        report = tmp_path / "linkcheck.html"
        con = [*key_overrides, f"link.control_port={c0}", f"link.telemetry_port={t0}", f"link.video_port={v0}",
               f"link.paths=127.0.0.1:{ready['control']}:{ready['telemetry']}:{ready['video']}"]
        out = subprocess.run(teleop_command("linkcheck", "--seconds", "4", "--rate-hz", "50", "--no-video", "--json",
                                            "--report", str(report), *[a for o in con for a in ("--set", o)]),
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 1, out.stderr  # NO-GO
        res = json.loads(out.stdout)
        p0, p1 = res["paths"]
        assert p0["verdict"] == "GO", p0
        assert p1["verdict"] == "NO-GO" and any(w.startswith("RTT p99") for w in p1["why"]), p1
        assert res["verdict"] == "NO-GO" and "path1" in res["why"]
        assert p0["sent"] > 100 and p1["rtt_ms"]["p50"] > 250
        text = report.read_text()
        assert "Link qualification: NO-GO" in text and text.count("data:image/png;base64,") == 2
    finally:
        emu.terminate()
        emu.wait(10)
        bed.stop()


def test_an_unreachable_bedside_is_one_line_with_the_fix(tmp_path, key_overrides):
    (port,) = free_ports(1)
    out = subprocess.run(teleop_command("linkcheck", "--seconds", "1", "--no-video", "--report",
                                        str(tmp_path / "r.html"), *[a for o in key_overrides for a in ("--set", o)],
                                        "--set", f"link.control_port={port}"),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "no answer from the bedside" in out.stderr and "teleop bedside" in out.stderr
    bad = subprocess.run(teleop_command("linkcheck", "--seconds", "1", "--set", "link.paths=nohost:1"),
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "link.paths" in bad.stderr and "Traceback" not in bad.stderr


def test_the_report_renders_without_answers():
    r = {"seconds": 1, "rate_hz": 100, "thresholds": THRESHOLDS.__dict__, "video_bitrate_kbps": None,
         "verdict": "NO-GO", "why": "x", "paths": [{"name": "path0", "endpoint": "e", "rtt_ms": {
             "p50": None, "p99": None, "max": None}, "jitter_ms": None, "loss_pct": None, "reorder_pct": None,
             "verdict": "NO-GO", "why": ["no answer at all"], "series": [], "video": None}]}
    assert "no answer at all" in render_html(r)
