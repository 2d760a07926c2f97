"""Freeze latency: from the last valid command the bedside received to every arm held, per fault.

Scenarios, each over --trials trials against a real bedside and a real headless console process:
* console_sigkill: the console process dies;
* console_sigstop: the console is stopped for 2 s, then continued (the bedside must never execute what
  the console had queued; the console must come back LOST, not following);
* netns_cut (root only): bedside and console in two network namespaces, the console's veth is taken down
  (a silent cable cut); after the freeze the link is restored so TCP delivers its retransmitted backlog.
The bedside measures the latency itself (freeze time - last valid command's arrival) and logs it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import statistics
import tempfile
import time
from pathlib import Path

from base.procs import Role, free_ports, port_overrides, start_role
from rehearsal.netns import NetnsPair, netns_available
from teleop.bench.link import machine
from transport.security import throwaway_keys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trials", type=int, default=10, help="trials per scenario (default 10)")
    p.add_argument("--stop-s", type=float, default=2.0, help="how long SIGSTOP holds the console (default 2)")
    p.add_argument("--scenario", action="append", choices=("console_sigkill", "console_sigstop", "netns_cut"),
                   help="run only these scenarios (repeatable)")


class EventLog:
    """Follows a bedside --event-log file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pos = 0

    def new(self) -> list[dict]:
        if not self.path.exists():
            return []
        with self.path.open() as f:
            f.seek(self.pos)
            text = f.read()
        cut = text.rfind("\n") + 1
        self.pos += cut
        return [json.loads(line) for line in text[:cut].splitlines() if line]

    def wait_for(self, pred, timeout: float) -> dict | None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for rec in self.new():
                if pred(rec):
                    return rec
            time.sleep(0.005)
        return None


def _engaged(rec: dict) -> bool:
    return rec.get("type") == "event" and rec.get("to") == "ENABLED" and rec.get("kind") == "STATE_CHANGE"


def _freeze(rec: dict) -> bool:
    return rec.get("type") == "freeze"


def run_scenario(name: str, trials: int, stop_s: float, overrides: list[str], tmp: Path) -> dict:
    ctrl, telem = free_ports(2)
    ns: NetnsPair | None = None
    bed_prefix = con_prefix = None
    bed_sets = port_overrides(ctrl, telem) + throwaway_keys(tmp / f"keys-{name}") + overrides
    con_sets = list(bed_sets)
    if name == "netns_cut":
        ns = NetnsPair(prefix="tlw").__enter__()
        bed_prefix, con_prefix = ns.exec_prefix(ns.bed), ns.exec_prefix(ns.con)
        bed_sets.append(f"link.bind_host={ns.bed_ip}")
        con_sets.append(f"link.bedside_host={ns.bed_ip}")
    log_path = tmp / f"{name}.jsonl"
    summary_path = tmp / f"{name}-bedside.json"
    bedside = start_role("bedside", ["bedside", "--no-video", "--event-log", str(log_path),
                                     "--summary", str(summary_path),
                                     *_sets(bed_sets)], prefix=bed_prefix)
    events = EventLog(log_path)
    latencies: list[float] = []
    failures: list[str] = []
    watchdog_ms = None
    try:
        for trial in range(trials):
            console: Role = start_role("console", ["console", "--headless", *_sets(con_sets),
                                                   "--set", "console.engage_at_s=0.3"], prefix=con_prefix)
            try:
                if events.wait_for(_engaged, 10.0) is None:
                    failures.append(f"trial {trial}: console never engaged")
                    continue
                time.sleep(0.3)  # following at 1 kHz
                if name == "console_sigkill":
                    console.signal(signal.SIGKILL)
                elif name == "console_sigstop":
                    console.signal(signal.SIGSTOP)
                else:
                    assert ns is not None
                    ns.cut()
                rec = events.wait_for(_freeze, 5.0)
                if rec is None:
                    failures.append(f"trial {trial}: no freeze within 5 s")
                else:
                    latencies.append(rec["latency_ms"])
                if name == "console_sigstop":
                    time.sleep(max(0.0, stop_s - 0.1))
                    console.signal(signal.SIGCONT)
                    time.sleep(0.5)  # let whatever it had queued arrive
                elif name == "netns_cut":
                    assert ns is not None
                    time.sleep(0.5)
                    ns.restore()
                    time.sleep(1.5)  # TCP retransmits the queued commands
            finally:
                console.stop()
                events.new()
    finally:
        bedside.stop()
        if ns is not None:
            ns.teardown()
    counters = {}
    if summary_path.exists():
        counters = json.loads(summary_path.read_text()).get("counters", {})
    with contextlib.suppress(IndexError, ValueError):
        watchdog_ms = int(bedside.ready.split("watchdog_ms=")[1].split()[0])
    return {
        "trials": trials,
        "freeze_ms": {
            "p50": round(statistics.median(latencies), 2) if latencies else None,
            "max": round(max(latencies), 2) if latencies else None,
            "min": round(min(latencies), 2) if latencies else None,
            "n": len(latencies),
        },
        "backlog_received": counters.get("backlog_received", 0),
        "received_while_frozen": counters.get("received_while_frozen", 0),
        "backlog_executed": counters.get("backlog_executed", 0),
        "failures": failures,
        "watchdog_ms": watchdog_ms,
    }


def _sets(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def run(args: argparse.Namespace) -> int:
    wanted = args.scenario or ["console_sigkill", "console_sigstop", "netns_cut"]
    ok, why = netns_available()
    result: dict = {"machine": machine(), "watchdog_ms": args.cfg.bedside.watchdog_ms, "scenarios": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in wanted:
            if name == "netns_cut" and not ok:
                result["scenarios"][name] = {"skipped": why}
                continue
            result["scenarios"][name] = run_scenario(name, args.trials, args.stop_s, list(args.overrides or []),
                                                     Path(tmp))
    limit = args.cfg.bedside.watchdog_ms + 10
    result["pass"] = all(
        s.get("skipped") or (s["freeze_ms"]["max"] is not None and s["freeze_ms"]["max"] <= limit
                             and s["backlog_executed"] == 0 and not s["failures"]
                             and s["freeze_ms"]["n"] == s["trials"])
        for s in result["scenarios"].values()
    )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for name, s in result["scenarios"].items():
            if s.get("skipped"):
                print(f"{name:16s} skipped: {s['skipped']}")
                continue
            f = s["freeze_ms"]
            print(f"{name:16s} freeze p50 {f['p50']} ms  max {f['max']} ms  (n={f['n']})  backlog received "
                  f"{s['backlog_received']} executed {s['backlog_executed']}  {'; '.join(s['failures'])}")
        print(f"watchdog {result['watchdog_ms']} ms; pass = {result['pass']}")
    return 0 if result["pass"] else 1
