"""Configuration: one TOML file, validated against a typed schema, overridable by `--set section.key=value`.

Every value is checked here, before any process starts: an unknown section or key, a wrong type or an
out-of-range number is a ConfigError naming the key. Nothing downstream re-validates or falls back.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from base.errors import UserError


class ConfigError(UserError, ValueError):
    """A configuration value that must not be used; the message names the key."""

    label = "configuration error"


def _f(default: Any, help: str, lo: float | None = None, hi: float | None = None, choices=None):
    return field(default=default, metadata={"help": help, "min": lo, "max": hi, "choices": choices})


def _bound_above_period(section: str, bound_ms: float, rate_key: str, hz: int) -> None:
    """A tick bound at or below the tick period would call every tick a stall."""
    if bound_ms <= 1000 / hz:
        raise ConfigError(f"{section}.tick_bound_ms ({bound_ms:g} ms) is not above the tick period of "
                          f"{section}.{rate_key} = {hz} ({1000 / hz:g} ms): every tick would be over the bound; "
                          f"raise {section}.tick_bound_ms or {section}.{rate_key}")


@dataclass(frozen=True)
class LinkConfig:
    bedside_host: str = _f("127.0.0.1", "address the console connects to")
    bind_host: str = _f("127.0.0.1", "address the bedside binds (0.0.0.0 for every interface)")
    control_port: int = _f(5571, "bedside ROUTER port for commands and acks", 1024, 65535)
    telemetry_port: int = _f(5572, "bedside PUB port for telemetry and events", 1024, 65535)
    video_port: int = _f(5573, "bedside ROUTER port for encoded stereo video (video/sender.py)", 1024, 65535)
    console_timeout_ms: int = _f(
        100, "console declares the link LOST after this long without an ack or telemetry", 10, 5000
    )
    paths: str = _f(
        "", "more network paths to the bedside besides the default one (docs/operations.md, 'Redundant paths'): "
        "comma-separated HOST[:CONTROL_PORT[:TELEMETRY_PORT[:VIDEO_PORT[:VOICE_PORT]]]], missing ports = the "
        "link.*_port ones (and voice.port); the console connects to each, the bedside binds each; every command "
        "and every voice packet goes out on every path")

    def __post_init__(self) -> None:
        link_paths(self, "console")  # a malformed entry is a ConfigError naming link.paths


MAX_PATHS = 4
"""The default path and at most three more: every path costs a receive (and a dropped copy) per command."""


@dataclass(frozen=True)
class PathEndpoint:
    """One network path to the bedside: where the console connects (or the bedside binds) its control,
    telemetry and video sockets. Path 0 is the default one (link.bedside_host / link.bind_host). The voice
    endpoint of each path is `voice_paths` (its port may be given here; None = voice.port)."""

    index: int
    host: str
    control_port: int
    telemetry_port: int
    video_port: int
    voice_port: int | None = None

    @property
    def name(self) -> str:
        return f"path{self.index}"


def link_paths(link: LinkConfig, side: str) -> tuple[PathEndpoint, ...]:
    """Every path, the default one first: `side` "console" starts from link.bedside_host, "bedside" from
    link.bind_host. ConfigError naming link.paths for an entry that is not HOST[:PORT[:PORT[:PORT[:PORT]]]], a port
    out of range, a path given twice, or more than MAX_PATHS in all."""
    first = link.bedside_host if side == "console" else link.bind_host
    out = [PathEndpoint(0, first, link.control_port, link.telemetry_port, link.video_port)]
    for raw in (e.strip() for e in link.paths.split(",")) if link.paths.strip() else ():
        host, *ports = raw.split(":")
        if not host or len(ports) > 4 or not all(p.isdigit() and 1024 <= int(p) <= 65535 for p in ports):
            raise ConfigError(f"link.paths: {raw!r} is not HOST[:CONTROL_PORT[:TELEMETRY_PORT[:VIDEO_PORT"
                              "[:VOICE_PORT]]]] with ports 1024..65535: write e.g. 10.0.2.1 or "
                              "127.0.0.1:5591:5592:5593:5595")
        got = [int(p) for p in ports] + [link.control_port, link.telemetry_port, link.video_port, None][len(ports):]
        out.append(PathEndpoint(len(out), host, *got))
    seen: set[tuple[str, int]] = set()
    for p in out:
        for port in (p.control_port, p.telemetry_port, p.video_port, *((p.voice_port,) if p.voice_port else ())):
            if (p.host, port) in seen:
                raise ConfigError(f"link.paths: {p.host}:{port} is used twice: each path needs endpoints of its own "
                                  "(another host, or other ports)")
            seen.add((p.host, port))
    if len(out) > MAX_PATHS:
        raise ConfigError(f"link.paths: {len(out)} paths; at most {MAX_PATHS} (the default one and "
                          f"{MAX_PATHS - 1} more): drop some")
    return tuple(out)


def voice_paths(cfg: Config, side: str) -> tuple[tuple[str, int], ...]:
    """(host, port) of the voice endpoint on every path, the default one first (voice/link.py sends every voice
    packet on each): `side` "console" connects to voice.station_host (or link.bedside_host) on path 0, "station"
    binds link.bind_host; path k uses its link.paths host and VOICE_PORT (default voice.port). Checked only where
    voice runs (`teleop voice`, or voice.enabled): a ConfigError when two paths would share a voice endpoint or
    one would be a control/telemetry/video endpoint."""
    paths = link_paths(cfg.link, "console" if side == "console" else "bedside")
    out = [((cfg.voice.station_host or p.host) if p.index == 0 and side == "console" else p.host,
            p.voice_port or cfg.voice.port) for p in paths]
    taken = {(p.host, port) for p in paths for port in (p.control_port, p.telemetry_port, p.video_port)}
    for k, ep in enumerate(out):
        if ep in taken or ep in out[:k]:
            what = "voice.port" if k == 0 else f"link.paths: path{k}'s voice endpoint"
            raise ConfigError(f"{what} {ep[0]}:{ep[1]} is already another endpoint: every path needs a voice endpoint "
                              "of its own; set voice.port, or give the path a VOICE_PORT (HOST:C:T:V:VOICE_PORT)")
        taken.add(ep)
    return tuple(out)


@dataclass(frozen=True)
class BedsideConfig:
    watchdog_ms: int = _f(50, "hold every arm if no valid command arrives for this long", 5, 1000)
    max_command_age_ms: float = _f(
        150.0, "reject a command queued this much beyond the link's best delay of the last 10 s (the backstop "
        "behind the console's latency policy: keep it above teleop.latency_hard_ms / 2)", 1.0, 1000.0
    )
    first_command_ms: int = _f(
        2000, "after ENABLE (arms held), how long the first servo_cp may take: at least one round trip", 50, 10000
    )
    driver_watchdog_ms: float = _f(
        60.0, "each arm driver holds on its own if the bedside loop does not service it for this long (a stalled "
        "loop; docs/architecture.md, the arm driver contract; >= bedside.watchdog_ms)", 10.0, 1000.0)
    takeover_silence_ms: float = _f(
        1000.0, "another surgeon may take control of a session held for any reason (an e-stop, absence) once the "
        "controlling console has sent nothing, not even a ping (50 Hz while held), for this long: its console or "
        "link is gone (docs/operations.md, takeover; > bedside.watchdog_ms)", 200.0, 60000.0)
    tick_hz: int = _f(1000, "arm simulation and watchdog rate", 100, 2000)
    telemetry_hz: int = _f(200, "measured_cp/measured_js/operating_state publish rate", 100, 1000)
    arm_driver: str = _f(
        "simulated", "which arm driver moves the arms (bedside/drivers.py; the contract: docs/architecture.md)",
        choices=("simulated",)
    )
    max_step_mm: float = _f(5.0, "largest position change one servo_cp may ask for (>= teleop.max_step_mm)",
                            0.1, 50.0)
    max_rot_step_deg: float = _f(
        5.0, "largest orientation change one servo_cp may ask for (>= teleop.max_rot_step_deg)", 0.1, 45.0
    )
    max_speed_mm_s: float = _f(
        250.0, "tool-tip speed limit: commands faster on average over bedside.rate_window_ms are refused, and the "
        "arm driver never moves faster (>= teleop.max_speed_mm_s)", 1.0, 2000.0)
    max_rot_speed_deg_s: float = _f(360.0, "tool orientation rate limit, judged and kept as the speed is "
                                    "(>= teleop.max_rot_speed_deg_s)", 1.0, 2000.0)
    max_jaw_speed_rad_s: float = _f(6.0, "jaw opening/closing rate limit, judged and kept as the speed is "
                                    "(>= teleop.jaw_rate_rad_s)", 0.1, 50.0)
    rate_window_ms: float = _f(
        200.0, "the speed limits are judged on the average over this window of command send times "
        "(safety/limits.py RateWindow)", 20.0, 2000.0)
    rate_jitter_ms: float = _f(
        20.0, "how much later than the tick that computed it the console may send a command: the speed check "
        "allows this much more time (a stream above speed x (1 + jitter/window) is refused)", 1.0, 200.0)
    realtime_priority: int = _f(
        10, "SCHED_FIFO priority of the control loop and its zmq I/O thread (0 = normal scheduling; not "
        "permitted = a warning and normal scheduling; docs/architecture.md)", 0, 49
    )
    cpu_wake_latency_us: int = _f(
        -1, "hold every CPU's wake-up latency at or below this many µs while the bedside runs (Linux PM QoS, "
        "/dev/cpu_dma_latency: idle CPUs poll instead of halting; 0 = poll; -1 = the machine's own policy). For a "
        "dedicated bedside host: it cut the raw round trip here from ~250 to ~57 µs (docs/operations.md)", -1, 10000)
    tick_bound_ms: float = _f(
        10.0, "a loop iteration starting later than this after the previous one is over the bound: counted "
        "(COUNTERS loop_over_bound), a LOOP_OVERRUN event (<= 1/s), every thread's stack captured in "
        "logging.stall_dir (above the tick period 1000/tick_hz; docs/architecture.md, loop health)", 1.0, 1000.0)
    arms: str = _f("PSM1,PSM2,PSM3,ECM", "the arms mounted at this bedside, comma-separated; a command that moves "
                   "any other is refused (REJECTED_ARM) and it is reported DISABLED, not homed")
    psm1_rcm_mm: str = _f("80,0,0", "PSM1's base: its remote centre of motion (the incision it pivots about), "
                          "x,y,z mm in the patient frame")
    psm1_insertion_mm: str = _f("30,220", "PSM1's workspace: tip depth below its RCM, min,max mm (within the "
                                "joint limits' cone)")
    psm2_rcm_mm: str = _f("-80,0,0", "PSM2's base (RCM), x,y,z mm in the patient frame")
    psm2_insertion_mm: str = _f("30,220", "PSM2's workspace: tip depth below its RCM, min,max mm")
    psm3_rcm_mm: str = _f("-60,80,0", "PSM3's base (RCM), x,y,z mm in the patient frame")
    psm3_insertion_mm: str = _f("30,220", "PSM3's workspace: tip depth below its RCM, min,max mm")
    ecm_rcm_mm: str = _f("0,-60,20", "the endoscope arm's base (RCM), x,y,z mm in the patient frame")
    ecm_insertion_mm: str = _f("30,180", "the endoscope's workspace: tip depth below its RCM, min,max mm")
    tissue_z_mm: float = _f(-110.0, "height of the simulated tissue surface, patient frame (z up; safety/tissue.py)",
                            -1000.0, 1000.0)
    tissue_stiffness_n_mm: float = _f(0.3, "tissue spring: contact force per mm a tip presses in", 0.001, 100.0)
    tissue_damping_n_s_m: float = _f(2.0, "tissue damper: force per m/s of a tip going in", 0.0, 1000.0)
    tissue_max_depth_mm: float = _f(
        10.0, "refuse a setpoint deeper than this inside the tissue (REJECTED_TISSUE_DEPTH): the contact force at "
        "rest stays below stiffness x depth", 0.0, 100.0)

    def __post_init__(self) -> None:
        _bound_above_period("bedside", self.tick_bound_ms, "tick_hz", self.tick_hz)
        mounted = self.mounted_arms()
        unknown = [a for a in mounted if a not in BEDSIDE_ARMS]
        if unknown or not mounted or len(set(mounted)) != len(mounted):
            raise ConfigError(f"bedside.arms: {self.arms!r} must name each mounted arm once, from "
                              f"{', '.join(BEDSIDE_ARMS)}")
        for arm in BEDSIDE_ARMS:
            self.arm_rcm_m(arm)
            self.arm_insertion_m(arm)

    def mounted_arms(self) -> tuple[str, ...]:
        return tuple(a.strip() for a in self.arms.split(",") if a.strip())

    def arm_rcm_m(self, arm: str) -> tuple[float, float, float]:
        """Arm `arm`'s remote centre of motion in metres; ConfigError naming the key if it is not x,y,z mm."""
        x, y, z = _mm_list(self, f"{arm.lower()}_rcm_mm", 3, -1000.0, 1000.0)
        return x / 1e3, y / 1e3, z / 1e3

    def arm_insertion_m(self, arm: str) -> tuple[float, float]:
        """Arm `arm`'s insertion range (min, max) in metres; ConfigError naming the key if it is not min<max mm."""
        key = f"{arm.lower()}_insertion_mm"
        lo, hi = _mm_list(self, key, 2, 5.0, 500.0)
        if lo >= hi:
            raise ConfigError(f"bedside.{key}: {getattr(self, key)!r}: min must be below max (min,max in mm)")
        return lo / 1e3, hi / 1e3


