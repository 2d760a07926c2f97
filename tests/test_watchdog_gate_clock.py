"""Pure safety pieces under injected time: the watchdog, the bedside command gate, the clock estimators."""

from __future__ import annotations

from conftest import ms

from safety.command_gate import CommandGate
from safety.watchdog import Watchdog
from transport.clock import DelayBaseline, OffsetEstimator
from transport.messages import AckStatus, Ping


def test_watchdog_trips_once_at_deadline_and_stays_tripped_until_rearmed():
    w = Watchdog(ms(50))
    assert w.check(ms(10_000)) is None  # not armed: nothing to guard
    w.arm(ms(0))
    w.feed(ms(10))
    assert w.check(ms(59.9)) is None
    trip = w.check(ms(60))
    assert trip is not None and trip.silence_ns == ms(50) and trip.last_feed_ns == ms(10)
    assert w.check(ms(61)) is None  # an edge, not a level
    w.feed(ms(62))  # traffic after the trip does not revive it
    assert w.tripped and w.deadline_ns() is None
    w.arm(ms(100))
    assert not w.tripped and w.deadline_ns() == ms(150)


def test_watchdog_ignores_time_going_backwards():
    w = Watchdog(ms(50))
    w.arm(ms(100))
    w.feed(ms(90))
    assert w.deadline_ns() == ms(150)


def _msg(epoch: int, seq: int, send_ns: int) -> Ping:
    return Ping(epoch, seq, send_ns)


def test_gate_refuses_everything_without_a_session():
    g = CommandGate(ms(30))
    assert g.check(ms(1), _msg(0, 1, ms(1))) is AckStatus.REJECTED_NOT_ENABLED


def test_gate_refuses_wrong_epoch_duplicates_and_out_of_order():
    g = CommandGate(ms(30))
    g.open(42)
    assert g.check(ms(1), _msg(41, 1, ms(1))) is AckStatus.REJECTED_EPOCH
    assert g.check(ms(2), _msg(42, 5, ms(2))) is AckStatus.APPLIED
    assert g.check(ms(3), _msg(42, 5, ms(3))) is AckStatus.REJECTED_SEQUENCE  # duplicate
    assert g.check(ms(4), _msg(42, 4, ms(4))) is AckStatus.REJECTED_SEQUENCE  # out of order
    assert g.check(ms(5), _msg(42, 6, ms(5))) is AckStatus.APPLIED


def test_gate_refuses_stale_commands_from_a_delivered_backlog():
    g = CommandGate(ms(30))
    g.open(1)
    offset = 123_456_789  # the console's clock is unrelated to ours
    for i in range(1, 100):  # a healthy stream: 0.2 ms transit
        assert g.check(ms(i) + ms(0.2), _msg(1, i, ms(i) - offset)) is AckStatus.APPLIED
    # a 2 s stall, then the queued commands arrive in a burst
    burst_rx = ms(2100)
    assert g.check(burst_rx, _msg(1, 100, ms(100) - offset)) is AckStatus.REJECTED_STALE
    assert g.check(burst_rx, _msg(1, 101, ms(2070) - offset)) is AckStatus.APPLIED  # 30 ms: at the limit
    assert g.check(burst_rx, _msg(1, 102, ms(2060) - offset)) is AckStatus.REJECTED_STALE  # 40 ms queued
    assert g.check(burst_rx, _msg(1, 101, ms(2099) - offset)) is AckStatus.REJECTED_SEQUENCE


def test_closing_the_gate_refuses_the_old_epoch_even_if_fresh():
    g = CommandGate(ms(30))
    g.open(9)
    assert g.check(ms(1), _msg(9, 1, ms(1))) is AckStatus.APPLIED
    g.close()
    assert g.check(ms(2), _msg(9, 2, ms(2))) is AckStatus.REJECTED_NOT_ENABLED
    g.open(10)
    assert g.check(ms(3), _msg(9, 3, ms(3))) is AckStatus.REJECTED_EPOCH


def test_offset_estimator_recovers_offset_and_prefers_least_delay():
    est = OffsetEstimator()
    true_offset = 5_000_000  # remote = local + 5 ms
    for i, extra in enumerate([3, 0, 7, 1]):  # one-way queueing (ms) on the outbound leg
        t1 = ms(100 * i)
        t2 = t1 + ms(1 + extra) + true_offset
        t3 = t2 + ms(0.05)
        t4 = t3 - true_offset + ms(1)
        est.add(t1, t2, t3, t4)
    best = est.best(ms(400))
    assert best is not None
    assert best.delay_ns == ms(2)
    assert best.offset_ns == true_offset
    assert est.add(ms(10), ms(5), ms(4), ms(11)) is None  # t3 < t2: impossible, refused


def test_delay_baseline_measures_queueing_not_offset():
    b = DelayBaseline()
    assert b.excess_ns(ms(10), ms(10) - 999_999_999) == 0
    assert b.excess_ns(ms(20), ms(19) - 999_999_999) == ms(1)


def test_first_command_of_a_session_gets_a_round_trip_of_grace():
    w = Watchdog(ms(50))
    w.arm(ms(0), first_timeout_ns=ms(2000))
    assert w.check(ms(1999)) is None  # the ack is still travelling over a long link
    w.feed(ms(600))  # first command, one satellite round trip later
    assert w.deadline_ns() == ms(650)  # from now on the normal 50 ms
    assert w.check(ms(650)) is not None
