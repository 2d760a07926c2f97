"""Security against a real bedside process: keys by role, one controller, hostile peers (docs/security.md)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest
import zmq
from crossproc import Session, TelemetryTap

from transport import codec
from transport.messages import (
    N_ARMS,
    AckStatus,
    CartesianSetpoint,
    ConsoleFlags,
    Enable,
    EStop,
    OperatingState,
    ServoCp,
)
from transport.security import KeyFileError, KeyStore, client_security, fingerprint, load_pair, throwaway_keys
from transport.zmqlink import control_client, tcp

pytestmark = pytest.mark.fault


class Probe:
    """A hand-driven client on the control link with a chosen key (or none)."""

    def __init__(self, session: Session, identity: str | None, server_key: str = "") -> None:
        keys_dir = session.key_overrides[0].split("=", 1)[1]
        sec = None if identity is None else client_security(keys_dir, identity, server_key)
        self.sock = control_client(zmq.Context.instance(), tcp("127.0.0.1", session.ports[0]), sec)
        self.seq = 0

    def send(self, msg_cls, *extra, epoch: int = 0, wait_s: float = 2.0) -> bool:
        """False if no authenticated connection formed to carry it (IMMEDIATE: nothing is queued)."""
        self.seq += 1
        frame = codec.encode(msg_cls(epoch, self.seq, time.monotonic_ns(), *extra))
        end = time.monotonic() + wait_s
        while time.monotonic() < end:
            try:
                self.sock.send(frame, zmq.NOBLOCK)
                return True
            except zmq.Again:
                time.sleep(0.02)
        return False

    def ack(self, timeout_ms: int = 1500):
        if not self.sock.poll(timeout_ms):
            return None
        return codec.decode(self.sock.recv())

    def close(self) -> None:
        self.sock.close(0)


@pytest.fixture
def session(tmp_path):
    s = Session(tmp_path, con_extra=["console.engage_at_s=0.3"])
    s.start_bedside()
    yield s
    s.close()


def _events(session: Session, text: str, timeout: float = 3.0):
    return session.wait_event(lambda r: text in r.get("text", ""), timeout)


def test_client_without_a_key_gets_nothing(session):
    p = Probe(session, None)
    try:
        assert not p.send(Enable)  # a plain client never completes a handshake with a CURVE server
        assert p.ack(500) is None
    finally:
        p.close()
    assert session.bedside_summary()["state"] == "DISABLED"


def test_monitor_key_cannot_command(session):
    p = Probe(session, "monitor")
    try:
        p.send(Enable)
        ack = p.ack()
        assert ack is not None and ack.status is AckStatus.REJECTED_ROLE
        home = CartesianSetpoint((0.08, 0.0, -0.1))
        p.send(ServoCp, ConsoleFlags.OPERATOR_PRESENT, 1, (home,) * N_ARMS, epoch=ack.epoch)
        assert p.ack().status is AckStatus.REJECTED_ROLE
    finally:
        p.close()
    c = session.bedside_summary()["counters"]
    assert c["forged_role"] == 2 and c.get("applied", 0) == 0


def test_revoked_and_unknown_keys_are_refused_and_recorded(session, tmp_path):
    keys_dir = session.key_overrides[0].split("=", 1)[1]
    store = KeyStore(keys_dir)
    gone = store.add("surgeon-3", "surgeon")
    store.revoke("surgeon-3")
    p = Probe(session, "surgeon-3")
    try:
        assert not p.send(Enable)
        assert p.ack(500) is None
    finally:
        p.close()
    rec = _events(session, "revoked key of surgeon-3")
    assert rec is not None and gone.fingerprint in rec["text"], session.diagnostics()
    # a key the bedside has never seen (another keys directory, same bedside pinned)
    other = KeyStore(tmp_path / "elsewhere")
    other.init()
    stranger = other.add("stranger", "surgeon")
    import shutil

    shutil.copy(other.client_secret("stranger"), store.clients_dir / "stranger.key_secret")
    p = Probe(session, "stranger")
    try:
        assert not p.send(Enable)
        assert p.ack(500) is None
    finally:
        p.close()
    rec = _events(session, "unknown key")
    assert rec is not None and stranger.fingerprint in rec["text"]


def test_console_pinned_to_the_wrong_bedside_key_refuses_to_talk(session, tmp_path):
    impostor = KeyStore(tmp_path / "impostor")
    impostor.init()
    p = Probe(session, "surgeon", server_key=str(impostor.server_public))
    try:
        assert not p.send(Enable)  # the CURVE handshake cannot complete: no session, no motion
        assert p.ack(500) is None
    finally:
        p.close()
    assert session.bedside_summary()["state"] == "DISABLED"


def test_station_estop_holds_the_arms_and_blocks_reengage_a_monitor_key_is_refused(session):
    session.start_console()
    session.wait_engaged()
    time.sleep(0.3)
    mon = Probe(session, "monitor")
    try:
        mon.send(EStop, True)  # a monitor only watches
        ack = mon.ack()
        assert ack is not None and ack.status is AckStatus.REJECTED_ROLE
    finally:
        mon.close()
    p = Probe(session, "station")
    tap = TelemetryTap("127.0.0.1", session.ports[1], session)
    try:
        assert tap.latest().operating_state is OperatingState.ENABLED
        p.send(EStop, True)
        ack = p.ack()
        assert ack is not None and ack.status is AckStatus.ESTOP_LATCHED
        freeze = session.wait_event(lambda r: r.get("type") == "freeze", 3.0)
        assert freeze is not None and freeze["reason"] == "ESTOP"
        time.sleep(0.1)
        t1 = tap.latest()
        assert t1.operating_state is OperatingState.PAUSED and t1.estop
        time.sleep(0.3)
        assert [a.measured_cp for a in tap.latest().arms] == [a.measured_cp for a in t1.arms]
        p.send(EStop, False)  # a station resets only with a reason: it is audited
        assert p.ack().status is AckStatus.REJECTED_NO_REASON
        assert tap.latest().estop
    finally:
        p.close()
        tap.close()


def test_second_console_takes_over_only_by_handover(session):
    session.start_console()
    session.wait_engaged()
    second = Session(session.tmp / "second")
    second.con_sets = [*session.con_sets, "security.identity=surgeon-2", "console.engage_at_s=0.3"]
    second.con_summary = session.tmp / "console-2.json"
    second.start_console()
    try:
        rec = _events(session, "surgeon:surgeon-2 requests control; refused", 10.0)
        assert rec is not None, session.diagnostics()
        assert not any("granted to surgeon:surgeon-2" in r.get("text", "") for r in session.seen)
        session.console.stop()  # the controlling surgeon releases (DISABLE on the way out)
        assert _events(session, "control released by surgeon:surgeon", 5.0) is not None
        granted = _events(session, "control granted to surgeon:surgeon-2", 5.0)
        assert granted is not None, session.diagnostics()
    finally:
        second.close()


class RecordingProxy:
    """TCP proxy that records what the client sent: 'traffic captured from a real session'."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.captured = bytearray()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        up = socket.create_connection(("127.0.0.1", self.target))

        def pump(src, dst, record):
            try:
                while data := src.recv(65536):
                    if record:
                        self.captured += data
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)

        threading.Thread(target=pump, args=(conn, up, True), daemon=True).start()
        threading.Thread(target=pump, args=(up, conn, False), daemon=True).start()