BEDSIDE_ARMS = ("PSM1", "PSM2", "PSM3", "ECM")
"""The arms a bedside may mount: transport.messages.ARM_NAMES (base imports nothing of ours; a test compares)."""


def _mm_list(cfg: Any, key: str, n: int, lo: float, hi: float) -> tuple[float, ...]:
    """bedside.`key`'s comma-separated millimetres: `n` finite numbers in [lo, hi], else a ConfigError naming it."""
    text = getattr(cfg, key)
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) != n or not all(lo <= v <= hi for v in vals):
        raise ConfigError(f"bedside.{key}: {text!r} must be {n} comma-separated numbers of mm in [{lo:g}, {hi:g}]")
    return vals


@dataclass(frozen=True)
class ConsoleConfig:
    rate_hz: int = _f(1000, "servo_cp stream rate", 100, 2000)
    master: str = _f(
        "auto", "the one master that drives (docs/masters.md): a scripted trajectory (circle, figure8, still), a "
        "recorded file, the window's keyboard/mouse (needs the window), a SpaceMouse (hidapi), a network bridge "
        "(haptic devices, two-way: force feedback); auto = keyboard with the window, circle without",
        choices=("auto", "circle", "figure8", "still", "file", "keyboard", "spacemouse", "bridge")
    )
    master_file: str = _f("", "recorded master trajectory (CSV) when master = 'file'")
    engage_at_s: float = _f(
        0.5, "scripted masters press engage this long after start (after the presence debounce)", 0.0, 3600.0
    )
    master_port: int = _f(5580, "loopback port where the window's keyboard/mouse master streams its poses",
                          1024, 65535)
    master_timeout_ms: float = _f(50.0, "hold if the streamed master goes silent this long", 5.0, 1000.0)
    bridge_endpoint: str = _f(
        "tcp://127.0.0.1:5583", "console.master = bridge: where the console binds its SUB for the bridge's "
        "samples (docs/masters.md; never the window's console.master_port)")
    bridge_force_endpoint: str = _f(
        "tcp://127.0.0.1:5584", "console.master = bridge: where the console binds its PUB of force feedback")
    spacemouse_stale_ms: float = _f(
        250.0, "a SpaceMouse deflected but silent this long is a FAULT (stalled or unplugged)", 20.0, 5000.0)
    force_gain: float = _f(0.2, "force feedback: master force per newton at the tool tip (dVRK's bilateral "
                           "example: 0.2; 0 = no force feedback)", 0.0, 2.0)
    force_max_n: float = _f(3.0, "force feedback: saturation, N at the master per hand", 0.0, 20.0)
    force_smoothing_hz: float = _f(
        100.0, "force feedback: first-order low-pass cut-off (0 = none; the lag it adds is what passivity "
        "guards)", 0.0, 1000.0)
    force_stale_ms: float = _f(
        20.0, "force feedback: a force not refreshed by telemetry for this long starts to fade", 2.0, 1000.0)
    force_fade_ms: float = _f(
        30.0, "force feedback: a stale force fades linearly to zero over this long (never holds)", 0.0, 1000.0)
    force_playout_ms: float = _f(
        10.0, "force feedback: the most the force playout may delay telemetry's forces to hand them to the master "
        "at the spacing the bedside measured them, not in the bunches a jittery link delivers (0 = none: the "
        "newest at once; console/force_playout.py)", 0.0, 100.0)
    force_passivity: bool = _f(
        True, "force feedback: time-domain passivity observer + controller (Hannaford & Ryu 2002; "
        "docs/masters.md): the master never receives more energy than it put in")
    window_nice: int = _f(
        0, "nice value of the console window's process (its decoding and painting; the engine's loop is SCHED_FIFO "
        "and does not depend on it): higher = yield the CPU to the other time-shared work on this machine "
        "(console/ui/app.py; docs/benchmarks.md, 'The window demo')", 0, 19)
    ui_state_port: int = _f(5581, "loopback PUB port: engine state and events for the window", 1024, 65535)
    ui_intent_port: int = _f(5582, "loopback PULL port: heartbeats, intents, video reports from the window",
                             1024, 65535)
    gui_timeout_ms: float = _f(250.0, "hold if the window's heartbeat is missing this long", 50.0, 5000.0)
    presence: str = _f(
        "toggle", "how the window's keyboard master knows the surgeon is there: 'held' = only while Space (or a "
        "pedal mapped to it) is held; 'toggle' = Space or the Present button toggles it, and it ends when the "
        "window loses focus or after console.presence_idle_s without any key or mouse input (docs/user-guide.md)",
        choices=("held", "toggle"))
    presence_idle_s: float = _f(
        20.0, "'toggle' presence ends after this long without a key or mouse input: a surgeon who walked away",
        2.0, 600.0)
    alarm_pause_s: float = _f(
        120.0, "an alarm silenced on the console or the station sounds again after this long if still present "
        "(IEC 60601-1-8 audio paused; a new alarm sounds at once)", 10.0, 300.0)
    alarm_volume: float = _f(0.5, "loudness of the alarm tones, 0..1 of full scale (0 = visual alarms only)",
                             0.0, 1.0)
    alarm_output: str = _f(
        "default", "where alarm tones play: 'default' or a sound device (name or index), 'null' (none), "
        "'file:PATH' (a WAV file); a device that cannot open falls back to 'null' with a warning")
    realtime_priority: int = _f(
        10, "SCHED_FIFO priority of the 1 kHz engine loop and its zmq I/O thread (0 = normal scheduling; not "
        "permitted = a warning and normal scheduling; docs/architecture.md)", 0, 49
    )
    cpu_wake_latency_us: int = _f(
        -1, "hold every CPU's wake-up latency at or below this many µs while the console runs (Linux PM QoS, as "
        "bedside.cpu_wake_latency_us; -1 = the machine's own policy)", -1, 10000)
    tick_bound_ms: float = _f(
        10.0, "an engine tick starting later than this after the previous one is over the bound: counted, a "
        "LOOP_OVERRUN event (<= 1/s), every thread's stack captured in logging.stall_dir (above the period "
        "1000/rate_hz; docs/architecture.md, loop health)", 1.0, 1000.0)

    def __post_init__(self) -> None:
        _bound_above_period("console", self.tick_bound_ms, "rate_hz", self.rate_hz)
        for key in ("bridge_endpoint", "bridge_force_endpoint"):
            if not getattr(self, key).startswith(("tcp://", "ipc://")):
                raise ConfigError(f"console.{key}: {getattr(self, key)!r} is not a ZeroMQ endpoint: use "
                                  "tcp://HOST:PORT or ipc://PATH")
        if self.bridge_endpoint == self.bridge_force_endpoint:
            raise ConfigError("console.bridge_force_endpoint equals console.bridge_endpoint: give the force stream "
                              "its own port")
        if self.bridge_endpoint.endswith(f":{self.master_port}"):
            raise ConfigError(f"console.bridge_endpoint uses console.master_port ({self.master_port}), the window's "
                              "keyboard/mouse stream: two masters would drive at once; pick another port")


