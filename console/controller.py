"""The teleoperation controller: master samples and what the console knows of the bedside in, setpoints out.

Theory of operation
-------------------
Pure and sans-IO: the engine (console/engine.py) calls `step(now_ns, sample, view)` once per control tick
and sends what comes back. Nothing here reads a clock or a socket.

Each step, in this order:

1. Inputs. Presence is debounced (safety.presence); the RTT goes through the latency policy
   (safety.latency_policy); the master positions go through the tremor filter (console.tremor); a console
   e-stop press latches.
2. Holds. The first active hold condition — console e-stop, bedside e-stop, master fault, link lost,
   bedside fault, operator absent, RTT above the hard threshold, an external inhibit (video stale…), or the
   bedside session ending under us — moves every engaged arm to HELD with that reason. HELD arms are never
   commanded; only an engage press (rising edge) that no condition blocks takes them out.
3. Pedals. Clutch and camera levels move arms between FOLLOWING/ALIGNING and CLUTCHED/CAMERA; releasing a
   pedal goes back through ALIGNING, which re-captures the start poses so nothing jumps. The arm-swap
   pedal's rising edge moves `teleop.swap_hand` to the idle instrument (console/hands.py): the arm it
   leaves goes IDLE (never commanded again until taken back: it holds), the arm it takes goes to ALIGNING,
   exactly as at engage. Refused, with the reason, while a hold condition is active or the arms are held.
   Each hand drives only the instrument the assignment gives it; engage takes only assigned arms and the ECM.
4. Capture. An ALIGNING arm becomes FOLLOWING once the session is ready, the tool poses have arrived and
   (instruments) the master's orientation, seen through the camera, is within the tolerance of the tool's.
   The first setpoint is the tool's own pose.
5. Motion. FOLLOWING arms map the master (console.mapping) and the result is clamped to the workspace,
   step, speed, orientation-rate and jaw-rate limits (safety.limits). What a limit absorbs is dropped
   (the mapping is re-anchored), so a tool never runs on after the hand has stopped.

The per-arm states and their transitions live in console/engagement.py; every transition is logged there
and also returned here as a TeleopEvent, with its reason and a sentence for the surgeon.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from base.config import TeleopConfig
from base.geometry import Pose, Quat, Vec3, is_unit_quat, q_step_toward, v_add, v_clamp_norm, v_sub
from console.engagement import ENGAGED, ArmState, Engagement, Trigger
from console.hands import Hand, HandAssignment
from console.mapping import ArmMapping, align_target, alignment_error, jaw_target, mean_pose
from console.master import MasterSample
from console.tremor import TremorFilter
from safety.latency_policy import LatencyLevel, LatencyPolicy, LatencyStatus
from safety.limits import LimitKind, limits_from_config
from safety.presence import PresenceDebouncer
from transport.messages import (
    ARM_NAMES,
    ECM_INDEX,
    HOLD_SETPOINT,
    CartesianSetpoint,
    ConsoleFlags,
    OperatingState,
    Reason,
)

log = logging.getLogger("console.controller")

ECM = ECM_INDEX
MASTER_STALE_NS = 100_000_000
"""A master sample older than this is treated as a device fault."""
LIMIT_EVENT_INTERVAL_NS = 1_000_000_000
"""At most one warning per arm and limit kind per second; the snapshot shows the live state."""
_SILENT_LIMITS = frozenset({LimitKind.JAW_RATE})
"""The jaw's rate limit is its designed behaviour (a ghost of the gripper), not a warning."""
_NO_LIMITS: frozenset[LimitKind] = frozenset()
_FLAGS = tuple((ConsoleFlags.OPERATOR_PRESENT if k & 1 else ConsoleFlags.NONE)
               | (ConsoleFlags.CLUTCH if k & 2 else ConsoleFlags.NONE)
               | (ConsoleFlags.CAMERA if k & 4 else ConsoleFlags.NONE) for k in range(8))
"""The console flags for (present, clutch, camera) as bits 0-2, built once: the three Flag `|=` cost 0.52 µs a
tick, the lookup 0.06 µs."""


@dataclass(frozen=True, slots=True)
class BedsideView:
    """What the engine knows of the far end, handed in every step."""

    link_ok: bool
    session_ready: bool
    rtt_ms: float | None
    tools: tuple[CartesianSetpoint | None, ...]
    bedside_state: OperatingState
    bedside_reason: Reason
    bedside_estop: bool


