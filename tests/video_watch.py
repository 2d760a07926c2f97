"""A viewer that watches the picture for a while (run inside the console's namespace by tests/test_netns_paths.py):
the stereo stream over every configured path (video/failover.py), judged by the stale-video guard the console
uses. Prints JSON: frames, the longest gap between two decoded pictures, how often the guard went stale, path
switches."""

from __future__ import annotations

import json
import sys
import time

from base.config import load_config
from video.receiver import VideoReceiver


def main(seconds: float, overrides: list[str]) -> dict:
    rx = VideoReceiver(load_config(None, overrides))
    try:
        first = rx.wait_frame(0, 30.0)
        if first is None:
            return {"error": "no video within 30 s"}
        print("READY", flush=True)
        last_seq, last_ns, stale_holds, was_stale, gap_max = first.seq, time.monotonic_ns(), 0, False, 0.0
        long_gaps: list[tuple[int, float]] = []  # every gap over 120 ms between two new pictures: (start ns, ms)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            view = rx.latest()
            now = time.monotonic_ns()
            if view is not None and view.seq != last_seq:
                if view.decoded_ns - last_ns > 120e6:
                    long_gaps.append((last_ns, round((view.decoded_ns - last_ns) / 1e6, 1)))
                last_seq, last_ns = view.seq, view.decoded_ns
            gap_max = max(gap_max, (now - last_ns) / 1e6)
            stale = rx.status(now).stale
            stale_holds += int(stale and not was_stale)
            was_stale = stale
            time.sleep(0.005)
        st = rx.stats()
        return {"frames": st.get("decoded"), "gap_ms_max": round(gap_max, 1), "stale_holds": stale_holds,
                "switches": st.get("path_switches"), "fps": st.get("fps"), "shown_off_path": st.get("shown_off_path"),
                "duplicates": st.get("duplicate_frames", 0), "echoes": st.get("echoes", 0), "long_gaps": long_gaps}
    finally:
        rx.close()


if __name__ == "__main__":
    print(json.dumps(main(float(sys.argv[1]), sys.argv[2:])), flush=True)
