"""`teleop bench frames` runs end to end on a small picture and says, per stage, what it measured (the figures
themselves are for the bench, not for a test: no timing is asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_bench_frames_reports_every_stage_before_and_now():
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run([sys.executable, "-m", "teleop.cli", "bench", "frames", "--frames", "8", "--scales", "0.25",
                          "--x264-threads", "0,1", "--pane", "480x200", "--opencv-threads", "1", "--json"],
                         capture_output=True, text=True, timeout=120, env=env, check=True)
    res = json.loads(out.stdout)
    assert res["opencv_threads"] == 1
    (size,) = res["sizes"]
    assert size["picture"] == "640x180"
    for stage in ("render", "signature", "to_i420", "encode", "h264", "decode", "draw"):
        assert size[stage]["cpu_ms"]["p50"] is not None and size[stage]["wall_ms"]["p50"] is not None
    assert set(size["wrap"]) == set(size["to_bgr"]) == {"now", "before"}
    assert set(size["x264"]) == {"threads=0", "threads=1"}
    for variant in size["x264"].values():  # each thread count says what picture it made, not only its time
        assert variant["kb_per_frame"] > 0 and variant["psnr_db"] > 30
    assert size["compose"]["to"] == "480x135"  # fitted into the pane, aspect kept
