"""Synthetic console + bedside recordings that follow docs/recording.md, for tests and benchmarks.

Why: the QA tools need recordings before (and besides) the real recorder, and a recording whose bedside half
is physically right, so a re-drive can reproduce it. So the bedside is the real sans-IO `BedsideAgent` fed a
scripted console stream on a fake clock (two hosts, clocks `offset_ns` apart, a fixed one-way delay), and
the video is the real synthetic source through the real H.264/JPEG encoder. The script repeats every
`CYCLE_S`: engage, follow (a smooth figure per instrument), clutch, a step-limit rejection, an 80 ms link
stall (the bedside watchdog freezes), re-engage.
"""

from __future__ import annotations

import base64
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from mcap.writer import CompressionType, Writer

from base.config import load_config
from bedside.agent import BedsideAgent
from console.engine import EngineEvent
from recording.catalog import BEDSIDE, CONSOLE, Topics, schema_bytes
from recording.catalog import SCHEMAS as CATALOG_SCHEMAS
from recording.convert import arm_transforms, console_event_json, event_json
from safety.loop_health import LoopHealth
from transport import codec
from transport.messages import (
    ARM_NAMES,
    HOLD_SETPOINT,
    Ack,
    AckStatus,
    ArmFlags,
    CartesianSetpoint,
    ConsoleFlags,
    Counters,
    Enable,
    EStop,
    Ping,
    Reason,
    ServoCp,
    Telemetry,
)

CYCLE_S = 5.0
INSTRUMENTS = ARM_NAMES[:2]
"""The arms the script drives (arm_mask 0b011: the right and left hands' PSM1 and PSM2); the others stay held."""
MS = 1_000_000
SCHEMAS = {
    BEDSIDE.command: "teleop.Command", BEDSIDE.ack: "teleop.Ack", BEDSIDE.telemetry: "teleop.Telemetry",
    BEDSIDE.event: "teleop.Event", BEDSIDE.freeze: "teleop.Freeze", BEDSIDE.counters: "teleop.Counters",
    BEDSIDE.video_frame: "teleop.VideoFrame", CONSOLE.command: "teleop.Command", CONSOLE.ack: "teleop.Ack",
    CONSOLE.telemetry: "teleop.Telemetry", CONSOLE.event: "teleop.ConsoleEvent",
    CONSOLE.link: "teleop.LinkStatus", CONSOLE.state: "teleop.ConsoleState",
    CONSOLE.video_frame: "teleop.VideoFrame", CONSOLE.stall: "teleop.Stall",
    BEDSIDE.config: "teleop.Config", CONSOLE.config: "teleop.Config",
    BEDSIDE.recording: "teleop.RecordingStatus", CONSOLE.recording: "teleop.RecordingStatus",
    BEDSIDE.tf: "foxglove.FrameTransform", CONSOLE.tf: "foxglove.FrameTransform",
}


# ------------------------------------------------------------------ message -> JSON (the catalogue's shapes)

def _pose(sp: CartesianSetpoint) -> dict:
    x, y, z, w = sp.orientation
    return {"position": list(sp.position), "orientation": {"x": x, "y": y, "z": z, "w": w}}


def command_json(t_ns: int, msg, peer: str) -> dict:
    d = {"t_ns": t_ns, "type": {ServoCp: "servo_cp", Enable: "enable", Ping: "ping", EStop: "estop"}.get(
        type(msg), "disable"), "epoch": msg.epoch, "seq": msg.seq, "send_ns": msg.send_ns, "peer": peer}
    if isinstance(msg, ServoCp):
        d["flags"] = {"operator_present": bool(msg.flags & ConsoleFlags.OPERATOR_PRESENT),
                      "clutch": bool(msg.flags & ConsoleFlags.CLUTCH), "camera": bool(msg.flags & ConsoleFlags.CAMERA)}
        d["arm_mask"] = msg.arm_mask
        d["arms"] = [{"name": n, **_pose(a), "jaw": a.jaw} for n, a in zip(ARM_NAMES, msg.arms, strict=True)]
    if isinstance(msg, EStop):
        d["engage"] = msg.engage
    return d