@dataclass(frozen=True, slots=True)
class TeleopEvent:
    t_ns: int
    name: str
    reason: Reason
    text: str
    arm: str | None = None
    from_state: str | None = None
    to_state: str | None = None


@dataclass(frozen=True, slots=True)
class TeleopOutput:
    flags: ConsoleFlags
    arm_mask: int
    setpoints: tuple[CartesianSetpoint, ...]
    """One per arm, in wire order (ARM_NAMES); only those in `arm_mask` are commanded."""
    want_session: bool
    release_session: bool
    estop: bool
    events: tuple[TeleopEvent, ...]


class _Arm:
    """Working state of one arm: its engagement, mapping and last command."""

    __slots__ = ("active_limits", "eng", "guidance", "index", "last_ns", "last_sp", "limit_event_ns",
                 "mapping", "misalign_rad", "name")

    def __init__(self, index: int, now_ns: int) -> None:
        self.index = index
        self.name = ARM_NAMES[index]
        self.eng = Engagement(self.name, now_ns)
        self.mapping: ArmMapping | None = None
        self.last_sp: CartesianSetpoint | None = None
        self.last_ns = now_ns
        self.guidance = "press engage to start"
        self.misalign_rad: float | None = None
        self.active_limits: frozenset[LimitKind] = frozenset()
        self.limit_event_ns: dict[LimitKind, int] = {}


def _finite_pose(sp: CartesianSetpoint | None) -> bool:
    if sp is None:
        return False
    return math.isfinite(sum(sp.position) + sp.jaw) and is_unit_quat(sp.orientation)


def _sample_ok(now_ns: int, sample: MasterSample) -> bool:
    if not sample.valid or now_ns - sample.t_ns > MASTER_STALE_NS:
        return False
    for h in sample.hands:
        p, q = h.pose.position, h.pose.orientation
        # abs of each coordinate, not max() over a generator: the same test (NaN and inf are refused just
        # before), without building a generator twice a tick.
        if (not math.isfinite(sum(p) + h.gripper) or abs(p[0]) > 10.0 or abs(p[1]) > 10.0 or abs(p[2]) > 10.0
                or not is_unit_quat(q)):
            return False
    return True


