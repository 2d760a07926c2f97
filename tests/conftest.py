"""Shared test set-up: offscreen Qt, and small factories for configs and messages."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest

from teleop.config import load_config


@pytest.fixture
def cfg():
    return load_config(None)


def ms(x: float) -> int:
    """Milliseconds to nanoseconds: tests speak in ms, the code in ns."""
    return int(x * 1_000_000)