def ack_json(t_ns: int, a: Ack) -> dict:
    return {"t_ns": t_ns, "epoch": a.epoch, "seq": a.seq, "echo_seq": a.echo_seq, "echo_send_ns": a.echo_send_ns,
            "rx_ns": a.rx_ns, "status": a.status.name, "rejected": a.status.rejected,
            "operating_state": a.operating_state.name, "reason": a.reason.name}


def telemetry_json(t_ns: int, m: Telemetry) -> dict:
    arms = []
    for n, a in zip(ARM_NAMES, m.arms, strict=True):
        arms.append({"name": n, "mode": a.mode.name, "flags": [f.name for f in ArmFlags if f and f in a.flags],
                     "measured_cp": _pose(a.measured_cp), "setpoint_cp": _pose(a.setpoint_cp),
                     "jaw": a.measured_cp.jaw, "measured_js": list(a.measured_js)})
    return {"t_ns": t_ns, "epoch": m.epoch, "seq": m.seq, "operating_state": m.operating_state.name,
            "reason": m.reason.name, "estop": m.estop, "last_applied_seq": m.last_applied_seq, "arms": arms}


def _console_event(t_ns: int, source: str, name: str, reason: Reason, text: str) -> dict:
    return console_event_json(EngineEvent(t_ns, source, name, reason, text))


