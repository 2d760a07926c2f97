"""A real sound server for machines without a sound card (CI, headless rigs): PulseAudio with null sinks.

PortAudio's ALSA `pulse` device (Debian libasound2-plugins) then reaches it like any desktop: the voice and
alarm paths are exercised through real device I/O, not a file. Each null sink `NAME` is a speaker; its
monitor source `NAME.monitor` hears what was played into it, so a sink doubles as a microphone fed by
whatever plays into it. A process picks its devices with the environment (`env(sink, source)`: libpulse's
PULSE_SINK / PULSE_SOURCE), so two ends on one machine can have separate speakers and microphones.

Runs as root too (PulseAudio warns and runs). Set-up: docs/operations.md, "Audio".
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

from base.errors import UserError


class SoundServerError(UserError, RuntimeError):
    label = "sound server error"


class PulseServer:
    """A private PulseAudio daemon in `runtime_dir` with the given null sinks; `stop()` ends only it (pid file)."""

    def __init__(self, runtime_dir: str | Path, sinks: tuple[str, ...] = ("nul",)) -> None:
        self.runtime_dir = Path(runtime_dir)
        self.sinks = sinks
        self.started = False

    @staticmethod
    def missing() -> str | None:
        """Why a server cannot be started here (the Debian packages to install), or None."""
        need = [p for p in ("pulseaudio", "pactl") if shutil.which(p) is None]
        if need:
            return (f"{' and '.join(need)} not installed: install the Debian packages pulseaudio pulseaudio-utils "
                    "libasound2-plugins libportaudio2 (./bootstrap.sh does)")
        return None

    @property
    def env_base(self) -> dict[str, str]:
        return {"XDG_RUNTIME_DIR": str(self.runtime_dir), "PULSE_SERVER": f"unix:{self.runtime_dir}/pulse/native"}

    def env(self, sink: str | None = None, source: str | None = None) -> dict[str, str]:
        """Environment for a process whose default speaker is `sink` and default microphone `source`."""
        e = dict(self.env_base)
        if sink:
            e["PULSE_SINK"] = sink
        if source:
            e["PULSE_SOURCE"] = source
        return e

    def _pactl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["pactl", *args], env={**os.environ, **self.env_base}, capture_output=True, text=True,
                              timeout=10, check=check)

    def running(self) -> bool:
        return shutil.which("pactl") is not None and self._pactl("info", check=False).returncode == 0

    def start(self, timeout_s: float = 10.0) -> None:
        why = self.missing()
        if why:
            raise SoundServerError(why)
        self.runtime_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.runtime_dir, 0o700)
        if not self.running():
            loads = [f"--load=module-null-sink sink_name={s} rate=48000 channels=1" for s in self.sinks]
            r = subprocess.run(["pulseaudio", "--daemonize=yes", "--exit-idle-time=-1", "-n", "--use-pid-file=yes",
                                "--load=module-native-protocol-unix", *loads],
                               env={**os.environ, **self.env_base}, capture_output=True, text=True, timeout=30)
            deadline = time.monotonic() + timeout_s
            while not self.running():
                if time.monotonic() > deadline:
                    raise SoundServerError(f"pulseaudio did not start in {timeout_s:g} s: {r.stderr.strip()[-300:]}")
                time.sleep(0.1)
            self.started = True
        else:
            have = self._pactl("list", "short", "sinks").stdout
            for s in self.sinks:
                if f"\t{s}\t" not in have:
                    self._pactl("load-module", "module-null-sink", f"sink_name={s}", "rate=48000", "channels=1")

    def stop(self) -> None:
        """Stop the daemon this object started (by its pid file; never by name)."""
        if not self.started:
            return
        pid_file = self.runtime_dir / "pulse" / "pid"
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid_file.read_text().split()[0]), 15)
        self.started = False