@dataclass(frozen=True)
class VideoConfig:
    """Stereo video (docs/video.md). Sizes are per eye; both eyes travel packed in one picture."""

    source: str = _f(
        "rendered",
        "rendered (the endoscope's view drawn from the arms' state) | synthetic (a test pattern) | file:SBS.mp4 | "
        "file:L.mp4,R.mp4 | usb:0 | usb:0,1 | realsense[:SERIAL] | realsense-color[:SERIAL] | realsense-file:REC.db3",
    )
    hfov_deg: float = _f(75.0, "rendered endoscope: horizontal field of view of each eye", 20.0, 150.0)
    baseline_mm: float = _f(5.0, "rendered endoscope: distance between the two eyes (stereo baseline)", 0.5, 50.0)
    width: int = _f(1280, "per-eye width in px (synthetic source and camera request)", 160, 4096)
    height: int = _f(720, "per-eye height in px", 96, 4096)
    fps: int = _f(60, "capture rate", 1, 240)
    codec: str = _f("h264", "h264 for long-distance links, jpeg for LAN/monitoring", choices=("h264", "jpeg"))
    bitrate_kbps: int = _f(12000, "H.264 target for the stereo pair (VBV-capped)", 200, 100000)
    min_bitrate_kbps: int = _f(3000, "adaptive bitrate floor before the resolution is lowered", 100, 100000)
    vbv_ms: float = _f(33.0, "VBV buffer in ms of the target rate: largest single-frame burst", 5.0, 1000.0)
    refresh_frames: int = _f(60, "intra-refresh period in frames (a lost frame heals within this)", 2, 600)
    encoder_threads: int = _f(0, "libx264 threads (0 = x264's choice)", 0, 16)
    opencv_threads: int = _f(0, "OpenCV threads in the bedside's video process (drawing, colour conversion; 0 = "
                                "OpenCV's own, one per core; the console window always uses 1). A/B with "
                                "`teleop bench frames --opencv-threads N`", 0, 16)
    jpeg_quality: int = _f(80, "JPEG quality", 10, 100)
    adaptive: bool = _f(True, "lower bitrate, then resolution, when frames start queueing")
    fit_machine: bool = _f(True, "lower size, then frame rate, while drawing/encoding or decoding/painting a frame "
                                 "takes too much of its period (video/adapt.py); restore when it no longer does")
    min_fps: int = _f(15, "frame-rate floor when fitting the picture to a busy machine", 1, 240)
    start_step: int = _f(0, "fitting: start this many steps down the ladder (0 = the configured picture; 3 = half "
                            "size at half rate) and climb while the machines keep up (video/adapt.py)", 0, 4)
    busy_high: float = _f(0.7, "a stage taking this share of the frame period (smoothed) is busy: step down",
                          0.1, 2.0)
    busy_low: float = _f(0.45, "step up only while every stage, projected to the better mode, stays below this "
                               "share of its period", 0.05, 2.0)
    max_queue_ms: float = _f(
        50.0, "skip capture frames while the oldest unacknowledged frame exceeds best RTT + this", 5.0, 2000.0
    )
    viewer_timeout_ms: int = _f(1000, "sender forgets a viewer silent this long", 100, 60000)
    stale_ms: float = _f(
        200.0, "hold: newest frame older than this, or no new frame for this long", 20.0, 5000.0
    )
    failover_ms: float = _f(
        60.0, "several paths (link.paths): the viewer moves the stream to another path when its path has been silent "
        "(no frame, no probe echo) this long while the other answered (< video.stale_ms, with a frame interval "
        "either side, so a cut path never makes the picture stale; video/failover.py)",
        10.0, 5000.0)
    stuck_ms: float = _f(
        500.0, "hold: camera content/counter unchanged this long while frames arrive", 50.0, 10000.0
    )


