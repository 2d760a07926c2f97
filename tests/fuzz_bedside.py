"""atheris harness: the bedside's decode-and-validate path (BedsideAgent.on_message) on arbitrary input.

Input: byte 0 picks the sender's role, the rest is the frame. The agent holds an open session, so frames
that decode reach the epoch/sequence/age/limit checks too. Invariants: no exception escapes; an arm's
setpoint changes only when the agent answered APPLIED; nothing but a surgeon's frame is ever APPLIED.
Run: python tests/fuzz_bedside.py -runs=100000 (exit status 0 = no crash).
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from base.config import load_config
    from bedside.agent import BedsideAgent
    from transport import codec
    from transport.messages import AckStatus, Enable

ROLES = ("surgeon:fuzz", "monitor:fuzz", "qa:fuzz", "unknown")
_agent = BedsideAgent(load_config(None, ["security.insecure=true"]).bedside, 0, first_epoch=7)
_now = [0]
_agent.on_message(0, b"fuzz", codec.encode(Enable(0, 1, 0)), "surgeon:fuzz")


def one_input(data: bytes) -> None:
    if not data:
        return
    _now[0] += 1_000_000
    user = ROLES[data[0] % len(ROLES)]
    before = [a.setpoint for a in _agent.arms]
    replies = _agent.on_message(_now[0], b"fuzz", data[1:], user)
    _agent.tick(_now[0])
    applied = replies and codec.decode(replies[0].data).status is AckStatus.APPLIED
    if applied and not user.startswith("surgeon"):
        raise AssertionError(f"{user} frame applied")
    if not applied and [a.setpoint for a in _agent.arms] != before and _agent.state.name == "ENABLED":
        raise AssertionError("an arm moved without an APPLIED ack")
    if _agent.state.name != "ENABLED" and not _agent.estop:
        _agent.on_message(_now[0], b"fuzz", codec.encode(Enable(0, 1, _now[0])), "surgeon:fuzz")


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
