"""The voice endpoint's sockets, devices and thread: a thin wrapper around `VoiceEndpoint` (voice/intercom.py).

Who binds: the station's end (`teleop voice`, on the bedside host, with the bedside's keys) binds a ROUTER
as a CURVE server in ZAP domain `voice`, which admits only `surgeon` and `station` keys
(transport/security.py DOMAIN_ROLES); a monitor, QA or unknown key fails its handshake and is counted. Every
message is also checked against its sender's role (ZMQ User-Id) before it is decoded, and the station
listens to one talker at a time, by key (the first heard; another may take over after `voice.lost_ms` of
silence). The console's end connects a DEALER as a CURVE client pinned to the bedside key.

Paths (link.paths; base/config.py voice_paths): one such socket per path, all with the same CURVE and role
checks; every packet is sent on each (the station to the talker's connection on each path), and what comes in
is de-duplicated by the endpoint per sender key (voice/paths.py), so a path that dies costs no gap.

Threads: one worker thread (socket poll, mic frames from a queue, encode, send, link judgement, recording)
plus PortAudio's own callback threads (or the paced threads of a file/tone device). The playout runs in the
output callback under the endpoint's lock. None of them is a thread of a 1 kHz loop: voice runs in its own
process (`teleop voice`, the console's voice child) or in the window process (console/ui/voice_panel.py).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import zmq

from base.config import Config, link_paths, voice_paths
from safety.statemachine import Transition
from transport.security import DOMAIN_ROLES, for_client, for_server, stop_server_security, user_of
from voice.audio_io import FRAME, AudioInput, AudioOutput, open_input, open_output
from voice.intercom import VoiceEndpoint, VoiceSettings
from voice.jitter import Out

log = logging.getLogger("voice")

SIDES = ("console", "station")
SEND_HWM = 10
"""Packets queued per peer at most (100 ms): older voice is worth less than the loss it causes; beyond it a send
is dropped (NOBLOCK), not queued."""
VOICE_MAX_BYTES = 2048
"""ZMQ_MAXMSGSIZE of both voice sockets: the largest packet is 23 + 1275 = 1298 bytes (+33 under CURVE); a
bigger frame is refused by libzmq before it is read (docs/protocol.md, "Maximum message size")."""


def settings_from(cfg: Config) -> VoiceSettings:
    v = cfg.voice
    return VoiceSettings(mode=v.mode, volume=v.volume, bitrate=v.bitrate, lost_ms=v.lost_ms,
                         keepalive_ms=v.keepalive_ms, jitter_min_ms=v.jitter_min_ms, jitter_max_ms=v.jitter_max_ms)


class VoiceLink:
    """One end of the intercom, running: `start()`, controls (`set_ptt`, `set_mute`, `set_volume`,
    `set_mode`), `snapshot()` for a window, `close()`.

    `on_output(pcm, kind, t_ns)` (optional) sees every played frame (the bench's ear); `recorder`
    (voice/record.py) gets every packet sent and heard and every link transition."""

    def __init__(self, cfg: Config, side: str, *, input_spec: str | None = None, output_spec: str | None = None,
                 ctx: zmq.Context | None = None, recorder: Any = None,
                 on_output: Callable[[np.ndarray, Out, int], None] | None = None,
                 on_transition: Callable[[Transition], None] | None = None) -> None:
        if side not in SIDES:
            raise ValueError(f"voice side {side!r}: use one of {SIDES}")
        self.cfg = cfg
        self.side = side
        self.input_spec = cfg.voice.input if input_spec is None else input_spec
        self.output_spec = cfg.voice.output if output_spec is None else output_spec
        n_paths = len(link_paths(cfg.link, "console" if side == "console" else "bedside"))
        self.endpoint = VoiceEndpoint(side, settings_from(cfg), time.monotonic_ns(), n_paths=n_paths)
        self.addresses: tuple[tuple[str, int], ...] = ()
        """(host, port) per path, set by `start()` (base/config.py voice_paths)."""
        self._lock = threading.Lock()
        self._own_ctx = ctx is None  # a context of its own: its ZAP handler (one per context) is nobody else's
        self._ctx = ctx or zmq.Context()
        self._socks: list[zmq.Socket] = []
        self._peers: list[dict[str, bytes]] = [{} for _ in range(n_paths)]
        self.send_dropped = [0] * n_paths
        """Per path, packets its socket would not take (no connection up on it, or its queue full: SEND_HWM)."""
        """Station: per path, each key's routing id on that path (the talker is answered on every path)."""
        self._server_sec = None
        self._secure = not cfg.security.insecure
        self._mic: queue.SimpleQueue[tuple[np.ndarray, int]] = queue.SimpleQueue()
        self._input: AudioInput | None = None
        self._output: AudioOutput | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._pending = np.zeros(0, dtype=np.float32)
        self._mic_rest = np.zeros(0, dtype=np.float32)
        self._wake_addr = f"inproc://voice-wake-{id(self)}"
        self._wake_rx: zmq.Socket | None = None
        self._wake_tx: zmq.Socket | None = None
        self.recorder = recorder
        self.on_output = on_output
        self.on_transition = on_transition
        self.talker: str | None = None
        """Station: the key (`role:name`) listened to."""
        self._talker_ns = 0
        self.refused = 0
        """Messages dropped because their sender's role may not use voice (after CURVE admitted them)."""
        self.endpoint_address = ""

    # ------------------------------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Open the sockets (bind or connect, one per path), then the speaker and the mic, then the worker."""
        v = self.cfg.voice
        self.addresses = voice_paths(self.cfg, self.side)  # a shared voice endpoint: ConfigError before any socket
        if self.side == "station":
            self._server_sec = for_server(self.cfg, self._ctx)
            for host, port in self.addresses:
                sock = self._ctx.socket(zmq.ROUTER)
                if self._server_sec is not None:
                    self._server_sec.apply(sock, "voice")
                sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
                sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a full queue is an error (counted), not a silent drop
                sock.maxmsgsize = VOICE_MAX_BYTES
                sock.sndhwm = SEND_HWM
                sock.linger = 0
                self._socks.append(sock)
                try:
                    sock.bind(f"tcp://{host}:{port}")
                except zmq.ZMQError as exc:
                    from base.errors import UserError
                    raise UserError(f"cannot bind voice port {host}:{port} ({exc}): another `teleop voice` may be "
                                    "running; stop it or set voice.port (or the path's VOICE_PORT in link.paths)"
                                    ) from None
        else:
            sec = for_client(self.cfg)  # a key error before any socket exists (an open one would hang term())
            for host, port in self.addresses:
                sock = self._ctx.socket(zmq.DEALER)
                if sec is not None:
                    sec.apply(sock)
                sock.linger = 0
                sock.sndhwm = SEND_HWM
                sock.immediate = 1  # nothing queued for a connection not up yet: it would arrive as a late burst
                sock.maxmsgsize = VOICE_MAX_BYTES
                self._socks.append(sock)
                sock.connect(f"tcp://{host}:{port}")
        self.endpoint_address = ",".join(f"tcp://{h}:{p}" for h, p in self.addresses)
        self._wake_rx = self._ctx.socket(zmq.PULL)
        self._wake_rx.linger = 0
        self._wake_rx.bind(self._wake_addr)
        self._output = open_output(self.output_spec, self._pull)
        self._input = open_input(self.input_spec, self._on_mic)
        self._thread = threading.Thread(target=self._run, name=f"voice-{self.side}", daemon=True)
        self._thread.start()
        log.info("voice %s: %s, mic %s, speaker %s, mode %s", self.side, self.endpoint_address, self.input_spec,
                 self.output_spec, v.mode)

    def close(self) -> None:
        self._stop.set()
        if self._input is not None:
            self._input.close()
        if self._output is not None:
            self._output.close()
        if self._thread is not None:
            self._thread.join(3)
        for s in (self._wake_rx, self._wake_tx):
            if s is not None:
                s.close(0)
        self._wake_rx = self._wake_tx = None
        for sock in self._socks:
            sock.close(0)
        self._socks = []
        if self._server_sec is not None:
            stop_server_security(self._server_sec)
            self._server_sec = None
        if self._own_ctx:  # every thread of ours has stopped: closes anything left open, never waits
            self._ctx.destroy(linger=0)
            self._own_ctx = False

    @property
    def input(self) -> AudioInput | None:
        return self._input

    @property
    def output(self) -> AudioOutput | None:
        return self._output

    # ------------------------------------------------------------------------------------------ controls

    def set_ptt(self, pressed: bool) -> None:
        with self._lock:
            self.endpoint.set_ptt(pressed)

    def set_mute(self, muted: bool) -> None:
        with self._lock:
            self.endpoint.set_mute(muted)

    def set_volume(self, volume: float) -> None:
        with self._lock:
            self.endpoint.set_volume(volume)

    def set_mode(self, mode: str) -> None:
        with self._lock:
            self.endpoint.set_mode(mode)

    def snapshot(self) -> dict:
        with self._lock:
            snap = self.endpoint.snapshot(time.monotonic_ns())
        snap["refused"] = self.refused
        for k, p in enumerate(snap["paths"]):
            p["send_dropped"] = self.send_dropped[k]
        if self._server_sec is not None:
            snap["refused_handshakes"] = self._server_sec.auth.counters.get("refused_handshakes", 0)
        return snap

    # ------------------------------------------------------------------------------------------ threads

    def _on_mic(self, samples: np.ndarray, t_ns: int) -> None:
        """The capture thread's block, cut into FRAME-sample frames (a device may hand over other sizes), queued,
        and the worker woken at once (a 5 ms poll would add up to 5 ms to every word). The wake socket belongs
        to the capture thread (made on its first frame)."""
        if samples.size != FRAME or self._mic_rest.size:
            buf = np.concatenate([self._mic_rest, samples.astype(np.float32, copy=False)])
            n = buf.size // FRAME * FRAME
            self._mic_rest = buf[n:]
            for i in range(0, n, FRAME):
                self._mic.put((buf[i:i + FRAME], t_ns))
        else:
            self._mic.put((samples, t_ns))
        if self._stop.is_set():
            return
        if self._wake_tx is None:
            self._wake_tx = self._ctx.socket(zmq.PUSH)
            self._wake_tx.linger = 0
            self._wake_tx.sndhwm = 10
            self._wake_tx.connect(self._wake_addr)
        with contextlib.suppress(zmq.ZMQError):
            self._wake_tx.send(b"", zmq.NOBLOCK)

    def _pull(self, n: int) -> np.ndarray:
        """The output device asks for n samples: whole frames from the endpoint's playout."""
        while self._pending.size < n:
            now = time.monotonic_ns()
            with self._lock:
                pcm, kind = self.endpoint.playout(now)
            if self.on_output is not None:
                self.on_output(pcm, kind, now)
            self._pending = np.concatenate([self._pending, pcm])
        out, self._pending = self._pending[:n], self._pending[n:]
        return out

    def _send(self, packets: list[bytes], now_ns: int) -> None:
        """Every packet on every path (a path not up drops it: NOBLOCK, never queued)."""
        if not self._socks or not packets:
            return
        for p in packets:
            for k, sock in enumerate(self._socks):
                try:
                    if self.side == "station":
                        ident = self._peers[k].get(self.talker) if self.talker is not None else None
                        if ident is not None:
                            sock.send_multipart([ident, p], zmq.NOBLOCK)
                    else:
                        sock.send(p, zmq.NOBLOCK)
                except zmq.Again:
                    self.send_dropped[k] += 1
                except zmq.ZMQError:
                    pass  # a routing id gone, a socket closing: this path misses this packet, the others carry it
            if self.recorder is not None:
                self.recorder.packet("tx", now_ns, p)

    def _receive(self, path: int) -> list[Transition]:
        sock = self._socks[path]
        out: list[Transition] = []
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return out
            now_ns = time.monotonic_ns()  # per message: a thread preempted after the poll must not predate it
            if self.side == "station":
                if len(frames) != 2:
                    continue
                ident, msg = frames[0].bytes, frames[1]
                user = user_of(msg, self._secure)
                if user.split(":", 1)[0] not in DOMAIN_ROLES["voice"]:
                    self.refused += 1
                    continue
                peers = self._peers[path]
                if peers.get(user) != ident:
                    if len(peers) >= 16 and user not in peers:  # bounded: forget the others first
                        peers.clear()
                    peers[user] = ident
                if user != self.talker:
                    quiet = now_ns - self._talker_ns > self.cfg.voice.lost_ms * 1e6
                    if self.talker is not None and not quiet:
                        continue
                    self.talker = user
                    log.info("voice: talking with %s", user)
                self._talker_ns = now_ns
                data, peer = msg.bytes, user
            else:
                data, peer = frames[-1].bytes, "station"
            with self._lock:
                out += self.endpoint.on_packet(data, now_ns, path, peer)
                copy = self.endpoint.last_copy
            if self.recorder is not None and not copy:
                self.recorder.packet("rx", now_ns, data)
        return out

    def _run(self) -> None:
        poller = zmq.Poller()
        for sock in self._socks:
            poller.register(sock, zmq.POLLIN)
        wake = self._wake_rx
        assert wake is not None
        poller.register(wake, zmq.POLLIN)
        while not self._stop.is_set():
            ready = dict(poller.poll(5))
            if wake in ready:
                with contextlib.suppress(zmq.Again):
                    while True:
                        wake.recv(zmq.NOBLOCK)
            transitions: list[Transition] = []
            for k, sock in enumerate(self._socks):
                if sock in ready:
                    transitions += self._receive(k)
            while True:
                try:
                    samples, _t_ns = self._mic.get_nowait()
                except queue.Empty:
                    break
                now = time.monotonic_ns()
                with self._lock:
                    packets = self.endpoint.on_mic_frame(samples, now)
                self._send(packets, time.monotonic_ns())
            now = time.monotonic_ns()
            with self._lock:
                keep = self.endpoint.keepalive(now)
                transitions += self.endpoint.tick(now)
            self._send(keep, now)
            for tr in transitions:
                if self.recorder is not None:
                    self.recorder.transition(tr)
                if self.on_transition is not None:
                    self.on_transition(tr)
            with self._lock:
                changes = self.endpoint.drain_path_events()
            for k, up, _t in changes if len(self._socks) > 1 else ():
                if up:
                    log.info("voice path%d UP (%s)", k, self.addresses[k][0])
                else:
                    log.warning("voice path%d LOST: no packet on it for %g ms; voice goes on over the others", k,
                                self.cfg.voice.lost_ms)
