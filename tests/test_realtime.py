"""Real-time scheduling of the two 1 kHz loops (docs/architecture.md, "Scheduling"; hazard row in docs/safety.md):
the priority is a validated key, refusal falls back with a warning, and a loop running SCHED_FIFO blocks
between ticks instead of spinning (a spinning FIFO loop would take a core from everything else)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

import pytest
from crossproc import Session

from base import runtime
from base.config import ConfigError, load_config

CAN_FIFO = hasattr(os, "SCHED_FIFO") and subprocess.run(
    [sys.executable, "-c", "import os; os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))"],
    capture_output=True).returncode == 0


@pytest.mark.parametrize("section", ["console", "bedside"])
def test_realtime_priority_is_a_validated_key(section):
    assert getattr(load_config(), section).realtime_priority == 10  # on by default
    assert getattr(load_config(None, [f"{section}.realtime_priority=0"]), section).realtime_priority == 0
    assert getattr(load_config(None, [f"{section}.realtime_priority=49"]), section).realtime_priority == 49
    for bad, words in (("50", "above the maximum 49"), ("-1", "below the minimum 0"), ("2.5", "expected int")):
        with pytest.raises(ConfigError, match=f"{section}.realtime_priority") as err:
            load_config(None, [f"{section}.realtime_priority={bad}"])
        assert words in str(err.value)


def test_priority_zero_changes_nothing(monkeypatch):
    monkeypatch.setattr(os, "sched_setscheduler", lambda *a: pytest.fail("must not be called"))
    assert runtime.realtime_scheduling(0, "test") == "normal"


def test_not_permitted_falls_back_to_normal_scheduling_with_a_warning(monkeypatch, caplog):
    def refuse(*_a):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    with caplog.at_level(logging.WARNING, logger="runtime"):
        assert runtime.realtime_scheduling(10, "bedside") == "normal (not permitted)"
    assert "SCHED_FIFO 10 not permitted" in caplog.text and "bedside" in caplog.text


@pytest.mark.skipif(not CAN_FIFO, reason="SCHED_FIFO not permitted here")
def test_fifo_for_the_loop_and_zmq_io_thread_and_children_start_normal():
    """In a child interpreter (pytest itself must stay time-shared): the calling thread and zmq's I/O thread
    become SCHED_FIFO; a forked child starts SCHED_OTHER (SCHED_RESET_ON_FORK: the video sender, recorders)."""
    code = """
import os, zmq
from base.runtime import realtime_scheduling, _zmq_io_threads
ctx = zmq.Context.instance(); s = ctx.socket(zmq.PUSH)
print(realtime_scheduling(7, "t"))
io = _zmq_io_threads()
assert io, "no zmq I/O thread found"
print(os.sched_getscheduler(0) & 0xff, os.sched_getparam(0).sched_priority,
      [os.sched_getscheduler(t) & 0xff for t in io])
pid = os.fork()
if pid == 0:
    os._exit(10 + (os.sched_getscheduler(0) & 0xff))
print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) - 10)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    done, policy, child = out.stdout.splitlines()
    assert done == "fifo:7"
    assert policy == f"{os.SCHED_FIFO} 7 [{os.SCHED_FIFO}]"
    assert int(child) == os.SCHED_OTHER


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def _cpu_s(pid: int) -> float:
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _policy(pid: int) -> int:
    return int(_stat(pid)[38]) & 0xFF  # field 41: policy


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_real_time_loops_block_between_ticks(tmp_path):
    """The mitigation of a runaway real-time loop: both loops sleep in their socket waits. Idle and while
    streaming at 1 kHz each uses well under a core of CPU time (a busy-wait would use all of one)."""
    s = Session(tmp_path)
    try:
        bed = s.start_bedside()
        time.sleep(0.5)
        c0, t0 = _cpu_s(bed.pid), time.monotonic()
        time.sleep(2.0)
        idle = (_cpu_s(bed.pid) - c0) / (time.monotonic() - t0)
        con = s.start_console()
        s.wait_engaged()
        b0, k0, t0 = _cpu_s(bed.pid), _cpu_s(con.pid), time.monotonic()
        time.sleep(3.0)
        dt = time.monotonic() - t0
        busy_bed, busy_con = (_cpu_s(bed.pid) - b0) / dt, (_cpu_s(con.pid) - k0) / dt
        if CAN_FIFO:
            assert "sched=fifo:10" in bed.ready
            assert _policy(bed.pid) == os.SCHED_FIFO and _policy(con.pid) == os.SCHED_FIFO
        assert idle < 0.25, idle
        assert busy_bed < 0.7 and busy_con < 0.8, (busy_bed, busy_con)
    finally:
        s.close()


def test_cpu_wake_latency_is_held_while_the_process_lives_and_refusal_is_a_warning(tmp_path, caplog):
    """The PM QoS request (bedside/console.cpu_wake_latency_us): -1 leaves the machine alone; a value is written as
    the kernel reads it (a native int) and the file stays open (closing it withdraws the request); a device that
    cannot be opened is a warning naming the fix, never an abort. The effect is measured by `teleop bench link`."""
    dev = tmp_path / "cpu_dma_latency"
    dev.write_bytes(b"")
    assert runtime.hold_cpu_wake_latency(-1, "bedside", str(dev)) == "default" and dev.read_bytes() == b""
    assert runtime.hold_cpu_wake_latency(0, "bedside", str(dev)) == "0us"
    assert dev.read_bytes() == (0).to_bytes(4, sys.byteorder)
    assert runtime._cpu_latency_fd is not None and os.fstat(runtime._cpu_latency_fd)  # still open
    with caplog.at_level(logging.WARNING, logger=runtime._log.name):
        assert runtime.hold_cpu_wake_latency(0, "console", str(tmp_path / "absent")) == "default (not permitted)"
    assert "console.cpu_wake_latency_us = -1" in caplog.text
    for section in ("bedside", "console"):
        assert getattr(load_config(), section).cpu_wake_latency_us == -1  # off by default: a host-wide policy
        with pytest.raises(ConfigError, match=f"{section}.cpu_wake_latency_us"):
            load_config(None, [f"{section}.cpu_wake_latency_us=-2"])
    os.close(runtime._cpu_latency_fd)
    runtime._cpu_latency_fd = None
