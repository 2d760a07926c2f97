"""The bedside's gate for incoming motion: only the current session's newest fresh command passes.

Pure. A command passes when it carries the epoch the bedside granted at the last ENABLE, a sequence number
higher than any seen in that epoch, and has not waited in a queue longer than `max_age_ns` (measured
against the best recent one-way transit, transport.clock.DelayBaseline, so the two hosts' clocks need not
agree). Closing the gate (watchdog, e-stop, disable) zeroes the epoch: everything queued behind it,
however fresh it looks, is then refused until a new ENABLE hands out a new epoch.
"""

from __future__ import annotations

from transport.clock import DelayBaseline
from transport.messages import AckStatus, Message

NO_EPOCH = 0


class CommandGate:
    def __init__(self, max_age_ns: int) -> None:
        self.max_age_ns = max_age_ns
        self.epoch = NO_EPOCH
        self.last_seq = -1
        self.baseline = DelayBaseline()
        self.last_excess_ns = 0

    def open(self, epoch: int) -> None:
        if epoch == NO_EPOCH:
            raise ValueError("epoch 0 means 'no session' and cannot be granted")
        self.epoch = epoch
        self.last_seq = -1

    def close(self) -> None:
        self.epoch = NO_EPOCH

    def observe(self, rx_ns: int, msg: Message) -> int:
        """Feed the transit baseline with any decoded message; returns its queueing delay (ns)."""
        self.last_excess_ns = self.baseline.excess_ns(rx_ns, msg.send_ns)
        return self.last_excess_ns

    def check(self, rx_ns: int, msg: Message) -> AckStatus:
        """APPLIED if the command may move an arm, else the rejection. Feeds the baseline itself."""
        excess = self.observe(rx_ns, msg)
        if self.epoch == NO_EPOCH:
            return AckStatus.REJECTED_NOT_ENABLED
        if msg.epoch != self.epoch:
            return AckStatus.REJECTED_EPOCH
        if msg.seq <= self.last_seq:
            return AckStatus.REJECTED_SEQUENCE
        self.last_seq = msg.seq
        if excess > self.max_age_ns:
            return AckStatus.REJECTED_STALE
        return AckStatus.APPLIED