@dataclass(frozen=True)
class TeleopConfig:
    """Console-side teleoperation (console/controller.py); docs/teleoperation.md argues each default."""

    motion_scale: float = _f(0.2, "tool motion per unit of hand motion at start (dVRK default)", 0.01, 4.0)
    scale_min: float = _f(0.1, "lowest motion scale the surgeon may select live", 0.01, 4.0)
    scale_max: float = _f(1.0, "highest motion scale the surgeon may select live", 0.01, 4.0)
    camera_scale: float = _f(0.2, "endoscope motion per unit of mean hand motion in camera mode", 0.01, 4.0)
    align_tolerance_deg: float = _f(
        5.0, "following starts only when master and tool orientations agree this well (dVRK: 5)", 0.5, 45.0
    )
    swap_hand: str = _f("left", "the hand the arm-swap pedal moves to the idle instrument (console/hands.py)",
                        choices=("left", "right"))
    tremor_enabled: bool = _f(True, "filter physiological tremor out of the master positions")
    tremor_adaptive: bool = _f(True, "track the tremor frequency inside the band (else a fixed notch)")
    tremor_band_lo_hz: float = _f(8.0, "lower edge of the physiological tremor band", 1.0, 100.0)
    tremor_band_hi_hz: float = _f(12.0, "upper edge of the physiological tremor band", 1.0, 100.0)
    tremor_q: float = _f(2.2, "notch quality: higher = narrower and less lag at 1 Hz", 0.5, 20.0)
    tremor_track_s: float = _f(0.2, "time constant of the tremor-frequency estimate", 0.01, 10.0)
    workspace_x_min_mm: float = _f(-120.0, "console workspace box, patient frame", -2000.0, 2000.0)
    workspace_x_max_mm: float = _f(120.0, "console workspace box, patient frame", -2000.0, 2000.0)
    workspace_y_min_mm: float = _f(-100.0, "console workspace box, patient frame", -2000.0, 2000.0)
    workspace_y_max_mm: float = _f(100.0, "console workspace box, patient frame", -2000.0, 2000.0)
    workspace_z_min_mm: float = _f(-200.0, "console workspace box, patient frame", -2000.0, 2000.0)
    workspace_z_max_mm: float = _f(-20.0, "console workspace box, patient frame", -2000.0, 2000.0)
    max_speed_mm_s: float = _f(150.0, "tool-tip speed the console never commands beyond", 1.0, 2000.0)
    max_step_mm: float = _f(2.0, "largest position change between two commands (<= bedside.max_step_mm)",
                            0.01, 50.0)
    max_rot_speed_deg_s: float = _f(180.0, "tool orientation rate the console never exceeds", 1.0, 2000.0)
    max_rot_step_deg: float = _f(
        2.0, "largest orientation change between two commands (<= bedside.max_rot_step_deg)", 0.01, 45.0
    )
    jaw_open_rad: float = _f(1.0, "jaw angle for a fully open gripper", 0.05, 3.0)
    jaw_rate_rad_s: float = _f(3.0, "jaw follows the gripper no faster than this", 0.1, 50.0)
    latency_warn_ms: float = _f(100.0, "RTT above which the console warns and lowers the scale", 1.0, 5000.0)
    latency_hard_ms: float = _f(250.0, "RTT above which following stops and the arms hold", 1.0, 10000.0)
    latency_min_factor: float = _f(0.5, "scale multiplier reached at the hard threshold", 0.05, 1.0)
    latency_settle_s: float = _f(2.0, "RTT must stay below the warning this long before re-engaging",
                                 0.0, 60.0)
    presence_on_ms: float = _f(200.0, "presence must be seen this long before it counts", 0.0, 5000.0)
    presence_off_ms: float = _f(30.0, "absence must last this long before the arms hold", 0.0, 1000.0)