def test_replayed_capture_of_a_real_session_is_rejected(session):
    proxy = RecordingProxy(session.ports[0])
    session.con_sets = [o for o in session.con_sets if not o.startswith("link.control_port=")]
    session.con_sets.append(f"link.control_port={proxy.port}")
    session.start_console()
    session.wait_engaged()
    time.sleep(0.5)
    session.console.stop()
    assert _events(session, "control released", 5.0) is not None
    captured = bytes(proxy.captured)
    assert len(captured) > 10_000  # half a second of encrypted 1 kHz commands
    before = len([r for r in session.seen if r.get("to") == "ENABLED"])
    with socket.create_connection(("127.0.0.1", session.ports[0])) as s:
        s.sendall(captured)
        time.sleep(1.0)
    time.sleep(0.5)
    session.wait_event(lambda r: False, 0.5)
    after = len([r for r in session.seen if r.get("to") == "ENABLED"])
    assert after == before  # the replay opened no session
    bed = session.bedside_summary()
    assert bed["state"] == "DISABLED"


def test_key_files_errors_are_clear(tmp_path):
    with pytest.raises(KeyFileError, match="does not exist"):
        load_pair(tmp_path / "nope.key_secret")
    overrides = throwaway_keys(tmp_path / "k")
    keys_dir = overrides[0].split("=", 1)[1]
    secret = KeyStore(keys_dir).client_secret("surgeon")
    secret.chmod(0o644)
    with pytest.raises(KeyFileError, match="readable by other users"):
        load_pair(secret)
    secret.chmod(0o600)
    bad = tmp_path / "bad.key_secret"
    bad.write_text("nonsense")
    bad.chmod(0o600)
    with pytest.raises(KeyFileError):
        load_pair(bad)
    with pytest.raises(KeyFileError, match="unknown role"):
        KeyStore(keys_dir).add("x", "admin")
    assert len(fingerprint(KeyStore(keys_dir).clients()[0].public_key)) == 39


def test_connection_flood_from_unknown_keys_is_counted_and_visible_in_telemetry(session, tmp_path):
    from transport.messages import Counters

    session.start_console()
    session.wait_engaged()
    strangers = KeyStore(tmp_path / "flood")
    strangers.init()
    keys_dir = session.key_overrides[0].split("=", 1)[1]
    bedside_key = str(KeyStore(keys_dir).server_public)
    socks = []
    for i in range(30):
        strangers.add(f"x{i}", "surgeon")
        sec = client_security(str(strangers.root), f"x{i}", server_key=bedside_key)
        socks.append(control_client(zmq.Context.instance(), tcp("127.0.0.1", session.ports[0]), sec))
    tap = TelemetryTap("127.0.0.1", session.ports[1], session)
    try:
        deadline = time.monotonic() + 10
        counters: dict = {}
        while time.monotonic() < deadline and counters.get("refused_handshakes", 0) < 30:
            if tap.sock.poll(200):
                msg = codec.decode(tap.sock.recv())
                if isinstance(msg, Counters):
                    counters = msg.values
        assert counters.get("refused_handshakes", 0) >= 30, counters
        assert counters.get("applied", 0) > 0  # the real console kept commanding through the flood
        assert tap.latest().operating_state is OperatingState.ENABLED
    finally:
        tap.close()
        for s in socks:
            s.close(0)