class TeleopController:
    def __init__(self, cfg: TeleopConfig, now_ns: int = 0, rate_hz: float = 1000.0) -> None:
        self.cfg = cfg
        self.limits = limits_from_config(cfg)
        self.align_tol_rad = math.radians(cfg.align_tolerance_deg)
        self.latency = LatencyPolicy(cfg.latency_warn_ms, cfg.latency_hard_ms, cfg.latency_min_factor,
                                     int(cfg.latency_settle_s * 1e9))
        self.presence = PresenceDebouncer(int(cfg.presence_on_ms * 1e6), int(cfg.presence_off_ms * 1e6))
        self.filters = tuple(
            TremorFilter(rate_hz, (cfg.tremor_band_lo_hz, cfg.tremor_band_hi_hz), cfg.tremor_q,
                         cfg.tremor_track_s, adaptive=cfg.tremor_adaptive, enabled=cfg.tremor_enabled)
            for _ in range(2)
        )
        self.arms = [_Arm(i, now_ns) for i in range(len(ARM_NAMES))]
        self.hands = HandAssignment(now_ns)
        """Which instrument each hand drives; the arm-swap pedal changes it (console/hands.py)."""
        self.swap_hand = Hand.LEFT if cfg.swap_hand == "left" else Hand.RIGHT
        self._idle_guidance = f"idle: holds; press the arm-swap pedal to take it with your {self.swap_hand.label} hand"
        """The idle instrument's guidance, formatted once (it was formatted at every tick)."""
        self._swap_prev = False
        self.scale = cfg.motion_scale
        self.estop_latched = False
        self.inhibits: dict[Reason, str] = {}
        self._events: list[TeleopEvent] = []
        self._engage_prev = False
        self._disengage_prev = False
        self._estop_button = False
        self._had_session = False
        self._engage_pending_ns: int | None = None
        self._present = False
        self._lat: LatencyStatus = self.latency.update(now_ns, None)
        self._lat_level = self._lat.level
        self._hands: tuple[Pose, Pose] | None = None
        self._grippers = (0.0, 0.0)
        self._view: BedsideView | None = None
        self._fault = ""
        self._restart_filters = False

    # ------------------------------------------------------------------ events

    def _event(self, now_ns: int, name: str, reason: Reason, text: str, arm: str | None = None,
               warn: bool = True) -> None:
        log.log(logging.WARNING if warn else logging.INFO, "%s (%s): %s", name, reason.name, text)
        self._events.append(TeleopEvent(now_ns, name, reason, text, arm))

    def _fire(self, arm: _Arm, now_ns: int, trigger: Trigger, reason: Reason = Reason.NONE,
              text: str = "") -> None:
        tr = arm.eng.fire(now_ns, trigger, reason, text)
        src, dst = tr.from_state.value, tr.to_state.value
        self._events.append(TeleopEvent(now_ns, f"{arm.name} {src}->{dst}", reason, text, arm.name, src, dst))
        if tr.to_state is not ArmState.FOLLOWING:
            arm.mapping = None
            arm.active_limits = frozenset()

    # ------------------------------------------------------------------ external inputs

    def hold(self, now_ns: int, reason: Reason, text: str) -> None:
        """An external hold (link lost, video stale, GUI lost): every engaged arm holds now."""
        self._engage_pending_ns = None  # a press made before this hold must not engage after it
        self._hold_all(now_ns, reason, text)

    def master_changed(self, now_ns: int, text: str) -> None:
        """Another master drives from now on (console/runner.py `switch_master`): every arm holds, the tremor
        filters restart at the new device's hands, and an engage held through the switch is not a press: only a
        new press engages, through ALIGNING (orientation check, fresh capture), so the switch never moves a tool."""
        self._engage_pending_ns = None
        self._hold_all(now_ns, Reason.CONSOLE_REQUEST, text)
        self._restart_filters = True
        self._engage_prev = True
        self._event(now_ns, "master switched", Reason.CONSOLE_REQUEST, text)

    def inhibit(self, now_ns: int, reason: Reason, active: bool, text: str = "") -> None:
        """A condition that holds the arms and refuses engagement for as long as it is active."""
        if active:
            self._engage_pending_ns = None
            if reason not in self.inhibits:
                self.inhibits[reason] = text or reason.name
                self._hold_all(now_ns, reason, self.inhibits[reason])
        elif self.inhibits.pop(reason, None) is not None:
            self._event(now_ns, "inhibit cleared", reason, f"{reason.name} cleared: press engage to resume",
                        warn=False)

    def set_scale(self, now_ns: int, scale: float) -> None:
        """Change the motion scale live; the mapping re-anchors on the next step, so nothing jumps."""
        new = min(self.cfg.scale_max, max(self.cfg.scale_min, float(scale)))
        if not math.isfinite(new) or new == self.scale:
            return
        self._event(now_ns, "scale", Reason.CONSOLE_REQUEST, f"motion scale {self.scale:.2f} -> {new:.2f}",
                    warn=False)
        self.scale = new

    def reset_estop(self, now_ns: int) -> None:
        """Clear the console e-stop latch (refused while its button is still down); engage is still needed."""
        if not self.estop_latched:
            return
        if self._estop_button:
            self._event(now_ns, "estop reset refused", Reason.ESTOP, "release the e-stop button first")
            return
        self.estop_latched = False
        self._event(now_ns, "estop reset", Reason.RESET, "console e-stop reset: press engage to resume")

    # ------------------------------------------------------------------ holds

    def _hold_all(self, now_ns: int, reason: Reason, text: str) -> None:
        for arm in self.arms:
            if arm.eng.state in ENGAGED or (arm.eng.state is ArmState.HELD and arm.eng.reason != reason):
                self._fire(arm, now_ns, Trigger.HOLD, reason, text)
        if not any(a.eng.state in ENGAGED for a in self.arms):
            self._had_session = False

    def _blocker(self, view: BedsideView, valid: bool, lat: LatencyStatus) -> tuple[Reason, str] | None:
        """The most severe condition that forbids motion now, with what the surgeon should do."""
        if self.estop_latched:
            return Reason.ESTOP, "console e-stop pressed: release and reset it, then press engage"
        if view.bedside_estop:
            return Reason.ESTOP, "bedside e-stop latched: reset it at the bedside, then press engage"
        if not valid:
            return Reason.FAULT, (self._fault
                                  or "master device fault (no valid sample): check the device, then press engage")
        if not view.link_ok:
            return Reason.LINK_LOST, "link to the bedside lost: arms held; press engage once it is back"
        if view.bedside_state is OperatingState.FAULT:
            return Reason.FAULT, f"bedside fault ({view.bedside_reason.name}): arms held"
        if not self._present:
            return Reason.OPERATOR_ABSENT, "operator absent: arms held; return to the console, press engage"
        if lat.level is LatencyLevel.HARD:
            return Reason.LATENCY, lat.text
        for reason, text in self.inhibits.items():
            return reason, text
        return None

    # ------------------------------------------------------------------ the tick

    def step(self, now_ns: int, sample: MasterSample, view: BedsideView) -> TeleopOutput:
        self._view = view
        b = sample.buttons
        valid = _sample_ok(now_ns, sample)
        self._fault = f"master device fault: {sample.fault}" if sample.fault and not valid else ""
        self._estop_button = b.estop
        present = self.presence.update(now_ns, b.operator_present)
        if sample.presence_immediate and not b.operator_present:
            # A deadman switch (docs/masters.md): its release holds on this tick, not after presence_off_ms, and
            # its return is debounced again from the start.
            present = self.presence.present = False
        if present != self._present:
            self._present = present
            self._event(now_ns, "operator present" if present else "operator absent",
                        Reason.NONE if present else Reason.OPERATOR_ABSENT,
                        "presence input confirmed" if present else "presence input lost", warn=not present)
        lat = self._lat = self.latency.update(now_ns, view.rtt_ms)
        if lat.level is not self._lat_level:
            loud = (LatencyLevel.WARN, LatencyLevel.HARD)
            quiet = lat.level not in loud and self._lat_level not in loud
            self._lat_level = lat.level
            if not quiet:
                self._event(now_ns, f"latency {lat.level.value}", Reason.LATENCY if lat.text else Reason.NONE,
                            lat.text or "link RTT back under the warning threshold",
                            warn=lat.level in loud)
        if valid and self._restart_filters:
            self._restart_filters = False
            for f, h in zip(self.filters, sample.hands, strict=True):
                f.reset(h.pose.position)
        if valid:
            self._hands = (
                Pose(self.filters[0].update(sample.hands[0].pose.position), sample.hands[0].pose.orientation),
                Pose(self.filters[1].update(sample.hands[1].pose.position), sample.hands[1].pose.orientation),
            )
            self._grippers = (sample.hands[0].gripper, sample.hands[1].gripper)
        if b.estop and not self.estop_latched:
            self.estop_latched = True
            self._event(now_ns, "estop", Reason.ESTOP, "console e-stop pressed: arms held")

        block = self._blocker(view, valid, lat)
        engaged = not ENGAGED.isdisjoint([a.eng.state for a in self.arms])
        if engaged and view.session_ready:
            self._had_session = True
        if block is None and engaged and self._had_session and not view.session_ready:
            reason = view.bedside_reason if view.bedside_reason is not Reason.NONE else Reason.LINK_LOST
            block = reason, f"bedside ended the session ({reason.name}): arms held; press engage to resume"
        if block is not None:
            self._hold_all(now_ns, *block)

        disengage = b.disengage and not self._disengage_prev
        engage = b.engage and not self._engage_prev and not b.disengage
        self._disengage_prev, self._engage_prev = b.disengage, b.engage
        if disengage:
            for arm in self.arms:
                if arm.eng.can(Trigger.DISENGAGE):
                    self._fire(arm, now_ns, Trigger.DISENGAGE, Reason.CONSOLE_REQUEST, "surgeon disengaged")
            self._had_session = False
        if engage and block is not None and block[0] is Reason.OPERATOR_ABSENT and b.operator_present:
            self._engage_pending_ns = now_ns  # presence is up but not yet debounced: decide when it is
        elif engage:
            self._engage(now_ns, block, lat)
        elif self._engage_pending_ns is not None:
            self._pending_engage(now_ns, block, lat, b.operator_present)
        swap = b.swap and not self._swap_prev and valid
        self._swap_prev = b.swap and valid
        if swap:
            self._swap(now_ns, block)

        mask = 0
        hands = self._hands if valid else None
        for arm in self.arms:
            if arm.eng.state in ENGAGED and hands is not None:
                self._pedals(arm, now_ns, b.clutch, b.camera)
                if arm.eng.state is ArmState.ALIGNING:
                    self._try_capture(arm, now_ns, view, hands)
                if arm.eng.state is ArmState.FOLLOWING:
                    self._follow(arm, now_ns, hands)
                    mask |= 1 << arm.index
            self._guide(arm, block)

        flags = _FLAGS[bool(present) | (bool(valid and b.clutch) << 1) | (bool(valid and b.camera) << 2)]
        states = [a.eng.state for a in self.arms]
        engaged = not ENGAGED.isdisjoint(states)
        events, self._events = tuple(self._events), []
        return TeleopOutput(
            flags=flags,
            arm_mask=mask,
            setpoints=tuple([self._setpoint(a, view) for a in self.arms]),  # type: ignore[arg-type]
            want_session=engaged and not view.session_ready and not self.estop_latched,
            release_session=all(s is ArmState.DISABLED for s in states) and view.session_ready,
            estop=self.estop_latched,
            events=events,
        )

    def _pending_engage(self, now_ns: int, block: tuple[Reason, str] | None, lat: LatencyStatus,
                        raw_present: bool) -> None:
        """An engage pressed while presence was still debouncing: act once it is confirmed, else refuse."""
        assert self._engage_pending_ns is not None
        still_debouncing = block is not None and block[0] is Reason.OPERATOR_ABSENT and raw_present
        if not still_debouncing or now_ns - self._engage_pending_ns > self.presence.on_ns:
            self._engage_pending_ns = None
            self._engage(now_ns, block, lat)

    def _engage(self, now_ns: int, block: tuple[Reason, str] | None, lat: LatencyStatus) -> None:
        if block is None and not lat.may_engage:
            block = Reason.LATENCY, lat.text
        if block is not None:
            self._event(now_ns, "engage refused", block[0], block[1])
            return
        for arm in self.arms:
            if arm.eng.can(Trigger.ENGAGE) and self._assigned(arm):
                self._fire(arm, now_ns, Trigger.ENGAGE, Reason.CONSOLE_REQUEST, "surgeon pressed engage")
        self._had_session = False

    def _assigned(self, arm: _Arm) -> bool:
        """The ECM (both hands, in camera mode) or an instrument a hand drives; never the idle instrument."""
        return arm.index == ECM or self.hands.hand_of(arm.name) is not None

    def _swap(self, now_ns: int, block: tuple[Reason, str] | None) -> None:
        """The arm-swap pedal: `swap_hand` leaves its instrument (IDLE: it holds) for the idle one, which must be
        aligned before it follows (ALIGNING, as at engage). Refused while anything forbids motion or the arms
        are held: a swap never takes an arm out of a hold (only engage does)."""
        hand = self.swap_hand
        old = self.arms[ARM_NAMES.index(self.hands.arm_of(hand))]
        new = self.arms[ARM_NAMES.index(self.hands.idle)]
        why = block[1] if block is not None else (
            f"{old.name} is held ({old.eng.reason.name}): press engage first, then swap"
            if old.eng.state is ArmState.HELD else None)
        if why is not None:
            self._event(now_ns, "swap refused", block[0] if block else old.eng.reason,
                        f"arm swap refused: {why}", old.name)
            return
        engaged = old.eng.state in ENGAGED
        tr = self.hands.swap(now_ns, hand)  # logged there (console.hands)
        text = f"{hand.label} hand now drives {new.name}; {old.name} holds" + (
            f"; align the master to take {new.name}" if engaged else "")
        self._events.append(TeleopEvent(now_ns, "swap", Reason.CONSOLE_REQUEST, text, new.name,
                                        tr.from_state.value, tr.to_state.value))
        if engaged:
            self._fire(old, now_ns, Trigger.SWAP_OUT, Reason.CONSOLE_REQUEST,
                       f"swapped out: the {hand.label} hand now drives {new.name}; {old.name} holds")
            self._fire(new, now_ns, Trigger.SWAP_IN, Reason.CONSOLE_REQUEST,
                       f"swapped in to the {hand.label} hand: align to follow")

    def _pedals(self, arm: _Arm, now_ns: int, clutch: bool, camera: bool) -> None:
        if arm.index == ECM:
            want = Trigger.CLUTCH if clutch or not camera else None
        else:
            want = Trigger.CAMERA if camera else Trigger.CLUTCH if clutch else None
        state = arm.eng.state
        if want is None:
            if state in (ArmState.CLUTCHED, ArmState.CAMERA):
                text = "camera pedal pressed" if arm.index == ECM else "pedal released: re-capturing"
                self._fire(arm, now_ns, Trigger.RELEASE, Reason.CONSOLE_REQUEST, text)
        elif want is Trigger.CLUTCH and state is not ArmState.CLUTCHED:
            text = "camera pedal up: endoscope holds" if arm.index == ECM else "clutch pressed: tool holds"
            self._fire(arm, now_ns, want, Reason.CONSOLE_REQUEST, text)
        elif want is Trigger.CAMERA and state is not ArmState.CAMERA:
            self._fire(arm, now_ns, want, Reason.CONSOLE_REQUEST, "camera mode: instruments hold")

    def _effective_scale(self, arm: _Arm) -> float:
        base = self.cfg.camera_scale if arm.index == ECM else self.scale
        return base * self._lat.factor

    def _hand(self, arm: _Arm) -> Hand:
        """The hand driving instrument `arm` (an assigned one: only those are ever aligned or followed)."""
        hand = self.hands.hand_of(arm.name)
        assert hand is not None, f"{arm.name} is idle: no hand drives it"
        return hand

    def _master(self, arm: _Arm, hands: tuple[Pose, Pose]) -> Pose:
        return mean_pose(hands[0], hands[1]) if arm.index == ECM else hands[self._hand(arm)]

    def _try_capture(self, arm: _Arm, now_ns: int, view: BedsideView, hands: tuple[Pose, Pose]) -> None:
        arm.misalign_rad = None
        if not view.session_ready:
            arm.guidance = "waiting for the bedside to grant control"
            return
        tool, cam = view.tools[arm.index], view.tools[ECM]
        if not _finite_pose(tool) or not _finite_pose(cam):
            arm.guidance = "waiting for the tool pose from the bedside"
            return
        assert tool is not None and cam is not None
        master = self._master(arm, hands)
        is_ecm = arm.index == ECM
        if not is_ecm:
            err = alignment_error(master.orientation, tool.orientation, cam.orientation)
            if err > self.align_tol_rad:
                arm.misalign_rad = err
                arm.guidance = (f"rotate the master to match the tool ({math.degrees(err):.0f}° off, "
                                f"tolerance {self.cfg.align_tolerance_deg:g}°)")
                return
        arm.mapping = ArmMapping.capture(tool, master, cam.orientation, self._effective_scale(arm),
                                         follow_rotation=not is_ecm)
        arm.last_sp = tool
        arm.last_ns = now_ns
        self._fire(arm, now_ns, Trigger.ALIGNED, Reason.NONE, "aligned: following from the tool's pose")

    def _follow(self, arm: _Arm, now_ns: int, hands: tuple[Pose, Pose]) -> None:
        mapping, prev = arm.mapping, arm.last_sp
        assert mapping is not None and prev is not None
        master = self._master(arm, hands)
        scale = self._effective_scale(arm)
        if scale != mapping.scale:
            mapping = mapping.reanchor(master, scale=scale)
        pos, ori = mapping.target(master)
        jaw = 0.0 if arm.index == ECM else jaw_target(self._grippers[self._hand(arm)], self.cfg.jaw_open_rad)
        sp, hit = self.limits.clamp(prev, CartesianSetpoint(pos, ori, jaw), (now_ns - arm.last_ns) / 1e9)
        if hit:
            keep_pos, keep_ori = self._retain(prev, sp, pos, ori)
            if keep_pos is not pos or keep_ori is not ori:
                mapping = mapping.reanchor(master, keep_pos, keep_ori)
            self._limit_events(arm, now_ns, hit)
        arm.active_limits = frozenset(hit) - _SILENT_LIMITS if hit else _NO_LIMITS
        arm.mapping = mapping
        arm.last_sp = sp
        arm.last_ns = now_ns

    def _retain(self, prev: CartesianSetpoint, sp: CartesianSetpoint, pos: Vec3, ori: Quat
                ) -> tuple[Vec3, Quat]:
        """What of a clamped target to keep: the part inside the workspace, at most one step ahead of `sp`.

        Within that leash the tool catches up (a 100 Hz device's bursts are followed faithfully); beyond it
        the hand's motion is dropped, so a glitch or a push against the wall never becomes a run-on later.
        """
        lim = self.limits
        keep = lim.workspace.clamp(pos, prev.position)
        gap = v_sub(keep, sp.position)
        short = v_clamp_norm(gap, lim.max_step_m)
        if short is not gap:
            keep = v_add(sp.position, short)
        keep_pos = pos if keep == pos else keep
        keep_ori = q_step_toward(sp.orientation, ori, lim.max_rot_step_rad)
        return keep_pos, keep_ori

    def _limit_events(self, arm: _Arm, now_ns: int, hit: tuple[LimitKind, ...]) -> None:
        for kind in hit:
            if kind in _SILENT_LIMITS or kind in arm.active_limits:
                continue
            if now_ns - arm.limit_event_ns.get(kind, -(10**18)) < LIMIT_EVENT_INTERVAL_NS:
                continue
            arm.limit_event_ns[kind] = now_ns
            self._event(now_ns, f"{arm.name} limit {kind.value}", Reason.LIMIT,
                        f"{arm.name}: {kind.value} limit reached; the console clamps the motion", arm.name)

    def _guide(self, arm: _Arm, block: tuple[Reason, str] | None) -> None:
        s = arm.eng.state
        if s in (ArmState.DISABLED, ArmState.IDLE) and not self._assigned(arm):
            arm.guidance = self._idle_guidance
        elif s is ArmState.DISABLED:
            arm.guidance = "press engage to start"
        elif s is ArmState.HELD:
            arm.guidance = block[1] if block else f"held ({arm.eng.reason.name}): press engage to resume"
        elif s is ArmState.FOLLOWING:
            limits = arm.active_limits  # usually empty: no string built
            arm.guidance = (f"following (limited: {', '.join(sorted(k.value for k in limits))})" if limits
                            else "following")
        elif s is ArmState.CLUTCHED:
            arm.guidance = ("camera pedal up: endoscope holds" if arm.index == ECM
                            else "clutch held: reposition your hand, release to continue")
        elif s is ArmState.CAMERA:
            arm.guidance = "camera mode: move both hands to move the endoscope"

    def _setpoint(self, arm: _Arm, view: BedsideView) -> CartesianSetpoint:
        if arm.last_sp is not None:
            return arm.last_sp
        tool = view.tools[arm.index] if arm.index < len(view.tools) else None
        return tool if tool is not None else HOLD_SETPOINT

    # ------------------------------------------------------------------ reporting

    def snapshot(self) -> dict:
        """Everything the GUI, telemetry and recordings show about teleoperation, as plain data."""
        view = self._view
        arms = {}
        for arm in self.arms:
            d: dict = {
                "state": arm.eng.state.value,
                "reason": arm.eng.reason.name,
                "since_ns": arm.eng.since_ns,
                "guidance": arm.guidance,
                "active_limits": sorted(k.value for k in arm.active_limits),
                "scale": self._effective_scale(arm) if arm.mapping is None else arm.mapping.scale,
            }
            if arm.misalign_rad is not None:
                d["misalignment_deg"] = math.degrees(arm.misalign_rad)
            if view is not None and arm.index != ECM and arm.eng.state is ArmState.ALIGNING:
                tool, cam = view.tools[arm.index], view.tools[ECM]
                if _finite_pose(tool) and _finite_pose(cam):
                    assert tool is not None and cam is not None
                    d["align_target"] = align_target(tool.orientation, cam.orientation)
            hand = self.hands.hand_of(arm.name)
            d["hand"] = ("both" if arm.index == ECM else None) if hand is None else hand.label
            arms[arm.name] = d
        lat = self._lat
        return {
            "arms": arms,
            "hands": self.hands.mapping(),
            "idle": self.hands.idle,
            "swap_hand": self.swap_hand.label,
            "scale": self.scale,
            "effective_scale": self.scale * lat.factor,
            "latency": {"level": lat.level.value, "rtt_ms": lat.rtt_ms, "factor": lat.factor,
                        "may_engage": lat.may_engage, "text": lat.text},
            "operator_present": self._present,
            "estop": self.estop_latched,
            "inhibits": {r.name: t for r, t in self.inhibits.items()},
            "tremor_hz": [f.freq_hz if f.enabled else None for f in self.filters],
        }