@dataclass(frozen=True)
class SecurityConfig:
    """CurveZMQ on every socket (docs/security.md). `insecure` exists for debugging only and says so loudly."""

    insecure: bool = _f(False, "DEBUG ONLY: no encryption, no authentication (warns at every start)")
    keys_dir: str = _f("~/.config/teleop/keys", "keys directory made by `teleop keys init`")
    identity: str = _f("surgeon", "this station's client key name in keys_dir/clients/")
    server_key: str = _f("", "pinned bedside public key file (default: keys_dir/bedside.key)")


@dataclass(frozen=True)
class RecordingConfig:
    """Black-box MCAP recording of every channel (docs/recording.md), by a child process of each role."""

    enabled: bool = _f(True, "record every channel to MCAP files (the black box); off only for debugging")
    dir: str = _f(str(Path(os.environ.get("XDG_STATE_HOME") or "~/.local/state") / "teleop" / "recordings"),
                  "directory for <role>-<date>-<nnn>.mcap files (default: the XDG state directory)")
    compression: str = _f("zstd", "chunk compression", choices=("zstd", "lz4", "none"))
    chunk_ms: int = _f(250, "close a chunk and flush the file at least this often: a kill loses at most this",
                       20, 5000)
    max_file_mb: float = _f(1024.0, "start a new file beyond this size", 1.0, 100000.0)
    max_file_s: float = _f(600.0, "start a new file after this long (also bounds the recorder's chunk index memory)",
                           1.0, 86400.0)
    retention_mb: float = _f(
        50000.0, "delete this role's oldest files while the directory holds more (>= max_file_mb)", 1.0, 1e7
    )
    video: bool = _f(True, "record the encoded video as sent (bedside) and as received (console window)")
    control_queue: int = _f(
        400, "producer->recorder queue for control data, in batches (one per 10 ms of a loop); full = counted drop",
        10, 1000000
    )
    video_queue: int = _f(120, "producer->recorder queue for video, in frames (2 s at 60 fps); full = counted drop",
                          1, 10000)
    live_view: bool = _f(False, "serve what is recorded, read-only, to Foxglove over a WebSocket (recording/live.py)")
    live_host: str = _f("127.0.0.1", "address the live view binds: loopback; reach it through an SSH tunnel "
                                     "(it has no CURVE roles: docs/recording.md, Live view)")
    live_port: int = _f(8765, "TCP port of the live view (0: any free port, printed in the log)", 0, 65535)

    def __post_init__(self) -> None:
        if not self.dir.strip():
            raise ConfigError("recording.dir must not be empty")
        if not self.live_host.strip():
            raise ConfigError("recording.live_host must not be empty (127.0.0.1 keeps the live view on this host)")


