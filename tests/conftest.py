"""Shared test set-up: offscreen Qt, and small factories for configs and messages."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Every role a test starts records by default (docs/recording.md): into a throw-away state directory, never ~.
os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="teleop-test-state-")

import pytest

from base.config import load_config
from transport.security import throwaway_keys

atexit.register(shutil.rmtree, os.environ["XDG_STATE_HOME"], ignore_errors=True)


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
