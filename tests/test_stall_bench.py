"""The pure parts of issue #19's stall hunt: reading a stall file, saying what a stall was, which freezes are
unexplained, judging the targets (teleop/bench/stall.py); the ZAP reply and the refusal log's rate
(transport/security.py); logging that never waits for its stream (base/runtime.py). No timing asserts."""

from __future__ import annotations

import logging
import logging.handlers
import os
import threading

import zmq
from zmq.utils import z85

from base import runtime
from teleop.bench.stall import (
    classify_stall,
    judge,
    mark_shared,
    parse_stall_file,
    stall_causes,
    stall_entry,
    unexplained_freezes,
)
from transport.security import ZAP_VERSION, RefusalLog, zap_reply

WAKE = """bedside loop: a tick of 13.6 ms (bound 10 ms); slowest step wake 12.6 ms
t_ns=3786100406706

Thread 0x00007fa0b4ffa6c0 (most recent call first):
  File "/py/threading.py", line 331 in wait
  File "/work/main/bedside/arm.py", line 342 in _watch

Thread 0x00007fa0b67fd6c0 (most recent call first):
  File "/py/selectors.py", line 245 in register
  File "/venv/zmq/asyncio.py", line 150 in _init_io_state

Current thread 0x00007fa0db84cb80 (most recent call first):
  File "/venv/zmq/sugar/socket.py", line 813 in recv_multipart
  File "/work/main/bedside/server.py", line 271 in run
"""

STEP = """bedside loop: a tick of 12683.2 ms (bound 10 ms); slowest step receive 12681.7 ms; 14 more over the bound
t_ns=9387229734218

Thread 0x00007fc6365fd6c0 (most recent call first):
  File "/py/logging/__init__.py", line 1113 in emit
  File "/work/main/transport/security.py", line 281 in callback

Current thread 0x00007fc65b5ebb80 (most recent call first):
  File "/py/logging/__init__.py", line 927 in acquire
  File "/work/main/safety/statemachine.py", line 130 in fire
"""


def test_a_stall_file_reads_back_with_its_figures_and_threads():
    s = parse_stall_file("/out/stalls/bedside-20261201-232419-2640-1.txt", WAKE)
    assert (s.role, s.tick_ms, s.bound_ms, s.step, s.step_ms, s.t_ns) == ("bedside", 13.6, 10.0, "wake", 12.6,
                                                                          3786100406706)
    assert [t[1] for t in s.threads] == [False, False, True]
    assert s.threads[2][2][0] == "recv_multipart (socket.py:813)"


def test_a_late_wake_names_the_threads_that_were_in_python_and_a_blocked_step_its_call():
    wake = classify_stall(parse_stall_file("x", WAKE))
    assert wake["kind"] == "wake" and wake["explained"]
    assert wake["running"] == ["register (selectors.py:245) <- _init_io_state (asyncio.py:150)"]  # not the waiter
    step = classify_stall(parse_stall_file("x", STEP))
    assert step["kind"] == "step" and step["blocked_call"] == "acquire (__init__.py:927)"
    assert step["running"] == ["emit (__init__.py:1113) <- callback (security.py:281)"]
    assert stall_causes([wake, step, wake])["register (selectors.py:245) <- _init_io_state (asyncio.py:150)"] == 2


def test_a_dump_without_the_loop_thread_is_not_explained():
    text = WAKE.replace("Current thread", "Thread")
    assert classify_stall(parse_stall_file("x", text)) == {
        "kind": "no stacks", "blocked_call": None, "running": ["register (selectors.py:245) <- _init_io_state "
                                                               "(asyncio.py:150)"], "explained": False}


def test_stalls_of_two_processes_at_once_are_the_machines():
    a = stall_entry(parse_stall_file("/s/bedside-20261202-005403-32044-31.txt", WAKE))
    b = stall_entry(parse_stall_file("/s/console-20261202-005403-32079-1.txt",
                                     WAKE.replace("bedside loop", "console loop").replace("t_ns=3786100406706",
                                                                                          "t_ns=3786101000000")))
    c = stall_entry(parse_stall_file("/s/bedside-20261202-005403-32044-32.txt",
                                     WAKE.replace("t_ns=3786100406706", "t_ns=3799000000000")))
    mark_shared([a, b, c], [])
    assert a["pid"] == 32044 and a["machine"] and b["machine"] and a["shared"] == ["console:32079"]
    assert not c["machine"]  # alone, and its own process's earlier stall does not count
    mark_shared([c], [{"t_ns": 3799000001000, "gap_ms": 20.0, "steal_jiffies": {"cpu0": 2, "cpu1": 1}}])
    assert c["machine"] and c["shared"] == ["probe 20.0 ms (steal 3 jiffies)"]