@dataclass(frozen=True)
class LoggingConfig:
    level: str = _f("INFO", "log level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    stall_dir: str = _f(str(Path(os.environ.get("XDG_STATE_HOME") or "~/.local/state") / "teleop" / "stalls"),
                        "directory for the stacks of every thread captured when a control loop overran its "
                        "tick bound (<role>-<date>-<pid>-<n>.txt; default: the XDG state directory)")
    stall_stacks: str = _f("loop", "whose stacks a stall capture writes: 'loop' (the stalled loop's thread, safe) or "
                           "'all' (every thread: names a thread holding the GIL, but walks stacks other CPUs may be "
                           "changing and can crash the process; for diagnosis only, docs/reliability.md)",
                           choices=("loop", "all"))


@dataclass(frozen=True)
class VoiceConfig:
    """The voice intercom between the console and the bedside station (voice/, docs/operations.md, Audio)."""

    enabled: bool = _f(False, "start the voice intercom with the console (`teleop voice` runs the station's end)")
    station_host: str = _f("", "address of the station's voice endpoint (empty: link.bedside_host)")
    port: int = _f(5575, "station ROUTER port for voice (CURVE domain 'voice': surgeon and station keys only)",
                   1024, 65535)
    input: str = _f("default", "microphone: 'default', 'pulse', a PortAudio device name or index, 'tone:HZ', "
                    "'burst:HZ:PERIOD_MS', 'file:PATH.wav' or 'silence'")
    output: str = _f("default", "speaker: 'default', 'pulse', a device name or index, 'file:PATH.wav' or 'null'")
    mode: str = _f("ptt", "who hears the mic: 'ptt' (only while push-to-talk is held) or 'open' (always)",
                   choices=("ptt", "open"))
    volume: float = _f(1.0, "speaker volume (1 = as received)", 0.0, 2.0)
    bitrate: int = _f(32000, "Opus bit rate, bits/s", 6000, 128000)
    lost_ms: float = _f(500.0, "'voice link lost' after this long without a packet (alarm; arms do not hold)",
                        100.0, 10000.0)
    keepalive_ms: float = _f(100.0, "send a keepalive this often while not talking (< voice.lost_ms)", 20.0, 1000.0)
    jitter_min_ms: float = _f(10.0, "smallest playout buffer (one 10 ms frame at least)", 10.0, 200.0)
    jitter_max_ms: float = _f(200.0, "largest playout buffer the adaptive jitter buffer may grow to", 20.0, 1000.0)
    record: bool = _f(True, "record voice sent and heard at this end to MCAP (recording.dir; docs/recording.md)")


