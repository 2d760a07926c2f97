"""Checks of what a person types, done before a role starts: each failure is one line naming the cause and
the fix (a `UserError`, printed by `teleop/cli.py`), never a traceback, an abort in Qt, or an empty window."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from base.errors import UserError

MCAP_MAGIC = b"\x89MCAP0\r\n"


class DisplayError(UserError):
    label = "no display"


class RecordingFileError(UserError):
    label = "recording error"


def positive_seconds(text: str) -> float:
    """argparse type for `--seconds`: a positive, finite number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (e.g. --seconds 10)") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a positive number of seconds (e.g. --seconds 10; "
                                         "leave it out to run until stopped)")
    return value


def has_display() -> bool:
    """A screen to open a window on (X11 or Wayland)."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def require_display(command: str, instead: str = "") -> None:
    """Before Qt starts: Qt aborts the process (SIGABRT, a page of plugin names) when it finds no screen.
    `instead` names a command that needs no screen, for the message."""
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if has_display() or (platform and not platform.startswith(("xcb", "wayland"))):
        return
    alt = f", or use `{instead}`" if instead else ""
    raise DisplayError(f"`teleop {command}` opens a window, but DISPLAY and WAYLAND_DISPLAY are unset: run it in a "
                       f"desktop session (or over `ssh -X`), set QT_QPA_PLATFORM=offscreen for a window without a "
                       f"screen{alt}")


def recording_files(paths: list[str]) -> list[str]:
    """Every path names a non-empty MCAP file; else the first bad one, why, and what to give instead."""
    for p in paths:
        path = Path(p)
        if not path.exists():
            raise RecordingFileError(f"{p} does not exist: give the path of a .mcap recording (`ls "
                                     "~/.local/state/teleop/recordings`, or `recording.dir` in the configuration)")
        if not path.is_file():
            raise RecordingFileError(f"{p} is not a file: give the path of a .mcap recording")
        try:
            with path.open("rb") as f:
                head = f.read(len(MCAP_MAGIC))
        except OSError as exc:
            raise RecordingFileError(f"{p} cannot be read ({exc.strerror}): check its permissions") from None
        if not head:
            raise RecordingFileError(f"{p} is empty (a recording cut off before its first byte): give another "
                                     "recording")
        if head != MCAP_MAGIC:
            raise RecordingFileError(f"{p} is not an MCAP recording (it does not start with the MCAP magic "
                                     "bytes): give a .mcap file written by teleop")
    return paths


class OneLineParser(argparse.ArgumentParser):
    """argparse's errors as one line naming the cause and where to read the fix (exit 2, no usage dump)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")
