"""Audio in and out: real devices through PortAudio (`sounddevice`), or a tone/file/null for headless runs.

The one way this project makes sound or takes it in (voice intercom, alarm tones). Everything is mono
float32 in [-1, 1] at `RATE` (48 kHz). Typical use:

    out = open_output("default")            # or "pulse", a device name/index, "file:/tmp/x.wav", "null"
    out.play(tone(880.0, 0.2))              # queued, returns at once; mixed with anything else queued
    out.close()                             # stops the stream (pending samples are dropped)

    inp = open_input("default", on_frame)   # or "tone:1000", "burst:1000:500", "file:/tmp/in.wav", "silence"
    ...                                     # on_frame(samples, t_ns) is called every FRAME samples
    inp.close()

Outputs also take a pull `source(n) -> samples` (the voice playout): the device's own clock then paces the
playout. File and null outputs and tone/file inputs are paced by a thread on the monotonic clock, so a
headless run has the same timing shape as a device. PortAudio is loaded only when a device is opened: a
machine without libportaudio2 can still use the file paths, and gets a one-line error naming the package
if it asks for a device.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np

from base.errors import UserError

log = logging.getLogger("voice.audio")

RATE = 48_000
"""Samples per second of every stream (Opus's native rate)."""
FRAME = 480
"""Samples per frame: 10 ms at RATE (the voice frame; devices are opened with this block size)."""

Source = Callable[[int], np.ndarray]
"""A pull source: asked for n samples, returns exactly n (float32, mono)."""
FrameHandler = Callable[[np.ndarray, int], None]
"""Called with each captured frame (float32, mono, FRAME samples) and its capture time (monotonic ns)."""


class AudioDeviceError(UserError, OSError):
    """A sound device or file that cannot be opened; the message names it and what to do."""

    label = "audio error"


def tone(freq_hz: float, seconds: float, amplitude: float = 0.3, rate: int = RATE) -> np.ndarray:
    """A sine tone (float32, mono) with 2 ms raised-cosine edges so it starts and stops without a click."""
    n = max(0, round(seconds * rate))
    t = np.arange(n, dtype=np.float64) / rate
    x = amplitude * np.sin(2 * np.pi * freq_hz * t)
    ramp = min(n // 2, int(0.002 * rate))
    if ramp:
        edge = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, ramp))
        x[:ramp] *= edge
        x[n - ramp:] *= edge[::-1]
    return x.astype(np.float32)


def _sd():
    try:
        import sounddevice
    except OSError as exc:
        raise AudioDeviceError(f"PortAudio is not installed ({exc}): install the Debian package libportaudio2, "
                               "or use a file/tone/null audio device") from None
    return sounddevice


class _Fifo:
    """Samples queued by `play`, mixed into the output; bounded so a stuck device cannot grow memory."""

    def __init__(self, max_s: float = 10.0) -> None:
        self._chunks: list[np.ndarray] = []
        self._lock = threading.Lock()
        self._max = int(max_s * RATE)
        self._n = 0

    def put(self, samples: np.ndarray) -> None:
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        with self._lock:
            if self._n + x.size > self._max:
                return
            self._chunks.append(x)
            self._n += x.size

    def take_into(self, out: np.ndarray) -> None:
        """Add up to len(out) queued samples into `out`."""
        i = 0
        with self._lock:
            while self._chunks and i < out.size:
                c = self._chunks[0]
                k = min(c.size, out.size - i)
                out[i:i + k] += c[:k]
                i += k
                if k == c.size:
                    self._chunks.pop(0)
                else:
                    self._chunks[0] = c[k:]
                self._n -= k

    def pending(self) -> int:
        with self._lock:
            return self._n


class AudioOutput:
    """Where sound goes. `play(samples)` queues samples (mixed, non-blocking); an optional pull `source` is
    asked for each block as well (the voice playout). Subclasses: a PortAudio device, a WAV file, nothing."""

    kind = "output"

    def __init__(self, source: Source | None = None) -> None:
        self.source = source
        self._fifo = _Fifo()
        self.underruns = 0
        """Blocks the device asked for late (PortAudio's output-underflow flag); 0 for paced outputs."""

    def play(self, samples: np.ndarray) -> None:
        """Queue mono float32 samples at RATE to be heard as soon as possible (mixed with anything playing)."""
        self._fifo.put(samples)

    def pending_s(self) -> float:
        """Seconds of `play`ed sound not yet handed to the device."""
        return self._fifo.pending() / RATE

    def _next(self, n: int) -> np.ndarray:
        out = np.zeros(n, dtype=np.float32)
        if self.source is not None:
            out += self.source(n)
        self._fifo.take_into(out)
        np.clip(out, -1.0, 1.0, out=out)
        return out

    def close(self) -> None:
        """Stop; queued samples not yet played are dropped."""


