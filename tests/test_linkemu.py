"""The link emulator itself: the pure delay line (injected time), the TCP proxy's outages, the CLI's scenario
parsing. The system's reaction to these faults is in tests/test_faults_*.py."""

from __future__ import annotations

import argparse
import socket
import threading
import time

import pytest

from rehearsal.linkemu import SCENARIOS, DelayLine, LinkEmulator, LinkProfile, Outage, flapping
from teleop.linkemu_cmd import add_arguments, profiles_from

MS = 1_000_000


def test_jitter_delays_but_never_reorders_and_the_rate_cap_serialises():
    line = DelayLine(LinkProfile(delay_ms=20, jitter_ms=5), start_ns=0, seed=3)
    rel = [line.release_ns(i * MS, 100) for i in range(2000)]
    assert rel == sorted(rel)
    assert min(r - i * MS for i, r in enumerate(rel)) >= 20 * MS
    capped = DelayLine(LinkProfile(delay_ms=0, rate_mbps=8), start_ns=0)  # 1 byte per µs
    assert capped.release_ns(0, 1000) == 1000_000
    assert capped.release_ns(0, 1000) == 2000_000  # waits for the wire


def test_a_stall_holds_everything_then_delivers_it_at_its_end():
    line = DelayLine(LinkProfile(delay_ms=1, outages=(Outage(1.0, 0.5, "stall"),)), start_ns=0)
    assert line.release_ns(500 * MS, 10) == 501 * MS
    held = [line.release_ns(t * MS, 10) for t in (999, 1200, 1498)]
    assert held == [1500 * MS] * 3
    assert line.release_ns(1600 * MS, 10) == 1601 * MS
    assert sum(line.held.values()) == 3


def test_blackhole_and_reset_lose_what_crosses_them():
    for mode in ("blackhole", "reset"):
        line = DelayLine(LinkProfile(delay_ms=1, outages=(Outage(1.0, 0.5, mode),)), start_ns=0)
        assert line.release_ns(1100 * MS, 10) is None
        assert line.release_ns(1499 * MS, 10) is None  # would be delivered inside the window too
        assert line.release_ns(1600 * MS, 10) == 1601 * MS
        assert sum(line.dropped.values()) == 2
    forever = DelayLine(LinkProfile(cut_at_s=1.0), start_ns=0)
    assert forever.release_ns(5000 * MS, 10) is None and forever.cut_due(5000 * MS)


def test_flapping_expands_to_regular_outages():
    f = flapping(2.0, 0.2, 0.3, 3, "blackhole")
    assert [(o.start_s, o.duration_s, o.mode) for o in f] == [(2.0, 0.2, "blackhole"), (2.5, 0.2, "blackhole"),
                                                             (3.0, 0.2, "blackhole")]
    with pytest.raises(ValueError, match="mode"):
        Outage(0, 1, "melt")


def _echo_server() -> tuple[socket.socket, int]:
    srv = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return

            def echo(c=c) -> None:
                try:
                    while d := c.recv(4096):
                        c.sendall(d)
                except OSError:
                    pass
                c.close()
            threading.Thread(target=echo, daemon=True).start()
    threading.Thread(target=serve, daemon=True).start()
    return srv, srv.getsockname()[1]


def test_proxy_stall_delivers_the_backlog_and_reports_it():
    srv, port = _echo_server()
    emu = LinkEmulator({"control": (0, ("127.0.0.1", port), LinkProfile(delay_ms=1), LinkProfile(delay_ms=1))})
    try:
        c = socket.create_connection(("127.0.0.1", emu.port("control")))
        c.settimeout(5)
        c.sendall(b"a")
        assert c.recv(10) == b"a"
        w = emu.add_outage(0.4, "stall")
        c.sendall(b"b")
        assert c.recv(10) == b"b"
        assert time.monotonic_ns() >= w.end_ns  # nothing came through before the stall ended
        deadline = time.monotonic() + 5
        while not any(e["event"] == "outage_end" for e in emu.report()["events"]) and time.monotonic() < deadline:
            time.sleep(0.01)
        rep = emu.report()
        end = next(e for e in rep["events"] if e["event"] == "outage_end")
        assert end["mode"] == "stall" and end["chunks_held_then_delivered"] >= 1
        assert rep["outages"][0]["duration_s"] == pytest.approx(0.4)
        c.close()
    finally:
        emu.close()
        srv.close()


def test_proxy_reset_and_blackhole_end_the_connection():
    srv, port = _echo_server()
    emu = LinkEmulator({"control": (0, ("127.0.0.1", port), LinkProfile(), LinkProfile())})
    try:
        for mode in ("reset", "blackhole"):
            c = socket.create_connection(("127.0.0.1", emu.port("control")))
            c.settimeout(5)
            c.sendall(b"x")
            assert c.recv(10) == b"x"
            w = emu.add_outage(0.3, mode)
            if mode == "blackhole":
                c.sendall(b"lost")
            with pytest.raises((ConnectionResetError, ConnectionAbortedError)):
                while c.recv(10):
                    pass
                raise ConnectionResetError  # an orderly close also ends it
            if mode == "blackhole":
                assert time.monotonic_ns() >= w.end_ns - 60 * MS  # silent until the window ended
            c.close()
            time.sleep(0.35)
        rep = emu.report()
        assert rep["links"]["control"]["resets"] >= 2
        assert rep["links"]["control"]["up"].get("dropped_bytes", 0) >= 4
    finally:
        emu.close()
        srv.close()


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(list(argv))


def test_scenario_file_sets_directions_endpoints_and_outages(tmp_path):
    f = tmp_path / "rehearsal.toml"
    f.write_text('base = "london-gibraltar"\njitter_ms = 2\n[down]\ndelay_ms = 40\n[video.down]\nrate_mbps = 3\n'
                 '[[outage]]\nstart_s = 5\nduration_s = 0.5\nmode = "blackhole"\n'
                 '[[flap]]\nstart_s = 10\ndown_s = 0.2\nup_s = 0.3\ncount = 4\n')
    name, prof = profiles_from(_args("--scenario-file", str(f), "--outage", "20:1:reset"))
    assert name == "rehearsal"
    assert prof[("control", "up")].delay_ms == SCENARIOS["london-gibraltar"].delay_ms
    assert prof[("control", "down")].delay_ms == 40 and prof[("control", "down")].jitter_ms == 2
    assert prof[("video", "down")].rate_mbps == 3 and prof[("telemetry", "down")].rate_mbps == 0
    modes = [o.mode for o in prof[("telemetry", "up")].all_outages()]
    assert modes == ["blackhole", "stall", "stall", "stall", "stall", "reset"]
    f.write_text("delay = 3\n")
    with pytest.raises(SystemExit, match="unknown key 'delay'"):
        profiles_from(_args("--scenario-file", str(f)))
