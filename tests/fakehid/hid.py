"""A fake `hid` (cython-hidapi) module for cross-process tests: put this directory first on PYTHONPATH and
point FAKE_HID_SCRIPT at a JSON script. The console's SpaceMouse code then runs unchanged down to the hidapi
calls (`enumerate`, `device().open_path/set_nonblocking/read/close`).

Script: {"events": [{"t": s, "report": [bytes]}, {"t": s, "report_every": [bytes], "until": s},
{"t": s, "unplug": true}]}, times from the moment the device is opened. A report is read once; `report_every`
repeats every 10 ms (a deflected SpaceMouse repeats its report); after `unplug` every read raises OSError, as
hidapi does when the device node vanishes, and `enumerate` finds nothing.
"""

from __future__ import annotations

import builtins
import json
import os
import time
from pathlib import Path

_PATH = os.environ.get("FAKE_HID_SCRIPT")
_EVENTS: list[dict] = json.loads(Path(_PATH).read_text())["events"] if _PATH else []
_T0: list[float] = []


def _t() -> float:
    return time.monotonic() - _T0[0] if _T0 else 0.0


def _unplugged() -> bool:
    return bool(_T0) and any(e.get("unplug") and _t() >= e["t"] for e in _EVENTS)


def enumerate(vendor_id: int = 0, product_id: int = 0) -> list[dict]:
    if _unplugged():
        return []
    return [{"vendor_id": 0x256F, "product_id": 0xC635, "path": b"/dev/hidraw-fake",
             "product_string": "Fake SpaceMouse"}]


class device:
    def __init__(self) -> None:
        self._done: set[int] = set()
        self._next_repeat: dict[int, float] = {}

    def open_path(self, path: bytes) -> None:
        if not _T0:
            _T0.append(time.monotonic())

    def set_nonblocking(self, flag: int) -> None:
        pass

    def read(self, n: int) -> list[int]:
        if _unplugged():
            raise OSError("read error")
        t = _t()
        for i, e in builtins.enumerate(_EVENTS):
            if "report" in e and t >= e["t"] and i not in self._done:
                self._done.add(i)
                return list(e["report"])
            if "report_every" in e and e["t"] <= t < e["until"] and t >= self._next_repeat.get(i, 0.0):
                self._next_repeat[i] = t + 0.01
                return list(e["report_every"])
        return []

    def close(self) -> None:
        pass