@dataclass(frozen=True)
class Config:
    link: LinkConfig = field(default_factory=LinkConfig)
    bedside: BedsideConfig = field(default_factory=BedsideConfig)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    teleop: TeleopConfig = field(default_factory=TeleopConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    recording: RecordingConfig = field(default_factory=RecordingConfig)
    voice: VoiceConfig = field(default_factory=VoiceConfig)

    def __post_init__(self) -> None:
        errors = relation_errors(self)
        if errors:
            raise ConfigError("\n".join(errors))
        if self.voice.enabled:
            voice_paths(self, "console")  # a shared voice endpoint is a ConfigError before any process starts

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)


RELATIONS: tuple[tuple[str, str, bool, str], ...] = (
    ("teleop.scale_min", "teleop.motion_scale", False, "the starting scale lies in the scale range"),
    ("teleop.motion_scale", "teleop.scale_max", False, "the starting scale lies in the scale range"),
    ("teleop.tremor_band_lo_hz", "teleop.tremor_band_hi_hz", True, "the tremor band needs a width"),
    ("teleop.latency_warn_ms", "teleop.latency_hard_ms", True, "the latency warning comes before the hold"),
    *((f"teleop.workspace_{a}_min_mm", f"teleop.workspace_{a}_max_mm", True, "the workspace box needs a size")
      for a in "xyz"),
    ("video.busy_low", "video.busy_high", True, "restoring the picture needs a margin below the busy limit"),
    ("video.failover_ms", "video.stale_ms", True, "the picture must move to another path before it goes stale"),
    ("recording.max_file_mb", "recording.retention_mb", False, "the current file alone would exceed the retention"),
    ("voice.keepalive_ms", "voice.lost_ms", True, "a quiet end must not look lost"),
    ("console.force_playout_ms", "console.force_stale_ms", True,
     "a force waiting in the playout must not already be stale"),
    ("voice.jitter_min_ms", "voice.jitter_max_ms", True, "the adaptive jitter buffer needs room to adapt"),
    ("bedside.watchdog_ms", "bedside.takeover_silence_ms", True,
     "a silent controller is a lost link only after the watchdog has held the arms"),
    ("bedside.watchdog_ms", "bedside.driver_watchdog_ms", False,
     "a driver holding on its own must not end a session the bedside's own watchdog would keep"),
    # The console clamps before the bedside checks (safety/limits.py, the same code, these numbers and the same
    # workspace box): a console allowed more than the bedside would be refused by it, and pause.
    *((f"teleop.{t}", f"bedside.{b}", False, "the bedside refuses what goes beyond it, so the console must not")
      for t, b in (("max_step_mm", "max_step_mm"), ("max_rot_step_deg", "max_rot_step_deg"),
                   ("max_speed_mm_s", "max_speed_mm_s"), ("max_rot_speed_deg_s", "max_rot_speed_deg_s"),
                   ("jaw_rate_rad_s", "max_jaw_speed_rad_s"))),
)
"""Every rule between two keys, as (lower key, higher key, strictly below?, why): one table, so every message
is worded the same way and leads with the key the user set (`relation_errors`)."""


