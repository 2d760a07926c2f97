"""Voice intercom: mouth-to-ear latency over an emulated link, and what voice costs the 1 kHz control stream.

Pairs of runs (`--pairs`, default 3) of a real bedside and a headless console streaming servo_cp at 1 kHz:
voice off, then voice on —
two `teleop voice` processes (the station's, and the console's with a tone-burst microphone: 60 ms of 1 kHz
every 500 ms), the voice connection through the link emulator (rehearsal/linkemu.py, --scenario) and the
real Opus encoder, CurveZMQ, jitter buffer and decoder. The station's speaker is a clocked null output
whose onset detector stamps when each burst is heard.

Reported:
  m2e_ms {p50, p95}  burst's first sample spoken (capture frame time − one frame) → heard at the far output
                     (monotonic clock, one host); device latencies excluded (paced file/null devices);
  one_way_ms         median network one-way delay of the voice packets (send → arrival, same clock);
  budget_ms          m2e_ms.p50 − one_way_ms: what the voice path adds (target ≤ 40: G.114's 150 ms one-way
                     for natural conversation leaves the rest to the network);
  gap_ratio          send_gap_us.p999 of the console's control stream with voice on / off (target ≤ 1.1),
                     measured as `teleop bench link` measures it (console/runner.py's send-gap histogram):
                     the median over the pairs of each pair's ratio (`gap_ratios` lists them). Why pairs: a
                     20-s run's p99.9 is its 20th-worst gap, and two voice-off runs alone differed by 16 %;
                     adjacent off/on runs share the machine's state, and the median drops one odd pair.
m2e and one-way figures pool every voice-on run.
"""

from __future__ import annotations

import argparse
import bisect
import json
import statistics
import tempfile
import time
from pathlib import Path

from base.procs import free_ports, port_overrides, start_role
from base.stats import percentiles
from rehearsal.linkemu import SCENARIOS, LinkProxy
from teleop.args import positive_seconds
from teleop.bench.link import machine, median_ratio
from transport.security import throwaway_keys

