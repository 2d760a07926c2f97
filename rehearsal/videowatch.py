"""A viewer that watches the picture for a while, in a process of its own (run inside the console's namespace by
`teleop bench failover --net netns` and tests/test_netns_paths.py, or beside the emulator with `--net proxy`): the
stereo stream over every configured path (video/failover.py), judged by the stale-video guard the console uses.

`python -m rehearsal.videowatch SECONDS [--progress S] OVERRIDES...`: prints READY once the first picture is
decoded, then after SECONDS one JSON line: frames, the longest gap between two decoded pictures, how often the
guard went stale, path switches, and every gap over 120 ms (its start, monotonic ns: the same clock as the cuts;
its length; how many frame ids the picture after it is past the one before, 1 when the sender made none in between;
whether that picture is a keyframe; the active path)."""

from __future__ import annotations

import json
import sys
import time

from base.config import load_config
from video.receiver import VideoReceiver

LONG_GAP_MS = 120.0


def watch(seconds: float, overrides: list[str], progress_s: float = 0.0) -> dict:
    rx = VideoReceiver(load_config(None, overrides))
    try:
        first = rx.wait_frame(0, 30.0)
        if first is None:
            return {"error": "no video within 30 s"}
        print("READY", flush=True)
        last_seq, last_ns, stale_holds, was_stale, gap_max = first.seq, time.monotonic_ns(), 0, False, 0.0
        last_fid = first.frame_id
        long_gaps: list[tuple[int, float, int, bool, int]] = []  # (start ns, ms, frame ids apart, keyframe, path)
        start = time.monotonic()
        end = start + seconds
        progress = start + progress_s if progress_s > 0 else float("inf")
        while (t := time.monotonic()) < end:
            view = rx.latest()
            now = time.monotonic_ns()
            if view is not None and view.seq != last_seq:
                if view.decoded_ns - last_ns > LONG_GAP_MS * 1e6:  # frame ids apart 1: the sender sent nothing
                    long_gaps.append((last_ns, round((view.decoded_ns - last_ns) / 1e6, 1), view.frame_id - last_fid,
                                      view.keyframe, rx.failover.active))
                last_seq, last_ns, last_fid = view.seq, view.decoded_ns, view.frame_id
            gap_max = max(gap_max, (now - last_ns) / 1e6)
            stale = rx.status(now).stale
            stale_holds += int(stale and not was_stale)
            was_stale = stale
            if t >= progress:
                print(f"video: {t - start:.0f}/{seconds:.0f} s, gap max {gap_max:.0f} ms, {stale_holds} stale",
                      file=sys.stderr, flush=True)
                progress += progress_s
            time.sleep(0.005)
        st = rx.stats()
        return {"frames": st.get("decoded"), "gap_ms_max": round(gap_max, 1), "stale_holds": stale_holds,
                "switches": st.get("path_switches"), "fps": st.get("fps"), "shown_off_path": st.get("shown_off_path"),
                "duplicates": st.get("duplicate_frames", 0), "echoes": st.get("echoes", 0), "long_gaps": long_gaps,
                "move_ms": st.get("move_ms", [])}
    finally:
        rx.close()


def main(argv: list[str]) -> None:
    seconds, rest = float(argv[0]), argv[1:]
    progress = 0.0
    if rest[:1] == ["--progress"]:
        progress, rest = float(rest[1]), rest[2:]
    print(json.dumps(watch(seconds, rest, progress)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
