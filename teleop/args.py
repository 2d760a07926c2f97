"""Checks of what a person types, done before a role starts: each failure is one line naming the cause and
the fix (a `UserError`, printed by `teleop/cli.py`), never a traceback, an abort in Qt, or an empty window.
(Recording files are checked by QA's reader: `qa.session.check_files`.)"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

from base.errors import UserError


class DisplayError(UserError):
    label = "no display"


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


def positive_minutes(text: str) -> float:
    """argparse type for `--minutes`: a positive, finite number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of minutes (e.g. --minutes 10)") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a positive number of minutes (e.g. --minutes 10)")
    return value


def number_list(kind: type, lo: float, hi: float, example: str) -> Callable[[str], list]:
    """argparse type: a comma-separated list of numbers within [lo, hi] (a one-line error otherwise)."""
    def parse(text: str) -> list:
        try:
            values = [kind(v) for v in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers (e.g. {example})") \
                from None
        if not all(lo <= v <= hi for v in values):
            raise argparse.ArgumentTypeError(f"{text}: each value must be within {lo:g}..{hi:g} (e.g. {example})")
        return values
    return parse


def one_number(kind: type, lo: float, hi: float, example: str) -> Callable[[str], Any]:
    """argparse type: one number within [lo, hi]."""
    listed = number_list(kind, lo, hi, example)

    def parse(text: str) -> Any:
        values = listed(text)
        if len(values) != 1:
            raise argparse.ArgumentTypeError(f"{text}: one number, please (e.g. {example})")
        return values[0]
    return parse


def size_wh(text: str) -> tuple[int, int]:
    """argparse type for a size WxH (e.g. --pane 1600x800), both sides 16..8192."""
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size WxH (e.g. --pane 1600x800)") from None
    if not (16 <= w <= 8192 and 16 <= h <= 8192):
        raise argparse.ArgumentTypeError(f"{text}: both sides must be within 16..8192 (e.g. --pane 1600x800)")
    return w, h


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


class OneLineParser(argparse.ArgumentParser):
    """argparse's errors as one line naming the cause and where to read the fix (exit 2, no usage dump)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")