def test_only_holds_no_one_asked_for_are_unexplained_and_each_names_the_stall_before_it():
    stall = {"role": "bedside", "t_ns": 1_000_000_000, "file": "/s/b-1.txt", "machine": True}
    freezes = [{"reason": "CONSOLE_REQUEST", "t_ns": 5}, {"reason": "ESTOP", "t_ns": 6},
               {"reason": "LINK_LOST", "t_ns": 1_050_000_000, "text": "no valid command for 52 ms"},
               {"reason": "FAULT", "t_ns": 9_000_000_000}]
    out = unexplained_freezes(freezes, [stall])
    assert [f["reason"] for f in out] == ["LINK_LOST", "FAULT"]
    assert out[0]["after_stall"] == "/s/b-1.txt" and out[0]["after_machine_stall"]
    assert out[1]["after_stall"] is None


def test_targets_are_met_only_with_figures_under_them():
    ok = {"bedside_tick_ms": {"max": 9.9}, "engine_tick_ms": {"max": 10.0}, "unexplained_freezes": 0}
    assert judge(ok)["all"] == "met"
    assert judge({**ok, "bedside_tick_ms": {"max": 10.1}})["bedside_tick_max_le_10ms"] == "missed"
    assert judge({**ok, "engine_tick_ms": {"max": None}})["all"] == "missed"  # the loop never ran
    assert judge({**ok, "unexplained_freezes": 1})["unexplained_freezes_0"] == "missed"


# ---------------------------------------------------------------------------------------------- ZAP


def _request(domain: bytes, key: bytes, mechanism: bytes = b"CURVE") -> list[bytes]:
    return [ZAP_VERSION, b"7", domain, b"127.0.0.1", b"", mechanism, key]


def test_the_zap_reply_admits_only_what_the_policy_names_and_only_curve():
    pub, _ = zmq.curve_keypair()
    raw = z85.decode(pub)
    seen = []

    def decide(domain: str, key: str) -> str | None:
        seen.append((domain, key))
        return "surgeon:s" if domain == "control" else None

    reply, ok = zap_reply(_request(b"control", raw), decide)
    assert ok and reply == [ZAP_VERSION, b"7", b"200", b"OK", b"surgeon:s", b""]
    assert seen == [("control", pub.decode())]
    reply, ok = zap_reply(_request(b"monitoring", raw), decide)
    assert not ok and reply[2] == b"400"
    assert zap_reply(_request(b"control", b"", b"NULL")[:6], decide)[0][2] == b"400"
    assert zap_reply(_request(b"control", raw[:31]), decide)[0][2] == b"400"
    assert zap_reply([b"2.0", b"7"], decide)[0][:3] == [ZAP_VERSION, b"7", b"500"]
    assert zap_reply([], decide)[0][2] == b"500"
    assert len(seen) == 2  # nothing malformed reached the policy


def test_refused_handshakes_log_at_most_a_line_a_second_and_say_how_many_more():
    r = RefusalLog(every_ns=1_000_000_000)
    assert r.line(0, "refused a") == "refused a"
    assert [r.line(t, f"refused {t}") for t in range(1, 200)] == [None] * 199  # a storm of new keys
    assert r.line(1_000_000_000, "refused b") == "refused b (199 more refused handshakes not logged since the " \
                                                 "last line)"
    assert r.line(2_500_000_000, "refused c") == "refused c"


# ---------------------------------------------------------------------------------------------- logging


def test_logging_never_waits_for_a_stream_nobody_reads():
    """A pipe nobody reads: every log call returns (the writer thread waits, then the queue drops and counts)."""
    r, w = os.pipe()
    stream = os.fdopen(w, "w", buffering=1)
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    qh = None
    try:
        runtime.queued_logging(logging.INFO, "%(message)s", stream)
        qh = next(h for h in root.handlers if isinstance(h, logging.handlers.QueueHandler))
        done = threading.Event()

        def flood() -> None:
            for i in range(runtime.LOG_QUEUE_RECORDS + 5_000):  # far more than the pipe and the queue hold
                logging.getLogger("t").warning("line %d %s", i, "x" * 100)
            done.set()

        threading.Thread(target=flood, daemon=True).start()
        assert done.wait(60), "a log call waited for the stream"
        assert qh.dropped > 0
        assert runtime._log_writer is not None and runtime._log_writer._thread.name == "log-writer"
    finally:
        drain = threading.Thread(target=lambda: [None for _ in iter(lambda: os.read(r, 65536), b"")], daemon=True)
        drain.start()  # now someone reads: the writer empties the queue and stops
        for _ in range(600):
            if qh is None or qh.queue.empty():
                break
            threading.Event().wait(0.1)
        runtime._stop_log_writer()
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])
        stream.close()
        drain.join(10)
        os.close(r)
