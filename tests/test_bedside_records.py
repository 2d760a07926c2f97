"""What the bedside's socket loop (bedside/server.py) used to decide itself and now asks the pure agent: freeze
records for the event log, recording and summary; counters it reports; which keys are revoked. No sockets, no
sleeps: a fake clock in ms."""

from __future__ import annotations

from conftest import ms

from bedside.agent import REVOCATION_REFRESH_NS, BedsideAgent
from transport import codec
from transport.messages import AckStatus, Enable, EventKind, Reason

PEER = b"console-1"


def _frozen_agent(cfg) -> BedsideAgent:
    """Enabled at t = 0, then silent until the watchdog holds the arms."""
    agent = BedsideAgent(cfg.bedside, 0, first_epoch=100)
    ack = codec.decode(agent.on_message(0, PEER, codec.encode(Enable(0, 1, 0)))[0].data)
    assert ack.status is AckStatus.ENABLED
    agent.check_watchdog(ms(cfg.bedside.first_command_ms + 5))
    return agent


def test_a_freeze_is_drained_once_and_kept_for_the_summary(cfg) -> None:
    agent = _frozen_agent(cfg)
    at = ms(cfg.bedside.first_command_ms + 5)
    (f,) = agent.drain_freezes()
    assert agent.drain_freezes() == []  # the event log and the recording get each freeze once
    assert f.reason is Reason.LINK_LOST
    assert f.record() == {"t_ns": at, "reason": "LINK_LOST", "last_valid_ns": 0, "latency_ms": at / 1e6,
                          "text": f.text}
    assert list(f.record()) == ["t_ns", "reason", "last_valid_ns", "latency_ms", "text"]  # teleop.Freeze order
    summary = agent.summary()
    assert list(summary) == ["counters", "freezes", "state"]
    assert summary["freezes"] == [{"reason": "LINK_LOST", "latency_ms": at / 1e6, "text": f.text}]
    assert summary["state"] == "PAUSED" and summary["counters"]["freezes"] == 1


def test_the_next_freeze_is_the_only_new_one(cfg) -> None:
    agent = _frozen_agent(cfg)
    agent.drain_freezes()
    agent.raise_estop(ms(500), "local")
    (f,) = agent.drain_freezes()
    assert f.reason is Reason.ESTOP and len(agent.freezes) == 2


def test_what_the_socket_layer_reports_is_counted(cfg) -> None:
    agent = BedsideAgent(cfg.bedside, 0)
    agent.on_bad_envelope()
    agent.on_ack_dropped()
    agent.on_ack_dropped()
    assert agent.counters["decode_errors"] == 1 and agent.counters["multipart_frames"] == 1
    assert agent.counters["ack_dropped"] == 2


def test_auth_counters_are_running_totals_and_refusals_become_events(cfg) -> None:
    agent = BedsideAgent(cfg.bedside, 0)
    refusal = {"domain": "control", "why": "unknown key", "fingerprint": "ab:cd"}
    agent.on_auth_report(ms(1), [refusal], {"refused_handshakes": 1, "admitted_control": 2})
    agent.on_auth_report(ms(2), [], {"refused_handshakes": 1, "admitted_control": 3})
    assert agent.counters["refused_handshakes"] == 1  # replaced, not added up
    assert agent.counters["admitted_control"] == 3
    (ev,) = agent.drain_events()
    assert ev.kind is EventKind.REJECTION and ev.reason is Reason.SECURITY and ev.send_ns == ms(1)
    assert ev.text == "refused control connection: unknown key (key ab:cd)"


def test_revoked_keys_are_refused_and_reread_only_when_stale(cfg) -> None:
    agent = BedsideAgent(cfg.bedside, 0)
    assert agent.revocations_due(0)  # nothing read yet
    agent.set_revoked(ms(10), ["alice"])
    assert not agent.revocations_due(ms(10) + REVOCATION_REFRESH_NS)
    assert agent.revocations_due(ms(10) + REVOCATION_REFRESH_NS + 1)
    assert agent.refuse_revoked("surgeon:alice")
    assert not agent.refuse_revoked("surgeon:bob")
    assert agent.counters["revoked_messages"] == 1
    agent.set_revoked(ms(200), [])  # reinstated in the registry
    assert not agent.refuse_revoked("surgeon:alice")
    assert agent.counters["revoked_messages"] == 1