def _value(cfg: Any, key: str) -> Any:
    section, name = key.split(".", 1)
    return getattr(getattr(cfg, section), name)


def relation_errors(cfg: Any, given: frozenset[str] | set[str] = frozenset(),
                    unknown: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """One line per broken rule of RELATIONS. Each names first the key the user set (`given`: keys from the
    file or --set), so that the fix points at what they typed, not at a default they never saw. Rules on a key
    in `unknown` (its value was refused, so the default stands in) are not judged."""
    out = []
    for lo, hi, strict, why in RELATIONS:
        if lo in unknown or hi in unknown:
            continue
        vl, vh = _value(cfg, lo), _value(cfg, hi)
        if vl < vh or (not strict and vl == vh):
            continue
        if hi in given and lo not in given:
            out.append(f"{hi}: {vh} is {'not above' if strict else 'below'} {lo} ({vl}); {why}: raise {hi} or "
                       f"lower {lo}")
        else:
            out.append(f"{lo}: {vl} is {'not below' if strict else 'above'} {hi} ({vh}); {why}: lower {lo} or "
                       f"raise {hi}")
    return out


def _check_value(section: str, f: dataclasses.Field, value: Any) -> Any:
    key = f"{section}.{f.name}"
    want = f.type if isinstance(f.type, type) else {"int": int, "float": float, "str": str, "bool": bool}[f.type]
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if want is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, want) or (want is not bool and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {want.__name__}, got {value!r}")
    meta = f.metadata
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, meta['choices']))}")
    if meta.get("min") is not None and value < meta["min"]:
        raise ConfigError(f"{key}: {value} is below the minimum {meta['min']}")
    if meta.get("max") is not None and value > meta["max"]:
        raise ConfigError(f"{key}: {value} is above the maximum {meta['max']}")
    return value


def _build(data: dict[str, Any]) -> Config:
    """Validate everything and report every problem at once (a line each, each naming its key): a file with
    three mistakes should cost one round trip, not three."""
    sections = {f.name: f for f in dataclasses.fields(Config)}
    errors: list[str] = []
    for name, value in data.items():
        if name not in sections:
            errors.append(f"unknown section [{name}]; known: {', '.join(sections)}")
        elif not isinstance(value, dict):
            errors.append(f"[{name}] must be a table")
    built = {}
    given: set[str] = set()
    refused: set[str] = set()
    for name, sf in sections.items():
        cls = sf.default_factory  # type: ignore[misc]
        fields = {f.name: f for f in dataclasses.fields(cls)}
        raw = data.get(name, {})
        values = {}
        for key, value in (raw.items() if isinstance(raw, dict) else ()):
            if key not in fields:
                errors.append(f"unknown key {name}.{key}; known: {', '.join(fields)}")
                continue
            try:
                values[key] = _check_value(name, fields[key], value)
                given.add(f"{name}.{key}")
            except ConfigError as exc:
                errors.append(str(exc))
                refused.add(f"{name}.{key}")
        try:
            built[name] = cls(**values)
        except ConfigError as exc:
            errors.append(str(exc))
            built[name] = cls()
    errors += relation_errors(SimpleNamespace(**built), given, refused)
    if errors:
        raise ConfigError("\n".join(errors))
    return Config(**built)


def parse_override(text: str) -> tuple[str, str, Any]:
    """Parse `section.key=value`; the value is read as TOML (numbers, booleans) or else taken as text."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    path, raw = text.split("=", 1)
    section, key = path.strip().split(".", 1)
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return section, key, value


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read the TOML file (if any), apply overrides, validate everything, return the frozen Config."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {p} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {p} is not valid TOML: {exc}") from None
    for text in overrides:
        section, key, value = parse_override(text)
        data.setdefault(section, {})
        if not isinstance(data[section], dict):
            raise ConfigError(f"[{section}] must be a table")
        data[section][key] = value
    return _build(data)


def with_overrides(cfg: Config, overrides: list[str] | tuple[str, ...]) -> Config:
    """A copy of `cfg` with more `section.key=value` overrides, validated the same way."""
    data = cfg.to_dict()
    for text in overrides:
        section, key, value = parse_override(text)
        data.setdefault(section, {})[key] = value
    return _build(data)


def to_toml(cfg: Config) -> str:
    """The config as TOML text, with each key's help as a comment: `teleop config --dump` prints it."""
    out = []
    for sf in dataclasses.fields(Config):
        section = getattr(cfg, sf.name)
        out.append(f"[{sf.name}]")
        for f in dataclasses.fields(section):
            v = getattr(section, f.name)
            lit = f'"{v}"' if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else repr(v)
            rng = ""
            if f.metadata.get("min") is not None:
                rng = f" [{f.metadata['min']}..{f.metadata['max']}]"
            elif f.metadata.get("choices"):
                rng = f" ({' | '.join(f.metadata['choices'])})"
            out.append(f"{f.name} = {lit}  # {f.metadata.get('help', '')}{rng}")
        out.append("")
    return "\n".join(out)
