"""Hostile bytes at the bedside: ≥100,000 generated inputs through decode-and-validate, zero crashes."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bedside.agent import BedsideAgent
from transport import codec
from transport.messages import N_ARMS, AckStatus, CartesianSetpoint, ConsoleFlags, Enable, ServoCp

HERE = Path(__file__).parent
FUZZ_RUNS = 100_000


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris is not installed")
def test_atheris_coverage_guided_fuzz_of_the_bedside_path(tmp_path):
    out = subprocess.run(
        [sys.executable, str(HERE / "fuzz_bedside.py"), f"-runs={FUZZ_RUNS}", "-max_len=600", "-seed=1",
         f"-artifact_prefix={tmp_path}/"],
        capture_output=True, text=True, timeout=600, cwd=HERE.parent,
    )
    tail = out.stderr[-3000:]
    assert out.returncode == 0, tail
    assert f"Done {FUZZ_RUNS} runs" in out.stderr, tail


def _valid_servo(epoch: int, seq: int, t: int) -> bytes:
    home = CartesianSetpoint((0.08, 0.0, -0.1))
    arms = (home, CartesianSetpoint((-0.08, 0.0, -0.1)), CartesianSetpoint((-0.06, 0.08, -0.1)),
            CartesianSetpoint((0.0, -0.06, -0.04)))
    assert len(arms) == N_ARMS
    return codec.encode(ServoCp(epoch, seq, t, ConsoleFlags.OPERATOR_PRESENT, 0b011, arms))


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_mutated_commands_never_crash_and_never_move_without_an_applied_ack(cfg, data):
    agent = BedsideAgent(cfg.bedside, 0, first_epoch=5)
    # enabled by the connection the frames come from, as surgeon:a: only its frames may ever apply
    ack = codec.decode(agent.on_message(0, b"c", codec.encode(Enable(0, 1, 0)), "surgeon:a")[0].data)
    raw = bytearray(_valid_servo(ack.epoch, 2, 1000))
    for _ in range(data.draw(st.integers(0, 6))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    frame = bytes(raw[:cut]) + data.draw(st.binary(max_size=64))
    user = data.draw(st.sampled_from(["surgeon:a", "monitor:b", "qa:c", "unknown"]))
    before = [a.setpoint for a in agent.arms]
    replies = agent.on_message(2000, b"c", frame, user)
    applied = bool(replies) and codec.decode(replies[0].data).status is AckStatus.APPLIED
    if not applied:
        assert [a.setpoint for a in agent.arms] == before
    if applied:
        assert user == "surgeon:a"
