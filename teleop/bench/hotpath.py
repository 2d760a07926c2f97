"""The bedside's per-command Python, in-process: what a servo_cp costs from bytes to ack bytes.

A two-arm servo_cp stream (both instruments on a slow circle, endoscope still, operator present) is encoded
up front; then, each best of 5 repeats, per message: `codec.decode`; `BedsideAgent.on_message` + the
restamp the socket loop does (receive -> ack, the part on the RTT path); the same followed by
`BedsideAgent.advance` (the arms' integration, after the ack: the whole per-tick Python); and per loop
iteration, the loop's watch over itself (safety/loop_watch.py: its figures and the stall timer). Wall time on a
shared machine moves with the load; for a stable figure count instructions:

    valgrind --tool=callgrind python -m teleop.bench.hotpath --only on_message -n 3000
    valgrind --tool=callgrind python -m teleop.bench.hotpath --only none -n 3000

and divide the difference of the two totals by 3000 (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time

from base.config import load_config
from bedside.agent import BedsideAgent
from transport import codec
from transport.messages import CartesianSetpoint, ConsoleFlags, Enable, ServoCp

PEER, USER = b"console", "surgeon:bench"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", type=int, default=20000, help="messages per repeat (default 20000)")
    p.add_argument("--only", choices=("decode", "on_message", "none"), default=None,
                   help="run one part once, silently (for callgrind; 'none' = set-up only)")


def _setup(cfg, n: int) -> tuple[BedsideAgent, list[bytes]]:
    agent = BedsideAgent(cfg.bedside, 0, first_epoch=100, teleop=cfg.teleop)
    ack = codec.decode(agent.on_message(1000, PEER, codec.encode(Enable(0, 1, 1000)), USER)[0].data)
    home = [a.measured for a in agent.arms]
    frames = []
    for k in range(n):
        w = 2 * math.pi * 0.5 * k * 1e-3  # 0.5 Hz, 10 mm radius: 0.03 mm per command
        arms = tuple(CartesianSetpoint((sp.position[0] + 0.01 * (math.sin(w + i) - math.sin(i)),
                                        sp.position[1] + 0.01 * (math.cos(w + i) - math.cos(i)), sp.position[2]),
                                       sp.orientation, 0.3) if i < 2 else sp for i, sp in enumerate(home))
        frames.append(codec.encode(ServoCp(ack.epoch, k + 2, 2000 + k * 1_000_000, ConsoleFlags.OPERATOR_PRESENT,
                                           0b011, arms)))
    return agent, frames


def _decode(frames: list[bytes]) -> None:
    decode = codec.decode
    for f in frames:
        decode(f)


def _on_message(agent: BedsideAgent, frames: list[bytes]) -> None:
    om, restamp = agent.on_message, codec.restamp
    for k, f in enumerate(frames):
        now = 2000 + k * 1_000_000 + 50_000
        restamp(om(now, PEER, f, USER)[0].data, now)


def _tick(agent: BedsideAgent, frames: list[bytes]) -> None:
    om, restamp, advance = agent.on_message, codec.restamp, agent.advance
    for k, f in enumerate(frames):
        now = 2000 + k * 1_000_000 + 50_000
        restamp(om(now, PEER, f, USER)[0].data, now)
        advance(now)


def _loop_watch(n: int) -> tuple[float, str]:
    """The bedside loop's watch over itself, per iteration (µs, best of 5 × `n`): `LoopWatch.tick` (the period,
    the timer re-armed) and one `lap` per step, each with its clock read, as `BedsideServer.run` does. With the
    stall capture (setitimer) when this process may have it; says which."""
    import tempfile

    from bedside.server import LOOP_STEPS
    from safety.loop_watch import LoopWatch

    best = math.inf
    with tempfile.TemporaryDirectory() as d:
        watch = LoopWatch("bedside", LOOP_STEPS, 10.0, d, logging.getLogger("bench"))
        lap, clock = watch.lap, time.monotonic_ns
        laps = range(len(LOOP_STEPS))
        try:
            for _ in range(5):
                t0 = time.perf_counter_ns()
                for _ in range(n):
                    now = clock()
                    watch.tick(now, now)
                    for i in laps:
                        lap(i, clock())
                best = min(best, (time.perf_counter_ns() - t0) / n / 1000)
        finally:
            watch.close()
        return best, "on" if watch.capture_on else f"off ({watch.capture.why_off})"


def run(args: argparse.Namespace) -> int:
    logging.getLogger("bedside.agent").setLevel(logging.ERROR)  # the grant of control is not news here
    cfg = args.cfg if getattr(args, "cfg", None) is not None else load_config()
    agent, frames = _setup(cfg, args.n)
    if args.only is not None:
        if args.only == "decode":
            _decode(frames)
        elif args.only == "on_message":
            _on_message(agent, frames)
        return 0
    out: dict[str, float] = {}
    for name in ("decode", "on_message", "tick"):
        best = math.inf
        for _ in range(5):
            agent, _ = _setup(cfg, 0)  # a fresh session each repeat: sequence numbers start over
            t0 = time.perf_counter_ns()
            if name == "decode":
                _decode(frames)
            elif name == "on_message":
                _on_message(agent, frames)
                if agent.counters["applied"] != args.n:  # a refused stream would time the wrong path
                    raise RuntimeError(f"the stream was not applied: {dict(agent.counters)}")
            else:
                _tick(agent, frames)
            best = min(best, (time.perf_counter_ns() - t0) / args.n / 1000)
        out[f"{name}_us"] = round(best, 2)
    lw, capture = _loop_watch(args.n)
    out["loop_watch_us"] = round(lw, 2)
    if args.json:
        print(json.dumps({"messages": args.n, **out, "stall_capture": capture}, indent=2))
    else:
        print(f"per servo_cp: decode {out['decode_us']} us, on_message + restamp (receive -> ack) "
              f"{out['on_message_us']} us, with the arms' integration {out['tick_us']} us; per loop iteration, "
              f"its watch over itself {out['loop_watch_us']} us (stall capture {capture})")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true")
    add_arguments(ap)
    raise SystemExit(run(ap.parse_args()))
