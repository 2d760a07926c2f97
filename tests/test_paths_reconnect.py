"""Issue #15's rare REJECTED_SEQUENCE, with real ZeroMQ sockets (loopback, no namespaces, no CURVE): a path's
connection that drops and comes back starts mid-stream. The console's DEALERs are IMMEDIATE (transport/zmqlink.py),
so while path 0 reconnects its sends fail and those commands go out on path 1 only; the new connection's first
frame is newer than them. A bedside that wakes late finds both paths' frames waiting and reads path 0 first
(bedside/server.py): the commands only path 1 carried arrive after a newer one was applied. They are no replays
(nothing delivered them before): answered SUPERSEDED, never refused, never applied; the same bytes again on
either path are refused. The pure rule: tests/test_paths.py; the cable cuts: tests/test_netns_paths.py."""

from __future__ import annotations

import dataclasses
import time

import pytest
import zmq

from base.config import BedsideConfig
from base.procs import free_ports
from bedside.agent import BedsideAgent
from transport import codec
from transport.messages import AckStatus, ConsoleFlags, Enable, ServoCp
from transport.paths import ack_status
from transport.zmqlink import control_client, control_server

WAIT_S = 10.0
"""The longest any condition is waited for (a loaded machine): a bound, never a figure."""


class Link:
    """Two paths, console DEALERs (one routing id) to bedside ROUTERs, and the agent fed as the server feeds it."""

    def __init__(self, ctx: zmq.Context) -> None:
        self.ctx = ctx
        self.eps = [f"tcp://127.0.0.1:{p}" for p in free_ports(2)]
        self.routers = [control_server(ctx, e, None) for e in self.eps]
        self.dealers = [control_client(ctx, e, None, routing_id=b"c-reconnect-test") for e in self.eps]
        # staleness is not under test: a loaded machine's late wake must not make it a refusal
        self.agent = BedsideAgent(dataclasses.replace(BedsideConfig(), max_command_age_ms=1000.0), 0, first_epoch=7)
        self.agent.use_paths(2)
        self.seq = 0
        self.epoch = 0
        self.answers: list[tuple[int, int, AckStatus | None]] = []

    def frame(self) -> bytes:
        self.seq += 1
        home = tuple(a.setpoint_cp() for a in self.agent.arms)
        return codec.encode(ServoCp(self.epoch, self.seq, time.monotonic_ns(), ConsoleFlags.OPERATOR_PRESENT, 0b01,
                                    home))

    def send(self, data: bytes) -> list[int]:
        """The console's `_send_paths`: the same bytes on every path; the paths that took them."""
        took = []
        for k, d in enumerate(self.dealers):
            try:
                d.send(data, zmq.NOBLOCK)
                took.append(k)
            except zmq.Again:
                pass
        return took

    def drain(self) -> None:
        """Every path in turn, path 0 first, as bedside/server.py reads them."""
        for k, r in enumerate(self.routers):
            while not r.closed:
                try:
                    peer, data = r.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                out = self.agent.on_path_message(time.monotonic_ns(), k, peer, data)
                self.answers.append((k, codec.decode(data).seq, AckStatus(ack_status(out[0].data)) if out else None))

    def until(self, what, step) -> None:
        end = time.monotonic() + WAIT_S
        while not what():
            assert time.monotonic() < end, "the link did not get there"
            step()
            time.sleep(0.001)

    def close(self) -> None:
        for s in (*self.routers, *self.dealers):
            s.close(0)


@pytest.fixture
def link():
    ctx = zmq.Context()
    lk = Link(ctx)
    yield lk
    lk.close()
    ctx.term()


def test_commands_only_the_other_path_carried_while_a_path_reconnected_are_superseded_not_refused(link):
    w = zmq.Poller()
    for d in link.dealers:
        w.register(d, zmq.POLLOUT)
    link.until(lambda: len(dict(w.poll(0))) == 2, lambda: None)  # IMMEDIATE: writable once connected
    link.seq += 1
    assert link.send(codec.encode(Enable(0, link.seq, time.monotonic_ns()))) == [0, 1]
    link.until(lambda: link.agent.epoch != 0 and link.answers, link.drain)
    link.epoch = link.agent.epoch
    for _ in range(20):  # both paths carry the session
        assert link.send(link.frame()) == [0, 1]
        time.sleep(0.001)
        link.drain()
    # path 0's bedside end goes (as its heartbeat timeout closes it); the console notices, its sends on path 0 fail
    link.routers[0].close(0)
    end = time.monotonic() + WAIT_S
    while link.send(f := link.frame()) != [1]:
        assert time.monotonic() < end, "path 0's loss went unnoticed"
        link.drain()
        time.sleep(0.001)
    # from here the bedside wakes late: commands go out on path 1 only while path 0 reconnects to its restored end
    only_path1 = {link.seq: f}
    link.routers[0] = control_server(link.ctx, link.eps[0], None)
    while (took := link.send(f := link.frame())) != [0, 1]:
        assert took in ([1], []) and time.monotonic() < end, took
        if took:  # else path 1's queue is full too (a slow reconnect): sent on no path, as the console counts it
            only_path1[link.seq] = f
        time.sleep(0.001)
    first_on_path0 = link.seq  # the new connection's first frame
    link.answers.clear()
    assert link.routers[0].poll(int(WAIT_S * 1000), zmq.POLLIN)  # the bedside wakes with both paths' frames waiting
    link.until(lambda: any(k == 1 and s == first_on_path0 for k, s, _ in link.answers), link.drain)
    c = link.agent.counters
    # path 1's frames older than path 0's first: those sent on path 1 only, and any lost in path 0's dying connection
    statuses = {s: st for k, s, st in link.answers if k == 1 and s < first_on_path0}
    assert set(only_path1) <= set(statuses), (list(only_path1), link.answers)
    assert set(statuses.values()) == {AckStatus.SUPERSEDED}, link.answers
    assert c["rejected"] == 0 and c["superseded_path1"] == len(statuses), dict(c)
    assert (0, first_on_path0, AckStatus.APPLIED) in link.answers and (1, first_on_path0, None) in link.answers
    # the same bytes again on either path (the controller's own connections): replays, refused; nothing moved
    applied = c["applied"]
    replay = only_path1[max(only_path1)]
    link.answers.clear()
    for d in link.dealers:
        d.send(replay)
    link.until(lambda: len(link.answers) == 2, link.drain)
    assert sorted(link.answers) == [(0, max(only_path1), AckStatus.REJECTED_SEQUENCE),
                                    (1, max(only_path1), AckStatus.REJECTED_SEQUENCE)]
    assert c["applied"] == applied and c["superseded_path1"] == len(statuses) and not link.agent.freezes
