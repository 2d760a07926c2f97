"""Pure safety pieces under injected time: the watchdog, the bedside command gate, the clock estimators."""

from __future__ import annotations

from conftest import ms

from safety.command_gate import CommandGate
from safety.watchdog import Watchdog
from transport.clock import DelayBaseline, OffsetEstimator
from transport.messages import AckStatus, Enable, Ping


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


def _open(g: CommandGate, epoch: int, rx_ns: int, send_ns: int, new_controller: bool = True) -> None:
    """A session granted by an ENABLE sent at `send_ns` (the console's clock) and received at `rx_ns`."""
    g.open(epoch, rx_ns, Enable(0, 0, send_ns), new_controller=new_controller)


def _check(g: CommandGate, rx_ns: int, msg: Ping) -> AckStatus:
    """Judge, and accept what passes, as the bedside does for a command it then applies."""
    status = g.judge(rx_ns, msg)
    if status is AckStatus.APPLIED:
        g.accept(rx_ns, msg)
    return status


def test_gate_refuses_everything_without_a_session():
    g = CommandGate(ms(30))
    assert _check(g, ms(1), _msg(0, 1, ms(1))) is AckStatus.REJECTED_NOT_ENABLED


def test_gate_refuses_wrong_epoch_duplicates_and_out_of_order():
    g = CommandGate(ms(30))
    _open(g, 42, 0, 0)
    assert _check(g, ms(1), _msg(41, 1, ms(1))) is AckStatus.REJECTED_EPOCH
    assert _check(g, ms(2), _msg(42, 5, ms(2))) is AckStatus.APPLIED
    assert _check(g, ms(3), _msg(42, 5, ms(3))) is AckStatus.REJECTED_SEQUENCE  # duplicate
    assert _check(g, ms(4), _msg(42, 4, ms(4))) is AckStatus.REJECTED_SEQUENCE  # out of order
    assert _check(g, ms(5), _msg(42, 6, ms(5))) is AckStatus.APPLIED


def test_gate_refuses_stale_commands_from_a_delivered_backlog():
    g = CommandGate(ms(30))
    offset = 123_456_789  # the console's clock is unrelated to ours
    _open(g, 1, ms(0.2), -offset)
    for i in range(1, 100):  # a healthy stream: 0.2 ms transit
        assert _check(g, ms(i) + ms(0.2), _msg(1, i, ms(i) - offset)) is AckStatus.APPLIED
    # a 2 s stall, then the queued commands arrive in a burst
    burst_rx = ms(2100)
    assert _check(g, burst_rx, _msg(1, 100, ms(100) - offset)) is AckStatus.REJECTED_STALE
    assert _check(g, burst_rx, _msg(1, 101, ms(2070) - offset)) is AckStatus.APPLIED  # 30 ms: at the limit
    assert _check(g, burst_rx, _msg(1, 102, ms(2060) - offset)) is AckStatus.REJECTED_STALE  # 40 ms queued
    assert _check(g, burst_rx, _msg(1, 101, ms(2099) - offset)) is AckStatus.REJECTED_SEQUENCE


def test_the_first_command_of_a_session_is_judged_against_the_granted_enable():
    """A link that stalls right after the grant and then delivers its queue: the session's first command is
    already refused as stale, though no command of this controller was accepted before it."""
    g = CommandGate(ms(30))
    offset = 987_654_321
    _open(g, 3, ms(1000), ms(1000) - offset)  # transit 0 on the console's clock
    assert _check(g, ms(1500), _msg(3, 1, ms(1010) - offset)) is AckStatus.REJECTED_STALE  # queued 490 ms
    assert _check(g, ms(1500), _msg(3, 2, ms(1490) - offset)) is AckStatus.APPLIED  # 10 ms


def test_closing_the_gate_refuses_the_old_epoch_even_if_fresh():
    g = CommandGate(ms(30))
    _open(g, 9, 0, 0)
    assert _check(g, ms(1), _msg(9, 1, ms(1))) is AckStatus.APPLIED
    g.close()
    assert _check(g, ms(2), _msg(9, 2, ms(2))) is AckStatus.REJECTED_NOT_ENABLED
    _open(g, 10, ms(2), ms(2), new_controller=False)
    assert _check(g, ms(3), _msg(9, 3, ms(3))) is AckStatus.REJECTED_EPOCH


def test_judging_changes_nothing_only_an_accepted_command_moves_the_gate():
    """A refused command, or one judged but never applied (a limit refused it later), leaves the sequence mark and
    the transit baseline as they were: the controller's next command is judged as if it had never come."""
    g = CommandGate(ms(30))
    _open(g, 7, ms(5), ms(5))  # transit 0
    assert _check(g, ms(10), _msg(7, 1, ms(10))) is AckStatus.APPLIED
    assert g.judge(ms(11), _msg(7, 50, ms(11) + ms(500))) is AckStatus.APPLIED  # "from the future": judged only
    assert g.judge(ms(12), _msg(7, 2, ms(12) - ms(40))) is AckStatus.REJECTED_STALE
    assert g.judge(ms(13), _msg(7, 2, ms(13) - ms(30))) is AckStatus.APPLIED  # seq 50 never lowered the baseline
    assert g.last_seq == 1  # … nor raised the mark
    assert g.judge(ms(14), _msg(7, 1, ms(14))) is AckStatus.REJECTED_SEQUENCE  # an accepted command did


def test_a_new_controller_starts_a_new_baseline_the_same_one_keeps_its_own():
    """Another connection's clock is not the old controller's: its commands are not refused as stale because the
    old one's (receive − send) was smaller. The same connection re-enabling keeps its baseline (a link still
    congested after a freeze is still refused)."""
    g = CommandGate(ms(30))
    _open(g, 1, ms(5), ms(5))
    assert _check(g, ms(10), _msg(1, 1, ms(10))) is AckStatus.APPLIED  # transit 0 on this console's clock
    _open(g, 2, ms(20), ms(20) - ms(100), new_controller=False)  # its link is now 100 ms slower
    assert _check(g, ms(21), _msg(2, 1, ms(21) - ms(100))) is AckStatus.REJECTED_STALE
    _open(g, 3, ms(30), ms(30) - ms(100))  # another console, whose clock runs 100 ms behind
    assert _check(g, ms(31), _msg(3, 1, ms(31) - ms(100))) is AckStatus.APPLIED
    assert _check(g, ms(32), _msg(3, 2, ms(32) - ms(140))) is AckStatus.REJECTED_STALE  # 40 ms queued on its link


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
