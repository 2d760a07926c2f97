"""The bedside's gate for the controller's motion commands: only the current session's newest fresh command passes.

Pure. A command passes when it carries the epoch the bedside granted at the last ENABLE, a sequence number
higher than that of any command accepted in that epoch, and has not waited in a queue longer than `max_age_ns`
(measured against the best recent one-way transit of the accepted commands, transport.clock.DelayBaseline, so
the two hosts' clocks need not agree). Closing the gate (watchdog, e-stop, disable) zeroes the epoch:
everything queued behind it, however fresh it looks, is then refused until a new ENABLE hands out a new epoch.

Judging and accepting are apart so that nothing but an applied command moves the gate: `judge` changes
nothing, `accept` runs once the command was applied. The caller judges only the controller's commands (the
connection that enabled, docs/protocol.md "Check order at the bedside"), so no other peer's frame, and no
refused frame of the controller's own, can move the sequence mark or the baseline its next commands are
judged by.
"""

from __future__ import annotations

from transport.clock import DelayBaseline
from transport.messages import AckStatus, Message

NO_EPOCH = 0
_APPLIED = AckStatus.APPLIED
"""Read once: `judge` answers it for every command at 1 kHz, and reading a member off an Enum class costs ~100 ns."""


class CommandGate:
    def __init__(self, max_age_ns: int) -> None:
        self.max_age_ns = max_age_ns
        self.epoch = NO_EPOCH
        self.last_seq = -1
        self.baseline = DelayBaseline()

    def open(self, epoch: int, rx_ns: int, enable: Message, *, new_controller: bool) -> None:
        """A new session, granted by the controller's `enable` received at `rx_ns`. `new_controller`: another
        connection now controls; the baseline held the old one's clock and link, so it starts again. Either way
        the granted ENABLE is the session's first accepted frame and its transit the first sample: the session's
        first command, sent only after the grant reached the console, is judged against it, so a link that
        stalls right after the grant and then delivers its queue is refused as stale."""
        if epoch == NO_EPOCH:
            raise ValueError("epoch 0 means 'no session' and cannot be granted")
        self.epoch = epoch
        self.last_seq = -1
        if new_controller:
            self.baseline = DelayBaseline()
        self.baseline.add(rx_ns, enable.send_ns)

    def close(self) -> None:
        self.epoch = NO_EPOCH

    def judge(self, rx_ns: int, msg: Message) -> AckStatus:
        """APPLIED if the command may move an arm, else the rejection. Changes nothing."""
        if self.epoch == NO_EPOCH:
            return AckStatus.REJECTED_NOT_ENABLED
        if msg.epoch != self.epoch:
            return AckStatus.REJECTED_EPOCH
        if msg.seq <= self.last_seq:
            return AckStatus.REJECTED_SEQUENCE
        if self.baseline.queued_ns(rx_ns, msg.send_ns) > self.max_age_ns:
            return AckStatus.REJECTED_STALE
        return _APPLIED

    def accept(self, rx_ns: int, msg: Message) -> None:
        """`msg` passed `judge` and was applied: raise the sequence mark to it and feed its transit to the baseline."""
        self.last_seq = msg.seq
        self.baseline.add(rx_ns, msg.send_ns)
