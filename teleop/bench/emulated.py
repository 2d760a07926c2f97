"""A `teleop linkemu --scenario S` between a bench's bedside and console: started, its ports for the console,
stopped with its report. One way for every bench that runs through the link emulator (soak, m2p)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from base.procs import port_overrides, teleop_command

_LINK_PORTS = ("link.control_port", "link.telemetry_port", "link.video_port")


class EmulatedLink:
    def __init__(self, scenario: str, tmp: Path, set_args: list[str]) -> None:
        """Start the emulator (`set_args`: the bedside's `--set` arguments, whose ports it forwards to) and wait
        for its READY line; RuntimeError if it does not start."""
        self.report_path = tmp / "linkemu.json"
        self.proc = subprocess.Popen(teleop_command("linkemu", "--scenario", scenario, "--listen-port", "0",
                                                    "--report", str(self.report_path), *set_args),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        ready = self.proc.stdout.readline()
        if not ready.startswith("READY"):
            self.proc.kill()
            raise RuntimeError(f"teleop linkemu did not start: {ready!r} "
                               f"{self.proc.stderr.read() if self.proc.stderr else ''}")
        self.ports = dict(kv.split("=", 1) for kv in ready.split()[1:])

    @property
    def pid(self) -> int:
        return self.proc.pid

    def console_sets(self, sets: list[str]) -> list[str]:
        """`sets` (overrides) with the console's link ports pointed at the emulator."""
        kept = [o for o in sets if not o.startswith(_LINK_PORTS)]
        p = self.ports
        return kept + port_overrides(int(p["control"]), int(p["telemetry"]), int(p["video"]))

    def stop(self) -> dict[str, Any]:
        """End the emulator (it writes its report on SIGTERM); the report, or {} if it wrote none."""
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        return json.loads(self.report_path.read_text()) if self.report_path.exists() else {}
