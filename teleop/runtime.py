"""Process plumbing shared by every role: stop on SIGTERM/SIGINT, announce readiness, JSON-lines logs."""

from __future__ import annotations

import gc
import json
import signal
import sys
import threading
from pathlib import Path
from typing import IO, Any


class StopFlag:
    """Set by SIGTERM/SIGINT (or by a test) so loops end cleanly and write their summaries."""

    def __init__(self, install_signals: bool = True) -> None:
        self._ev = threading.Event()
        if install_signals and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self._ev.set())
            signal.signal(signal.SIGINT, lambda *_: self._ev.set())

    def set(self) -> None:
        self._ev.set()

    def __bool__(self) -> bool:
        return self._ev.is_set()


def announce_ready(**fields: Any) -> None:
    """One line on stdout that parent processes wait for: `READY key=value ...`."""
    print("READY " + " ".join(f"{k}={v}" for k, v in fields.items()), flush=True)


def realtime_gc() -> None:
    """Keep the collector off the 1 kHz path: freeze start-up objects, collect young ones rarely."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


class JsonLines:
    """Append-only JSON-lines file, flushed per line so a killed process leaves a readable log."""

    def __init__(self, path: str | Path | None) -> None:
        self._f: IO[str] | None = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115

    def write(self, record: dict[str, Any]) -> None:
        if self._f is not None:
            self._f.write(json.dumps(record, separators=(",", ":")) + "\n")
            self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def write_json(path: str | Path | None, obj: Any) -> None:
    if path:
        Path(path).write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    else:
        json.dump(obj, sys.stdout, indent=2)
        print()
