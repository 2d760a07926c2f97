"""Shared test set-up: offscreen Qt, and small factories for configs and messages."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest

from teleop.config import load_config
from teleop.procs import throwaway_keys


@pytest.fixture(scope="session")
def key_overrides(tmp_path_factory) -> list[str]:
    """Throw-away CurveZMQ keys for the whole run: tests exercise security as deployed, never bypass it."""
    return throwaway_keys(tmp_path_factory.mktemp("keys") / "k")


@pytest.fixture
def cfg(key_overrides):
    return load_config(None, key_overrides)


def ms(x: float) -> int:
    """Milliseconds to nanoseconds: tests speak in ms, the code in ns."""
    return int(x * 1_000_000)