def _wall(ns: int) -> dict:
    return {"sec": ns // 1_000_000_000, "nsec": ns % 1_000_000_000}


# ------------------------------------------------------------------ a recording file being built

class _File:
    """Messages of one role, sorted by log_time on close (the recorder writes in arrival order)."""

    def __init__(self, role: str, mono_to_wall_ns: int, host: str = "synth") -> None:
        self.role, self.m2w, self.host = role, mono_to_wall_ns, host
        self.items: list[tuple[int, int, str, bytes]] = []

    def add(self, topic: str, t_ns: int, body: dict) -> None:
        self.items.append((t_ns + self.m2w, t_ns, topic, json.dumps(body, separators=(",", ":")).encode()))

    def write(self, path: Path, config_text: str, chunk_size: int = 256 * 1024) -> Path:
        self.items.sort(key=lambda it: it[0])
        with open(path, "wb") as f:
            w = Writer(f, chunk_size=chunk_size, compression=CompressionType.ZSTD)
            w.start(profile="", library="teleop-qa-synth")
            w.add_metadata("teleop.session", {"role": self.role, "host": self.host, "pid": "0",
                                              "mono_to_wall_ns": str(self.m2w), "version": "0.1.0",
                                              "config": config_text})
            chans: dict[str, int] = {}
            for log_t, pub_t, topic, data in self.items:
                if topic not in chans:
                    name = SCHEMAS.get(topic) or ("foxglove.PoseInFrame" if topic.endswith("_cp") else
                                                  "foxglove.CompressedVideo" if topic.endswith("/video") else
                                                  "teleop.Unknown")
                    body = (schema_bytes(name) if name in CATALOG_SCHEMAS else
                            json.dumps({"title": name, "type": "object"}).encode())
                    sid = w.register_schema(name, "jsonschema", body)
                    chans[topic] = w.register_channel(topic, "json", sid)
                w.add_message(chans[topic], log_time=log_t, data=data, publish_time=pub_t)
            w.finish()
        return path


@dataclass
class SynthResult:
    console: Path
    bedside: Path
    offset_ns: int
    """bedside monotonic − console monotonic."""
    console_t0_ns: int
    bedside_t0_ns: int
    truth: dict = field(default_factory=dict)
    """What the script did and the bedside counted (`story=True`): what qa/figures.py must find again."""


def _figure(home: tuple[float, float, float], tau: float, phase: float, amp: float) -> tuple[float, float, float]:
    """A smooth closed figure from `home` (zero offset at tau=0): ≈ 2π·amp/3 s ≈ 30 mm/s at amp 15 mm."""
    w = 2 * math.pi / 3.0
    return (home[0] + amp * math.sin(w * tau + phase) - amp * math.sin(phase),
            home[1] + amp * (math.cos(phase) - math.cos(w * tau + phase)),
            home[2] + 0.5 * amp * math.sin(2 * w * tau))


def synthesize(out_dir: str | Path, seconds: float = 4.0, video: str | None = "h264", eye_w: int = 320,
               eye_h: int = 192, fps: int = 30, offset_ns: int = 5_000_000_000, delay_us: int = 300,
               bitrate_kbps: int = 2000, refresh_frames: int = 30, amp_m: float = 0.015, story: bool = False,
               wall_ns: int = 1_700_000_000_000_000_000, host: str = "synth") -> SynthResult:
    """Write `console-…mcap` and `bedside-…mcap` into `out_dir`; returns their paths and clocks.

    `story` adds, in every cycle but the first, what a QA report must count (STORY below): a hold in the
    first-command grace, video-stale episodes with their holds, a refused engage, a console e-stop and its
    reset; `truth` then holds what happened. `wall_ns`: the wall clock at the console's start."""
    from video.codecs import H264Encoder, JpegEncoder
    from video.synthetic import SyntheticStereo

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = load_config(None, [f"video.width={eye_w}", f"video.height={eye_h}", f"video.fps={fps}",
                             f"video.refresh_frames={refresh_frames}", f"video.codec={video or 'h264'}",
                             *([f"bedside.first_command_ms={GRACE_MS}"] if story else [])])
    c0, b0 = 1_000_000_000_000, 1_000_000_000_000 + offset_ns
    con, bed = _File("console", wall_ns - c0, host), _File("bedside", wall_ns - b0, host)
    truth: dict = {"stale_episodes": [], "refusals": 0, "estops": 0, "holds": {}, "alarms": 0, "limit_rejections": 0,
                   "other_rejections": 0}
    stale_until = grace_until = -1
    video_live = False
    d = delay_us * 1000
    agent = BedsideAgent(cfg.bedside, b0, first_epoch=1000, teleop=cfg.teleop)
    # Both loops' health as the real loops record it; the console's stands still while it is stalled below.
    bed_loop = LoopHealth("bedside", ("arms",), int(cfg.bedside.tick_bound_ms * 1e6))
    con_loop = LoopHealth("console", ("engine",), int(cfg.console.tick_bound_ms * 1e6))
    homes = [a.measured.position for a in agent.arms]
    peer, user = b"console-1", "surgeon:synth"
    seq = 0
    epoch = 0
    tau = 0.0
    n_ms = int(seconds * 1000)
    session = False
    pending_enable = False
    last_tel = -1
    was_clutch = False
    limit_sent = -1
    for k in range(n_ms + 1):
        tc = c0 + k * MS
        tb = tc + offset_ns
        ph = (k % int(CYCLE_S * 1000)) / 1000.0
        cyc = k // int(CYCLE_S * 1000)
        agent.tick(tb)
        # ---- console decides
        msg = None
        stalled = 2.60 <= ph < 2.68 or tc < grace_until
        if story and cyc > 0:
            stale_until, video_live = _story(k, ph, tc, tb, con, agent, user, truth, stale_until, video_live,
                                             session and not was_clutch)
        bed_loop.tick(tb)
        bed_loop.lap(0, tb + 20_000 + 5_000 * (k % 7))  # the arms' step: 20-50 µs
        over = None if stalled else con_loop.tick(tc)
        if not stalled:
            con_loop.lap(0, tc + 40_000 + 10_000 * (k % 5))  # the engine's step: 40-80 µs
        if over is not None:
            truth["alarms"] += 1  # the console loop's overrun
            con.add(CONSOLE.event, tc, _console_event(tc, "loop", "overrun", Reason.LOOP_OVERRUN, over.text))
            con.add(CONSOLE.stall, tc, {"t_ns": tc, "role": "console", "tick_ms": over.period_ns / 1e6,
                                        "bound_ms": over.bound_ns / 1e6, "step": over.step,
                                        "step_ms": over.step_ns / 1e6, "unreported": over.unreported,
                                        "loop_stack": ['File "qa/synth.py", line 0 in synthetic_stall'],
                                        "stacks": "", "file": ""})
        if not stalled:
            want = (ph >= 2.78 or (ph < 2.6 and (cyc > 0 or ph >= 0.2))) and not (story and 4.5 <= ph < 4.7)
            if not session and not pending_enable and want:
                pending_enable = True
                seq += 1
                msg = Enable(epoch, seq, tc)
                con.add(CONSOLE.event, tc, _console_event(tc, "teleop", "engage", Reason.NONE, "engage pressed"))
            if msg is None and session:
                clutch = 1.2 <= ph < 1.6 or tc < stale_until  # a held arm: nothing commanded
                if clutch != was_clutch:
                    for arm in INSTRUMENTS:
                        a, b = ("FOLLOWING", "CLUTCHED") if clutch else ("CLUTCHED", "FOLLOWING")
                        con.add(CONSOLE.event, tc, _console_event(tc, "teleop", f"{arm} {a}->{b}", Reason.NONE,
                                                                     "clutch " + ("down" if clutch else "up")))
                    was_clutch = clutch
                if not clutch:
                    tau += 0.001
                sps = []
                for i in range(2):
                    p = _figure(homes[i], tau, 0.0 if i == 0 else 1.3, amp_m)
                    sps.append(CartesianSetpoint(p, (0.0, 0.0, 0.0, 1.0), 0.3 + 0.2 * math.sin(tau)))
                if 2.0 <= ph < 2.001 and limit_sent != cyc:  # one command 10 mm off: REJECTED_STEP
                    limit_sent = cyc
                    p = sps[0].position
                    sps[0] = CartesianSetpoint((p[0] + 0.01, p[1], p[2]), sps[0].orientation, sps[0].jaw)
                flags = ConsoleFlags.OPERATOR_PRESENT | (ConsoleFlags.CLUTCH if clutch else ConsoleFlags.NONE)
                seq += 1
                msg = ServoCp(epoch, seq, tc, flags, 0 if clutch else 0b011,
                              (*sps, *(HOLD_SETPOINT,) * (len(ARM_NAMES) - len(sps))))
            elif msg is None and k % 20 == 0:
                seq += 1
                msg = Ping(epoch, seq, tc)
        if msg is not None:
            con.add(CONSOLE.command, tc, command_json(tc, msg, ""))
            rx = tb + d
            bed.add(BEDSIDE.command, rx, command_json(rx, msg, user))
            for o in agent.on_message(rx, peer, codec.encode(msg), user):
                ack = codec.decode(o.data)
                assert isinstance(ack, Ack)
                bed.add(BEDSIDE.ack, rx, ack_json(rx, ack))
                rc = rx + d - offset_ns
                aj = ack_json(rc, ack)
                aj["rtt_us"] = (rc - ack.echo_send_ns) / 1000
                con.add(CONSOLE.ack, rc, aj)
                if ack.status is AckStatus.ENABLED:
                    epoch, session, pending_enable = ack.epoch, True, False
                    if story and cyc > 0 and 2.7 <= ph < 2.9 and not truth.get(f"grace{cyc}"):
                        truth[f"grace{cyc}"] = True  # the console says nothing through the first-command grace
                        grace_until = rc + (GRACE_MS + 30) * MS
                    con.add(CONSOLE.event, rc, _console_event(rc, "session", "granted", Reason.NONE,
                                                                 f"bedside granted epoch {ack.epoch}"))
                    for arm in INSTRUMENTS:
                        con.add(CONSOLE.event, rc, _console_event(rc, "teleop", f"{arm} ALIGNING->FOLLOWING",
                                                                     Reason.NONE, "tool follows"))
                elif ack.status.rejected and ack.status is not AckStatus.REJECTED_EPOCH:
                    kind = "limit_rejections" if ack.status in _LIMIT_STATUSES else "other_rejections"
                    truth[kind] += 1
                    why = Reason.LIMIT if ack.status in _LIMIT_STATUSES else ack.reason
                    con.add(CONSOLE.event, rc, _console_event(rc, "bedside", "REJECTION", why,
                                                                 f"seq {ack.echo_seq} {ack.status.name}"))
        agent.tick(tb + d + 1000)
        # ---- bedside publishes
        for e in agent.drain_events():
            bed.add(BEDSIDE.event, e.send_ns, event_json(e, e.send_ns))
            rc = e.send_ns + d - offset_ns
            con.add(CONSOLE.event, rc, _console_event(rc, "bedside", e.kind.name, e.reason, e.text))
            if e.to_state.name in ("PAUSED", "FAULT") and e.reason in (Reason.ESTOP, Reason.FAULT):
                truth["alarms"] += 1  # the bedside's e-stop or fault
            if e.to_state.name == "PAUSED" and e.from_state.name == "ENABLED":
                session = False
                for arm in INSTRUMENTS:
                    con.add(CONSOLE.event, rc, _console_event(rc, "teleop", f"{arm} FOLLOWING->HELD", e.reason,
                                                                 f"held: {e.reason.name}"))
                    truth["holds"][e.reason.name] = truth["holds"].get(e.reason.name, 0) + 1
        for fz in agent.drain_freezes():
            bed.add(BEDSIDE.freeze, fz.at_ns, fz.record())
        if k // 5 != last_tel:
            last_tel = k // 5
            tt = tb + d + 2000
            tel = codec.decode(agent.telemetry(tt))
            assert isinstance(tel, Telemetry)
            bed.add(BEDSIDE.telemetry, tt, telemetry_json(tt, tel))
            for name, a in zip(ARM_NAMES, tel.arms, strict=True):
                bed.add(BEDSIDE.pose(name), tt, {"timestamp": _wall(tt + bed.m2w),
                                                            "frame_id": f"{name}_base",
                                                            "pose": _foxpose(a.measured_cp)})
            con.add(CONSOLE.telemetry, tt + d - offset_ns, telemetry_json(tt + d - offset_ns, tel))
            if k % 20 == 0:  # recording.catalog.TF_HZ; the static part once a second
                tools = {name: a.measured_cp for name, a in zip(ARM_NAMES, tel.arms, strict=True)}
                for tf in arm_transforms(tools, tt + bed.m2w, k % 1000 == 0):
                    bed.add(BEDSIDE.tf, tt, tf)
        if k % 10 == 0 and msg is not None and isinstance(msg, ServoCp):
            for name, a in zip(ARM_NAMES, msg.arms, strict=True):
                con.add(CONSOLE.pose(name), tc, {"timestamp": _wall(tc + con.m2w),
                                                          "frame_id": f"{name}_base", "pose": _foxpose(a)})
        if k % 100 == 0:
            con.add(CONSOLE.link, tc, {"t_ns": tc, "link": "UP", "rtt_ms": 2 * d / 1e6 + 0.05 * math.sin(k / 700),
                                          "clock_offset_ns": offset_ns + 20_000 * ((k // 100) % 3 - 1),
                                          "session_epoch": epoch, "session_ready": session, "scale": 0.2,
                                          "arms": {a: ("FOLLOWING" if session else "HELD") if a in INSTRUMENTS
                                                   else "DISABLED" for a in ARM_NAMES},
                                          "hands": {"right": INSTRUMENTS[0], "left": INSTRUMENTS[1]},
                                          "counters": {"sent": seq, **con_loop.counters(),
                                                       "video_stale_episodes": len(truth["stale_episodes"])}})
        if k % 100 == 0:  # the engine's state as its window got it (console/runner.py), at STATE_RECORD_HZ
            stale = tc < stale_until
            con.add(CONSOLE.state, tc, _state_json(tc, agent, epoch, session, was_clutch, stale, 2 * d / 1e6,
                                                   offset_ns))
        if k % 1000 == 0:
            agent.on_loop_health(tb, bed_loop.counters())
            bed.add(BEDSIDE.counters, tb, {"t_ns": tb, "values": dict(codec.decode(agent.counters_message(tb))
                                                                        .values)} if isinstance(
                codec.decode(agent.counters_message(tb)), Counters) else {"t_ns": tb, "values": {}})
            for f, t in ((bed, tb), (con, tc)):
                f.add(Topics(f.role).recording, t, {"t_ns": t, "messages": len(f.items), "bytes": 0,
                                                  "dropped": {"control": 0, "video": 0}, "queue_depth": 0,
                                                  "file": f"{f.role}.mcap"})
    if video:
        _add_video(con, bed, video, cfg, seconds, fps, offset_ns, c0, b0, eye_w, eye_h, bitrate_kbps,
                   refresh_frames, H264Encoder, JpegEncoder, SyntheticStereo)
    toml = f"[video]\nwidth = {eye_w}\nheight = {eye_h}\nfps = {fps}\nrefresh_frames = {refresh_frames}\n"
    for f in (con, bed):
        f.add(Topics(f.role).config, (c0 if f is con else b0), {"t_ns": c0 if f is con else b0,
                                                              "video": {"width": eye_w, "height": eye_h, "fps": fps,
                                                                        "refresh_frames": refresh_frames}})
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(wall_ns // 1_000_000_000))
    cp = con.write(out / f"console-{stamp}-000.mcap", toml)
    bp = bed.write(out / f"bedside-{stamp}-000.mcap", toml)
    if story:
        truth["freezes"] = [(f.reason.name, f.latency_ns / 1e6) for f in agent.freezes]
        truth["grace_holds"] = sum(1 for k in truth if k.startswith("grace"))
        truth["handovers"] = sum(1 for e in bed.items if e[2] == BEDSIDE.event and b'"HANDOVER"' in e[3])
        truth["link_counter_episodes"] = len(truth["stale_episodes"])
        truth["wall_start_ns"] = wall_ns
    return SynthResult(cp, bp, offset_ns, c0, b0, truth)


_LIMIT_STATUSES = (AckStatus.REJECTED_STEP, AckStatus.REJECTED_ORIENTATION_STEP, AckStatus.REJECTED_WORKSPACE,
                   AckStatus.REJECTED_SPEED)
GRACE_MS = 100
"""bedside.first_command_ms in synthetic sessions: the story's grace hold comes 100 ms after its grant."""
STORY = ((3.20, 0.150), (3.60, 0.230))
"""Video-stale episodes of the story, (phase in the cycle, duration) in seconds: each holds the engaged arms."""


def _story(k: int, ph: float, tc: int, tb: int, con: _File, agent: BedsideAgent, user: str, truth: dict,
           stale_until: int, video_live: bool, engaged: bool) -> tuple[int, bool]:
    """One millisecond of the story: the console's video guard (events `video`, holds and their clearing, the
    engage that follows), a refused engage, and a console e-stop raised and reset at the bedside."""
    ms = round(ph * 1000)
    if not video_live:
        con.add(CONSOLE.event, tc, _console_event(tc, "video", "ok", Reason.NONE, "video live"))
        video_live = True
    for start, dur in STORY:
        if ms == round(start * 1000):
            con.add(CONSOLE.event, tc, _console_event(tc, "video", "stale", Reason.VIDEO_STALE,
                                                      "video stale: newest frame is 201 ms old (limit 200 ms)"))
            truth["stale_episodes"].append((tc, dur * 1000))
            truth["_held"] = engaged
            if engaged:
                for arm in INSTRUMENTS:
                    con.add(CONSOLE.event, tc, _console_event(tc, "teleop", f"{arm} FOLLOWING->HELD",
                                                              Reason.VIDEO_STALE, "video stale"))
                truth["holds"]["VIDEO_STALE"] = truth["holds"].get("VIDEO_STALE", 0) + len(INSTRUMENTS)
            stale_until = tc + round(dur * 1000) * MS
        if ms == round((start + dur) * 1000):
            con.add(CONSOLE.event, tc, _console_event(tc, "video", "ok", Reason.NONE, "video live"))
            con.add(CONSOLE.event, tc, _console_event(tc, "teleop", "inhibit cleared", Reason.VIDEO_STALE,
                                                      "VIDEO_STALE cleared: press engage to resume"))
            if truth.pop("_held", False):  # the surgeon engages again at once; the tool realigns
                for arm in INSTRUMENTS:
                    for a, b in (("HELD", "ALIGNING"), ("ALIGNING", "FOLLOWING")):
                        con.add(CONSOLE.event, tc, _console_event(tc, "teleop", f"{arm} {a}->{b}", Reason.NONE,
                                                                  "surgeon pressed engage"))
    if ms == 4200:
        truth["refusals"] += 1
        con.add(CONSOLE.event, tc, _console_event(tc, "teleop", "engage refused", Reason.OPERATOR_ABSENT,
                                                  "engage refused: operator absent (presence sensor)"))
    if ms == 4500:
        truth["estops"] += 1
        truth["alarms"] += 1  # the console's e-stop press
        con.add(CONSOLE.event, tc, _console_event(tc, "teleop", "estop", Reason.ESTOP, "console e-stop pressed"))
        agent.raise_estop(tb, "console", user, "the console e-stop")
    if ms == 4650:
        agent.reset_estop(tb, "console")
    return stale_until, video_live


def _state_json(tc: int, agent: BedsideAgent, epoch: int, session: bool, clutch: bool, stale: bool, rtt_ms: float,
                offset_ns: int) -> dict:
    """A console engine state message (console/runner.py `_publish_state`) with what the synthetic console knows."""
    arm_state = "HELD" if stale or not session else "CLUTCHED" if clutch else "FOLLOWING"
    hands = {"right": INSTRUMENTS[0], "left": INSTRUMENTS[1]}
    arms = {a: {"state": arm_state if a in INSTRUMENTS else "DISABLED",
                "reason": "VIDEO_STALE" if stale and a in INSTRUMENTS else "NONE", "guidance": "",
                "active_limits": [], "hand": {v: k for k, v in hands.items()}.get(a)} for a in ARM_NAMES}
    video = ({"state": "stale", "ok": False, "reason": "video stale: newest frame is 201 ms old (limit 200 ms)"}
             if stale else {"state": "ok", "ok": True, "reason": ""})
    return {"type": "state", "t_ns": tc, "link": "UP", "rtt_ms": rtt_ms, "rtt_history_ms": [rtt_ms] * 30,
            "clock_offset_ns": offset_ns,
            "bedside": {"state": agent.state.name, "reason": agent.reason.name, "estop": agent.estop},
            "session": {"epoch": epoch, "ready": session},
            "teleop": {"arms": arms, "hands": hands, "scale": 0.2, "effective_scale": 0.2, "operator_present": True,
                       "estop": False, "latency": {"level": "ok"}, "inhibits": {}},
            "video": video, "master": "synthetic", "counters": {}, "loop": {}, "paths": None}


def _foxpose(sp: CartesianSetpoint) -> dict:
    x, y, z = sp.position
    qx, qy, qz, qw = sp.orientation
    return {"position": {"x": x, "y": y, "z": z}, "orientation": {"x": qx, "y": qy, "z": qz, "w": qw}}


def _add_video(con: _File, bed: _File, codec_name: str, cfg, seconds: float, fps: int, offset_ns: int, c0: int,
               b0: int, eye_w: int, eye_h: int, kbps: int, refresh: int, H264Encoder, JpegEncoder,
               SyntheticStereo) -> None:
    src = SyntheticStereo(eye_w, eye_h, fps, paced=False)
    enc = (H264Encoder(2 * eye_w, eye_h, fps, kbps, refresh_frames=refresh) if codec_name == "h264"
           else JpegEncoder(2 * eye_w, eye_h, 80))
    fmt = "h264" if codec_name == "h264" else "jpeg"
    schema = "CompressedVideo" if fmt == "h264" else "CompressedImage"
    for n in range(int(seconds * fps)):
        cap = b0 + int(n * 1e9 / fps)
        pkt = enc.encode(src.render(n, cap), force_key=(n == 0))
        sent = cap + 4 * MS
        b64 = base64.b64encode(pkt.data).decode("ascii")
        meta = {"stream_id": 1, "frame_id": n, "capture_ns": cap, "send_ns": sent, "source_seq": n,
                "keyframe": pkt.keyframe, "layout": "SIDE_BY_SIDE", "width": 2 * eye_w, "height": eye_h,
                "size_bytes": len(pkt.data), "bitrate_kbps": kbps}
        body = {"timestamp": _wall(cap + bed.m2w), "frame_id": "endoscope_stereo", "data": b64, "format": fmt}
        bed.add(BEDSIDE.video, sent, body)
        bed.add(BEDSIDE.video_frame, sent, {"t_ns": sent, **meta})
        rc = sent + MS - offset_ns
        dec = rc + 3 * MS
        age = (dec + offset_ns - cap) / 1e6
        con.add(CONSOLE.video, rc, body)
        con.add(CONSOLE.video_frame, rc, {"t_ns": rc, **meta, "received_ns": rc, "decoded_ns": dec,
                                             "age_ms": age, "stale": False, "degraded": False})
    del schema
