"""A role's life under the command line, the same for the bedside and the console engine: build it with its
recorder, run it until stopped, close it, then the recorder. A role that never started (a port in use, a key)
deletes its recording: QA must not find an empty one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from base.runtime import StopFlag
from recording.recorder import RecorderChild


class Role(Protocol):
    def run(self, stop: StopFlag, seconds: float | None = None) -> None: ...

    def finish(self) -> None: ...


R = TypeVar("R", bound=Role)


def run_role(build: Callable[[], R], recorder: RecorderChild | None, seconds: float | None) -> R:
    """`build()` the role, run it for `seconds` (None: until SIGTERM/SIGINT), finish it, close the recorder."""
    try:
        role = build()
    except BaseException:
        if recorder is not None:
            recorder.close(discard=True)  # nothing ran: leave no empty recording behind
        raise
    try:
        role.run(StopFlag(), seconds)
    finally:
        role.finish()
        if recorder is not None:
            recorder.close()
    return role