START_S = 120.0
"""How long a role may take to say READY (a loaded 2-core machine took over 30 s)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenario", choices=sorted(SCENARIOS), default="lan",
                   help="link emulation for the voice connection (default lan)")
    p.add_argument("--seconds", type=positive_seconds, default=20.0, help="length of each run (default 20)")
    p.add_argument("--pairs", type=int, choices=range(1, 21), default=3, metavar="N",
                   help="voice-off/voice-on run pairs, 1-20 (default 3): gap_ratio is their median ratio")


def _sets(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def m2e(bursts_ns: list[int], heard_ns: list[int], period_ms: float = 500.0) -> list[float]:
    """Each heard onset minus the latest burst spoken before it (within one burst period), in ms."""
    out = []
    for h in heard_ns:
        i = bisect.bisect_right(bursts_ns, h) - 1
        if i >= 0 and h - bursts_ns[i] < period_ms * 1e6:
            out.append((h - bursts_ns[i]) / 1e6)
    return out


def session(args: argparse.Namespace, voice: bool) -> dict:
    ctrl, telem, video, vport = free_ports(4)
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        keys = throwaway_keys(tmpd / "keys")
        base = [*port_overrides(ctrl, telem, video), *keys, f"recording.dir={tmpd / 'rec'}",
                *list(args.overrides or [])]
        summary = tmpd / "console.json"
        roles = [start_role("bedside", ["bedside", "--no-video", *_sets(base)], timeout=START_S)]
        proxy = None
        out: dict = {}
        try:
            if voice:
                profile = SCENARIOS[args.scenario]
                proxy = LinkProxy(0, ("127.0.0.1", vport), profile, profile)
                roles.append(start_role("voice-station", [
                    "voice", "--input", "silence", "--output", "null", "--open-mic", "--detect", "1000",
                    "--summary", str(tmpd / "station.json"), *_sets([*base, f"voice.port={vport}"])], timeout=START_S))
                roles.append(start_role("voice-console", [
                    "voice", "--side", "console", "--input", "burst:1000:500", "--output", "null", "--open-mic",
                    "--summary", str(tmpd / "vconsole.json"), *_sets([*base, f"voice.port={proxy.port}"])],
                    timeout=START_S))
                time.sleep(1.0)
            console = start_role("console", ["console", "--headless", "--seconds", str(args.seconds + 0.5),
                                             "--summary", str(summary), *_sets(base)], timeout=START_S)
            console.proc.wait(args.seconds + 60)
        finally:
            for r in reversed(roles):
                r.stop(15)
            if proxy is not None:
                out["link"] = {k: v for k, v in proxy.report().items() if k in ("connections", "one_way_delay_ms")}
                proxy.close()
        if not summary.exists():
            raise RuntimeError(f"console wrote no summary:\n{console.stderr_text()[-3000:]}")
        con = json.loads(summary.read_text())
        out["send_gap_us"] = con["send_gap_us"]
        if voice:
            st = json.loads((tmpd / "station.json").read_text())
            vc = json.loads((tmpd / "vconsole.json").read_text())
            lat = m2e(vc["bursts_ns"], st["heard_ns"])
            out["m2e_raw_ms"] = lat
            out["voice"] = {
                "bursts": len(vc["bursts_ns"]), "heard": len(st["heard_ns"]),
                "m2e_ms": percentiles(lat, names=("p50", "p95")),
                "one_way_ms": round(st["one_way_median_ms"], 2) if st["one_way_median_ms"] is not None else None,
                "one_way_ms_percentiles": st.get("one_way_ms"),
                "station": {k: st.get(k) for k in ("received", "played", "concealed", "late", "jitter_ms",
                                                   "dropped_catchup", "link")},
            }
        return out


def run(args: argparse.Namespace) -> int:
    t0 = time.time()
    result: dict = {"machine": machine(), "scenario": args.scenario, "seconds": args.seconds,
                    "devices": "paced null/tone (device latency excluded)"}
    pairs = [(session(args, voice=False), session(args, voice=True)) for _ in range(args.pairs)]
    gap_ratio, ratios = median_ratio([(on["send_gap_us"].get("p999"), off["send_gap_us"].get("p999"))
                                      for off, on in pairs])
    ons = [on for _, on in pairs]
    one_ways = [on["voice"]["one_way_ms"] for on in ons if on["voice"]["one_way_ms"] is not None]
    m2e_ms = percentiles([x for on in ons for x in on["m2e_raw_ms"]], names=("p50", "p95"))
    one_way = round(statistics.median(one_ways), 2) if one_ways else None
    v = ons[-1]["voice"]
    result.update({
        "pairs": args.pairs, "m2e_ms": m2e_ms, "one_way_ms": one_way,
        "budget_ms": (round(m2e_ms["p50"] - one_way, 1)
                      if m2e_ms["p50"] is not None and one_way is not None else None),
        "gap_ratio": gap_ratio, "gap_ratios": ratios,
        "send_gap_us": [{"off": off["send_gap_us"], "on": on["send_gap_us"]} for off, on in pairs],
        "voice": [on["voice"] for on in ons], "link": ons[-1].get("link"), "wall_s": round(time.time() - t0, 1),
    })
    result["targets"] = {"budget_ms<=40": result["budget_ms"] is not None and result["budget_ms"] <= 40,
                         "gap_ratio<=1.1": result["gap_ratio"] is not None and result["gap_ratio"] <= 1.1}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"voice over {args.scenario}, {args.pairs} pair(s) of runs; last run: {v['heard']}/{v['bursts']} bursts "
          "heard")
    print(f"  mouth-to-ear ms p50 {m2e_ms['p50']} p95 {m2e_ms['p95']}; one-way {one_way} ms; "
          f"voice path adds {result['budget_ms']} ms (target <= 40)")
    gaps = ", ".join(f"{off['send_gap_us']['p999']} -> {on['send_gap_us']['p999']}" for off, on in pairs)
    print(f"  control send_gap_us p99.9 off -> on: {gaps}; median ratio {result['gap_ratio']} (target <= 1.1)")
    return 0