class DeviceOutput(AudioOutput):
    """A PortAudio output stream (`device`: None/"default", "pulse", a name or an index), low latency, FRAME
    blocks."""

    kind = "device"

    def __init__(self, device: str | int | None = None, source: Source | None = None) -> None:
        super().__init__(source)
        sd = _sd()
        self.device = None if device in (None, "", "default") else device
        try:
            self._stream = sd.OutputStream(samplerate=RATE, blocksize=FRAME, channels=1, dtype="float32",
                                           device=self.device, latency="low", callback=self._callback)
            self._stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            raise AudioDeviceError(f"cannot open audio output {device!r}: {exc} (list devices with "
                                   "`python -m sounddevice`; headless: use 'null' or 'file:PATH')") from None
        self.latency_s = float(self._stream.latency)

    def _callback(self, outdata, frames, _time, status) -> None:
        if status.output_underflow:
            self.underruns += 1
        outdata[:, 0] = self._next(frames)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stream.stop()
            self._stream.close()


class _Paced:
    """A thread that calls `step()` once per FRAME on an absolute monotonic schedule (catching up at most
    5 frames after a stall, then re-anchoring), like a device's clock."""

    def __init__(self, name: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        period = FRAME * 1_000_000_000 // RATE
        due = time.monotonic_ns()
        while not self._stop.is_set():
            now = time.monotonic_ns()
            if now < due:
                self._stop.wait((due - now) / 1e9)
                continue
            if now - due > 5 * period:
                due = now
            self.step(due)
            due += period

    def step(self, t_ns: int) -> None:
        """One FRAME, due at `t_ns`: what the device does with it (PacedOutput plays, GeneratedInput captures)."""
        raise NotImplementedError

    def _halt(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(2)


class PacedOutput(AudioOutput, _Paced):
    """A clocked output that hands each block to `consume(samples, t_ns)` (a file, a detector, nothing)."""

    kind = "paced"

    def __init__(self, source: Source | None = None, consume: FrameHandler | None = None) -> None:
        AudioOutput.__init__(self, source)
        _Paced.__init__(self, "audio-out")
        self.consume = consume
        self._start()

    def step(self, t_ns: int) -> None:
        block = self._next(FRAME)
        if self.consume is not None:
            self.consume(block, t_ns)

    def close(self) -> None:
        self._halt()


class FileOutput(PacedOutput):
    """Everything played, in real time, into a 16-bit mono WAV file (headless runs, QA)."""

    kind = "file"

    def __init__(self, path: str | Path, source: Source | None = None) -> None:
        self.path = Path(path).expanduser()
        try:
            self._wav = wave.open(str(self.path), "wb")  # noqa: SIM115 (closed in close())
        except OSError as exc:
            raise AudioDeviceError(f"cannot write audio file {self.path}: {exc.strerror or exc}") from None
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(RATE)
        self._wlock = threading.Lock()
        super().__init__(source, self._write)

    def _write(self, block: np.ndarray, _t_ns: int) -> None:
        with self._wlock:
            if self._wav is not None:
                self._wav.writeframes((block * 32767).astype("<i2").tobytes())

    def close(self) -> None:
        super().close()
        with self._wlock:
            if self._wav is not None:
                self._wav.close()
                self._wav = None


def open_output(spec: str | int | None = "default", source: Source | None = None) -> AudioOutput:
    """An output by name: "default"/None, "pulse", a PortAudio device name or index → the device;
    "file:PATH" → a WAV file; "null" → clocked, discarded."""
    if isinstance(spec, str) and spec.startswith("file:"):
        return FileOutput(spec[5:], source)
    if spec == "null":
        return PacedOutput(source)
    return DeviceOutput(int(spec) if isinstance(spec, str) and spec.isdigit() else spec, source)


# ------------------------------------------------------------------------------------------------ input


class AudioInput:
    """Where sound comes from: calls `on_frame(samples, t_ns)` with every FRAME captured."""

    kind = "input"

    def __init__(self, on_frame: FrameHandler) -> None:
        self.on_frame = on_frame
        self.overruns = 0

    def close(self) -> None:
        """Stop capturing."""


class DeviceInput(AudioInput):
    """A PortAudio input stream, FRAME blocks, low latency. The frame time is the callback's monotonic time."""

    kind = "device"

    def __init__(self, device: str | int | None, on_frame: FrameHandler) -> None:
        super().__init__(on_frame)
        sd = _sd()
        self.device = None if device in (None, "", "default") else device
        try:
            self._stream = sd.InputStream(samplerate=RATE, blocksize=FRAME, channels=1, dtype="float32",
                                          device=self.device, latency="low", callback=self._callback)
            self._stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            raise AudioDeviceError(f"cannot open audio input {device!r}: {exc} (list devices with "
                                   "`python -m sounddevice`; headless: use 'tone:HZ', 'file:PATH' or "
                                   "'silence')") from None
        self.latency_s = float(self._stream.latency)

    def _callback(self, indata, frames, _time, status) -> None:
        if status.input_overflow:
            self.overruns += 1
        self.on_frame(indata[:, 0].copy(), time.monotonic_ns())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stream.stop()
            self._stream.close()


class GeneratedInput(AudioInput, _Paced):
    """A clocked input from a generator `gen(index, n) -> samples` (tone, burst train, file, silence)."""

    kind = "generated"

    def __init__(self, gen: Callable[[int, int], np.ndarray], on_frame: FrameHandler) -> None:
        AudioInput.__init__(self, on_frame)
        _Paced.__init__(self, "audio-in")
        self._gen = gen
        self._i = 0
        self._start()

    def step(self, t_ns: int) -> None:
        x = self._gen(self._i, FRAME)
        self._i += FRAME
        self.on_frame(x, t_ns)

    def close(self) -> None:
        self._halt()


class BurstTrain:
    """Tone bursts of `burst_ms` every `period_ms` (the mouth of a mouth-to-ear measurement); `onsets_ns`
    records when each burst's first sample was "spoken": the frame's time minus one frame, since a frame is
    handed over once all of it has been captured."""

    def __init__(self, freq_hz: float = 1000.0, period_ms: float = 500.0, burst_ms: float = 60.0,
                 amplitude: float = 0.3) -> None:
        self.period = int(period_ms * RATE / 1000)
        self.burst = tone(freq_hz, burst_ms / 1000, amplitude)
        self.onsets_ns: list[int] = []
        self._t_ns = 0

    def __call__(self, i: int, n: int) -> np.ndarray:
        out = np.zeros(n, dtype=np.float32)
        for k in range(n):
            pos = (i + k) % self.period
            if pos < self.burst.size:
                out[k] = self.burst[pos]
        return out

    def wrap(self, on_frame: FrameHandler) -> FrameHandler:
        """An on_frame that notes burst onsets, then calls `on_frame`."""
        idx = [0]

        def handler(x: np.ndarray, t_ns: int) -> None:
            if idx[0] % self.period < FRAME:
                self.onsets_ns.append(t_ns - x.size * 1_000_000_000 // RATE)
            idx[0] += x.size
            on_frame(x, t_ns)
        return handler


def _file_gen(path: Path) -> Callable[[int, int], np.ndarray]:
    try:
        with wave.open(str(path), "rb") as w:
            if w.getsampwidth() != 2 or w.getframerate() != RATE:
                raise AudioDeviceError(f"{path}: need 16-bit PCM WAV at {RATE} Hz (convert with "
                                       f"`ffmpeg -i IN -ac 1 -ar {RATE} OUT.wav`)")
            raw = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, w.getnchannels())
    except (OSError, wave.Error, EOFError) as exc:
        raise AudioDeviceError(f"cannot read audio file {path}: {exc}") from None
    data = raw[:, 0].astype(np.float32) / 32768.0
    if data.size == 0:
        raise AudioDeviceError(f"audio file {path} is empty")

    def gen(i: int, n: int) -> np.ndarray:
        idx = (np.arange(i, i + n)) % data.size
        return data[idx]
    return gen


def open_input(spec: str | int | None, on_frame: FrameHandler) -> AudioInput:
    """An input by name: "default"/None, "pulse", a device name or index → the device; "tone:HZ" → a steady
    tone; "burst:HZ:PERIOD_MS" → tone bursts (see BurstTrain; the returned input has `.bursts`);
    "file:PATH" → a WAV file, looped; "silence" → zeros."""
    if isinstance(spec, str):
        kind, _, rest = spec.partition(":")
        try:
            if kind == "tone":
                freq = float(rest or 1000.0)
                return GeneratedInput(lambda i, n: (0.3 * np.sin(2 * np.pi * freq * np.arange(i, i + n) / RATE))
                                      .astype(np.float32), on_frame)
            if kind == "burst":
                f, _, period = rest.partition(":")
                train = BurstTrain(float(f or 1000.0), float(period or 500.0))
                g = GeneratedInput(train, train.wrap(on_frame))
                g.bursts = train  # type: ignore[attr-defined]
                return g
        except ValueError:
            raise AudioDeviceError(f"bad audio input {spec!r}: use tone:HZ or burst:HZ:PERIOD_MS") from None
        if kind == "file":
            return GeneratedInput(_file_gen(Path(rest).expanduser()), on_frame)
        if spec == "silence":
            return GeneratedInput(lambda _i, n: np.zeros(n, dtype=np.float32), on_frame)
    return DeviceInput(int(spec) if isinstance(spec, str) and spec.isdigit() else spec, on_frame)
