"""`teleop report FILE… -o DIR`: an HTML report of a recorded session with PNG plots and tables; given a
directory (or several sessions' files), a session index across them (qa/index.py).

What it says, and where each number comes from (qa/figures.py, one rule per figure, tested against a
synthetic session of known truth and against a real demo's own summary): when the session started (wall
clock, UTC) and every time as seconds from that start beside its clock time; stale-video episodes with their
durations (the console's `video` events; its own counter beside them); holds by reason (console arm
transitions to HELD); bedside freezes, the watchdog's apart from holds in the first-command grace; alarms,
e-stops, handovers, refusals, limit hits; path failovers and voice losses when the session has them;
motion to photon when the video says which command each frame shows; and an events table (time, source,
what, why). Plots have units, legends, axes that show every sample (log scales where values span orders
of magnitude) and the clock time on a second axis. A progress bar goes to stderr.

Why it is fast enough for long files (a 60-s stereo 720p recording in well under 10 s): the session loader
parses only the topics asked for, video payloads are never decoded (frame metadata carries sizes and ages),
and every time series is reduced to a min/max envelope before plotting (matplotlib's Agg backend, no
display needed).
"""

from __future__ import annotations

import html
import shutil
from collections import Counter
from pathlib import Path

import numpy as np

from qa.figures import Figures, clock, figures
from qa.session import EVENT_KINDS, KIND_COLOURS, RecordingError, Session, envelope
from recording.catalog import BEDSIDE, CONSOLE, Topics
from safety.loop_health import loop_counters
from transport.messages import ARM_NAMES

MAX_EVENT_ROWS = 5000
"""Events table rows; a longer session says how many more there were."""


def _pct(a: np.ndarray, q: float) -> float:
    a = a[np.isfinite(a)]
    return float(np.percentile(a, q)) if a.size else float("nan")


def _envelope(x: np.ndarray, y: np.ndarray, bins: int = 1500) -> tuple[np.ndarray, np.ndarray]:
    return envelope(x, y, bins)


def _fmt(v: object) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return "—" if not np.isfinite(v) else f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
    return html.escape(str(v))


def log_bins(a: np.ndarray, n: int = 80) -> np.ndarray:
    """Histogram edges spanning every sample: log-spaced when the values span more than a decade (a 12 ms
    maximum beside a 0.3 ms median), linear otherwise. No sample falls outside, so nothing is cut off."""
    lo, hi = float(a.min()), float(a.max())
    if hi - lo <= 1e-6 * max(1.0, abs(hi)):  # one value: a narrow band around it
        lo, hi = lo - max(1e-3, 0.05 * abs(lo)), hi + max(1e-3, 0.05 * abs(hi))
        return np.linspace(lo, hi, 11)
    if lo > 0 and hi / lo > 10:
        return np.geomspace(lo, hi * 1.0001, n + 1)
    return np.linspace(lo, hi + max(1e-9, (hi - lo) * 1e-4), n + 1)


class Report:
    """Collects figures and tables, writes report.html."""

    def __init__(self, session: Session, out: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        self.plt = plt
        self.s, self.out = session, out
        self.fig: Figures = figures(session)
        self.figures: list[tuple[str, str, str]] = []  # file, title, caption
        self.rows: list[tuple[str, str, object]] = []  # section, name, value
        self.tables: list[tuple[str, list[str], list[list[object]], str]] = []  # title, header, rows, note

    def row(self, section: str, name: str, value: object) -> None:
        self.rows.append((section, name, value))

    def table(self, title: str, header: list[str], rows: list[list[object]], note: str = "") -> None:
        self.tables.append((title, header, rows, note))

    def save(self, fig, name: str, title: str, caption: str = "") -> None:
        fig.savefig(self.out / name, dpi=90, bbox_inches="tight")  # tight: no label is cut off
        self.plt.close(fig)
        self.figures.append((name, title, caption))

    # ------------------------------------------------------------------ time

    def when(self, t_ns: int) -> str:
        """`12.345 s (22:13:32.345)`: seconds from the session start beside the clock time."""
        c = clock(self.s, t_ns)
        return f"{float(self.s.seconds(t_ns)):.3f} s" + (f" ({c})" if c else "")

    def time_axis(self, ax) -> None:
        """x in session seconds, with the clock time (UTC) of the ticks on a second axis above."""
        start = clock(self.s, self.s.t0_ns)
        ax.set_xlabel("session time (s)" + (f" from {start} UTC" if start else ""))
        ax.set_xlim(0, max(1e-3, self.s.duration_s))
        if not start:
            return
        from matplotlib.ticker import FuncFormatter

        top = ax.secondary_xaxis("top")
        top.xaxis.set_major_formatter(FuncFormatter(
            lambda x, _p: clock(self.s, int(self.s.t0_ns + x * 1e9))[:-4]))
        top.set_xlabel("clock time (UTC)", fontsize=8)
        top.tick_params(labelsize=7)

    # ------------------------------------------------------------------ sections

    def overview(self) -> None:
        s, r = self.s, self.fig.row
        self.row("session", "started (wall clock, UTC)", r["start_utc"] or "unknown (no mono_to_wall_ns metadata)")
        self.row("session", "duration (s)", s.duration_s)
        self.row("session", "files", ", ".join(f.path.name for f in s.files))
        self.row("session", "hosts / software", f"{r['hosts'] or '?'} / {r['software'] or '?'}")
        self.row("session", "surgeon (bedside peer)", r["surgeons"] or "not recorded")
        self.row("session", "timeline clock", s.clock)
        _lt, off = s.offsets()
        if off.size:
            self.row("session", "clock offset bedside − console (ms), median / spread",
                     f"{np.median(off) / 1e6:+.3f} / {(off.max() - off.min()) / 1e6:.3f}")
        cut = [f"{f.path.name} ({f.error})" for f in s.files if f.truncated]
        self.row("session", "files cut short", "; ".join(cut) or "none")
        for role in s.roles:
            for _t, body in s.json_rows(role, Topics(role).recording)[-1:]:
                d = body.get("dropped") or {}
                self.row("recording", f"{role}: messages / dropped control / dropped video",
                         f"{body.get('messages', '?')} / {d.get('control', 0)} / {d.get('video', 0)}")

    def key_figures(self) -> None:
        """The counts a reviewer looks for first, each as the console or bedside counted it."""
        r, sec = self.fig.row, "key figures"
        eps = self.fig.episodes
        counter = r["stale_episodes_console_counter"]
        self.row(sec, "stale-video episodes", "not recorded" if r["stale_episodes"] is None else
                 f"{r['stale_episodes']}" + (f" (console counter {counter})" if counter is not None else ""))
        if eps is not None:
            self.row(sec, "stale video, total / longest (ms)", f"{r['stale_ms_total']:.1f} / {r['stale_ms_max']:.1f}")
        self.row(sec, "holds (arms engaged → HELD)", r["holds"])
        self.row(sec, "holds by reason", ", ".join(f"{k} {v}" for k, v in self.fig.holds.items()) or "none")
        self.row(sec, "video-stale holds (instants)", r["video_stale_holds"])
        self.row(sec, "bedside freezes", r["freezes"])
        self.row(sec, "freezes by kind: watchdog / first-command grace / e-stop / other",
                 f"{r['freezes_watchdog']} / {r['freezes_grace']} / {r['freezes_estop']} / {r['freezes_other']}")
        self.row(sec, "alarms", r["alarms"])
        self.row(sec, "alarms by name", ", ".join(f"{k} {v}" for k, v in self.fig.alarms.items()) or "none")
        self.row(sec, "e-stops", r["estops"])
        self.row(sec, "handovers", r["handovers"])
        self.row(sec, "refusals (console refused a request)", r["refusals"])
        self.row(sec, "limit events / rejections", f"{r['limit_events']} / {r['rejections']}")
        self.row(sec, "path failovers", "not in this session" if r["failovers"] is None else r["failovers"])
        self.row(sec, "voice losses", "not in this session" if r["voice_losses"] is None else r["voice_losses"])
        if r["m2p_p50_ms"] is not None:
            self.row(sec, "motion to photon p50 / p99 (ms)", f"{r['m2p_p50_ms']:.1f} / {r['m2p_p99_ms']:.1f}")
        if eps:
            self.table("Stale-video episodes", ["#", "start", "state", "duration (ms)", "why"],
                       [[i + 1, self.when(e.t_ns), e.state, f"{e.duration_ms:.1f}" + (" (open at the end)" if e.open
                                                                                     else ""), e.text]
                        for i, e in enumerate(eps)],
                       "from the console's `video` events: the guard left OK after the picture had been live")
        if self.fig.freezes:
            self.table("Bedside freezes", ["#", "time", "reason", "kind", "latency (ms)", "text"],
                       [[i + 1, self.when(z.t_ns), z.reason, z.kind, f"{z.latency_ms:.1f}", z.text]
                        for i, z in enumerate(self.fig.freezes)],
                       "latency: last valid command → hold; grace: no command applied since the grant")

    def events_table(self) -> None:
        ev = self.s.events()
        rows = [[self.when(e.t_ns), e.role, e.kind, e.name, e.reason, e.text] for e in ev[:MAX_EVENT_ROWS]]
        more = f"; {len(ev) - MAX_EVENT_ROWS} more not shown" if len(ev) > MAX_EVENT_ROWS else ""
        self.table("Events", ["time", "source", "kind", "what", "why", "text"], rows,
                   f"{len(ev)} events, on the {self.s.clock} timeline{more}")

    def commands(self) -> None:
        s = self.s
        for role in s.roles:
            if not s.has(role, Topics(role).ack):
                continue
            a = s.acks(role)
            st = Counter(a["status"].tolist())
            self.row("commands", f"{role}: acks by status", ", ".join(f"{k} {v}" for k, v in st.most_common()))
            self.row("commands", f"{role}: rejected", int(a["rejected"].sum()))
        if s.has("console", CONSOLE.link):  # several paths (link.paths): each one as the console last saw it
            last = next((p for p in s.link()["paths"][::-1] if p), None)
            for p in last or ():
                self.row("commands", f"{p['name']} ({p['endpoint']})",
                         f"{p['state']}, RTT {p['rtt_ms']} ms, loss {p['loss_pct']} %, delivered first "
                         f"{p['first']} of {p['rx']} frames, LOST {p['losses']}×")

    def latency(self) -> None:
        s, plt, r = self.s, self.plt, self.fig.row
        if not s.has("console", CONSOLE.ack):
            self.row("latency", "round trip", "no console recording: RTT is measured at the console")
            return
        a = s.acks("console")
        rtt = a["rtt_ms"]
        ok = np.isfinite(rtt)
        rtt_ok = rtt[ok]
        for name, q in (("p50", 50), ("p95", 95), ("p99", 99), ("p999", 99.9)):
            self.row("latency", f"RTT p{q:g} (ms)", r[f"rtt_{name}_ms"])
        self.row("latency", "RTT max (ms)", r["rtt_max_ms"])
        self.row("latency", "acks with RTT", r["acks_with_rtt"])
        fig, ax = plt.subplots(figsize=(8, 3.4))
        if rtt_ok.size:
            edges = log_bins(rtt_ok)
            ax.hist(rtt_ok, bins=edges, color="#4a7fbf", label=f"acks ({rtt_ok.size})")
            if edges[0] > 0 and edges[-1] / edges[0] > 10:
                ax.set_xscale("log")
            ax.set_yscale("log")
            for q, c in ((50, "k"), (99, "r")):
                ax.axvline(_pct(rtt_ok, q), color=c, ls="--", lw=1, label=f"p{q} {_pct(rtt_ok, q):.3f} ms")
            ax.axvline(float(rtt_ok.max()), color="#800080", ls=":", lw=1.2, label=f"max {rtt_ok.max():.3f} ms")
            ax.legend(fontsize=8)
        if ax.get_xscale() == "linear":
            ax.ticklabel_format(axis="x", useOffset=False, style="plain")
        ax.set_xlabel("command → ack round trip (ms), every sample")
        ax.set_ylabel("acks (log)")
        self.save(fig, "latency_hist.png", "Round-trip latency: histogram",
                  "every acknowledged command (console clock); bins span the minimum to the maximum")
        fig, ax = plt.subplots(figsize=(9, 3.6))
        x, y = _envelope(np.asarray(s.seconds(a["t"][ok])), rtt_ok)
        ax.plot(x, y, lw=0.6, color="#4a7fbf", label="per ack (min/max envelope)")
        if s.has("console", CONSOLE.link):
            lk = s.link()
            ax.plot(s.seconds(lk["t"]), lk["rtt_ms"], lw=1.2, color="#e08000", label="link (10 Hz mean)")
        if rtt_ok.size and rtt_ok.max() / max(1e-6, float(np.median(rtt_ok))) > 10:
            ax.set_yscale("log")
        self._event_ticks(ax, ("freeze", "hold", "alarm"))
        self.time_axis(ax)
        ax.set_ylabel("RTT (ms)")
        ax.legend(loc="upper right", fontsize=7)
        self.save(fig, "latency_time.png", "Round-trip latency over time",
                  "vertical lines: freezes, holds and alarms (legend)")

    def frame_age(self) -> None:
        s, plt, r = self.s, self.plt, self.fig.row
        v = s.video_frames("console")
        fig, ax = plt.subplots(figsize=(8, 3.4))
        if len(v) and np.isfinite(v["age_ms"]).any():
            age = v["age_ms"][np.isfinite(v["age_ms"])]
            ax.hist(age, bins=log_bins(age), color="#b0508f", label=f"frames ({age.size})")
            ax.set_xlabel("frame age at the console: capture → ready to paint (ms), every frame")
            for q in (50, 95, 99):
                self.row("video", f"frame age p{q} (ms)", _pct(age, q))
            self.row("video", "frame age max (ms)", float(age.max()))
            ax.axvline(float(age.max()), color="k", ls=":", lw=1, label=f"max {age.max():.1f} ms")
            ax.legend(fontsize=8)
            self.row("video", "frames received", len(v))
            dur = max(1e-9, float(s.seconds(v["t"][-1]) - s.seconds(v["t"][0])))
            self.row("video", "frame rate received (fps)", (len(v) - 1) / dur)
            self.row("video", "mean frame size (kB)", float(v["size_bytes"].mean() / 1000))
        elif len(s.video_frames("bedside")):
            b = s.video_frames("bedside")
            d = (b["t"] - b["capture"]) / 1e6
            ax.hist(d, bins=log_bins(d), color="#17becf", label=f"frames ({d.size})")
            ax.legend(fontsize=8)
            ax.set_xlabel("bedside: capture → sent (ms); no console recording for the age at the glass")
            self.row("video", "frames sent", len(b))
            self.row("video", "capture → sent p50 / p99 (ms)", f"{_pct(d, 50):.2f} / {_pct(d, 99):.2f}")
        else:
            ax.text(0.5, 0.5, "no video in this recording", ha="center", va="center", transform=ax.transAxes)
            ax.set_xlabel("frame age (ms)")
            self.row("video", "frames", 0)
        ax.set_ylabel("frames")
        self.save(fig, "frame_age.png", "Video frame age distribution")
        if r["m2p_p50_ms"] is not None:
            from qa.figures import m2p_ms

            m = m2p_ms(s)
            fig, ax = plt.subplots(figsize=(8, 3.2))
            ax.hist(m, bins=log_bins(m), color="#8c564b", label=f"frames showing a known command ({m.size})")
            ax.set_xlabel("motion to photon: command sent → frame showing it ready (ms)")
            ax.set_ylabel("frames")
            ax.legend(fontsize=8)
            self.save(fig, "m2p.png", "Motion to photon", "console clock at both ends")

    def freezes(self) -> None:
        s, plt = self.s, self.plt
        fz = self.fig.freezes
        fig, ax = plt.subplots(figsize=(9, 3.6))
        if fz:
            t = np.asarray([float(s.seconds(z.t_ns)) for z in fz])
            lat = np.asarray([max(1e-3, z.latency_ms) for z in fz])
            keys = sorted({f"{z.reason} ({z.kind})" for z in fz})
            cols = dict(zip(keys, plt.cm.tab10.colors, strict=False))
            log = lat.max() / lat.min() > 10  # a 1 ms freeze stays visible beside a 1 s one
            floor = lat.min() / 3 if log else 0.0
            for k in keys:
                sel = [i for i, z in enumerate(fz) if f"{z.reason} ({z.kind})" == k]
                ax.scatter(t[sel], lat[sel], s=40, color=cols[k], label=f"{k}: {len(sel)}", zorder=3)
                ax.vlines(t[sel], floor, lat[sel], color=cols[k], lw=2)
            if log:
                ax.set_yscale("log")
            ax.set_ylim(floor, lat.max() * (3 if log else 1.15))
            ax.legend(fontsize=8)
            self.row("freezes", "freeze latency max (ms)", float(lat.max()))
        else:
            ax.text(0.5, 0.5, "no bedside freeze recorded", ha="center", va="center", transform=ax.transAxes)
        self.time_axis(ax)
        ax.set_ylabel("last valid command → hold (ms)")
        self.save(fig, "freezes.png", "Freezes and their latencies", "height: time from the last valid command "
                  "to the hold; colour: reason and kind (legend)")

    def tool_paths(self) -> None:
        s, plt = self.s, self.plt
        role = "bedside" if s.has("bedside", BEDSIDE.telemetry) else "console"
        tel = s.telemetry(role)
        fig = plt.figure(figsize=(11, 4.4))
        ax3 = fig.add_subplot(1, 2, 1, projection="3d")
        ax2 = fig.add_subplot(1, 2, 2)
        fig.subplots_adjust(wspace=0.45)
        colours = ("#d62728", "#1f77b4", "#9467bd", "#2ca02c")  # PSM1, PSM2, PSM3, ECM
        if len(tel):
            step = max(1, len(tel) // 4000)
            for j, arm in enumerate(ARM_NAMES):
                p = tel["pos"][::step, j] * 1000
                ok = np.isfinite(p).all(axis=1)
                p = p[ok]
                if not p.size:
                    continue
                travel = float(np.nansum(np.linalg.norm(np.diff(tel["pos"][:, j], axis=0), axis=1)) * 1000)
                self.row("tools", f"{arm} path length (mm)", travel)
                ax3.plot(p[:, 0], p[:, 1], p[:, 2], lw=0.8, color=colours[j], label=arm, marker="o", markevery=[0],
                         ms=3)
                ax2.plot(p[:, 0], p[:, 1], lw=0.8, color=colours[j], label=arm, marker="o", markevery=[0], ms=3)
            for j in range(len(ARM_NAMES)):
                q = tel["pos"][tel["limit"][:, j], j] * 1000
                if q.size:
                    ax2.scatter(q[:, 0], q[:, 1], s=8, color="k", marker="x")
        ax3.set_xlabel("x (mm)")
        ax3.set_ylabel("y (mm)")
        ax3.set_zlabel("z (mm)", labelpad=10)
        ax3.tick_params(labelsize=7)
        ax3.set_box_aspect(None, zoom=0.85)  # room for the z label
        ax3.legend(fontsize=8, loc="upper left")
        if ax2.lines:
            ax2.legend(fontsize=8)
        ax2.set_xlabel("x (mm)")
        ax2.set_ylabel("y (mm)")
        ax2.set_aspect("equal", adjustable="datalim")
        ax2.set_title("top view (× = limit flag set)", fontsize=9)
        self.save(fig, "tool_paths.png", "Tool paths", f"measured_cp from {Topics(role).telemetry} (patient frame)")

    def hands(self) -> None:
        """Which instrument each hand drove, and every arm swap (console/hands.py), from the console's record."""
        s = self.s
        if not s.has("console", CONSOLE.link):
            self.row("hands", "hand assignment", "no console recording: the hands are the console's")
            return
        seen: list[str] = []
        for h in s.link()["hands"]:
            if h and (not seen or seen[-1] != h):
                seen.append(h)
        self.row("hands", "right/left hand drove", " → ".join(seen) or "not recorded (a recording from before swaps)")
        swaps = [e for e in s.events() if e.role == "console" and e.name == "teleop: swap"]
        self.row("hands", "arm swaps", len(swaps))
        for e in swaps[:50]:
            self.row("hands", f"{self.when(e.t_ns)} swap", e.text)

    def limits(self) -> None:
        s, plt = self.s, self.plt
        ev = s.events()
        fig, ax = plt.subplots(figsize=(9, 0.9 + 0.32 * max(1, len(EVENT_KINDS))))
        kinds = [k for k in EVENT_KINDS if any(e.kind == k for e in ev)]
        for lane, k in enumerate(kinds):
            t = [float(s.seconds(e.t_ns)) for e in ev if e.kind == k]
            ax.scatter(t, [lane] * len(t), marker="|", s=200, color=KIND_COLOURS[k], label=f"{k} ({len(t)})")
        ax.set_yticks(range(len(kinds)), kinds)
        ax.set_ylim(-0.7, max(1, len(kinds)) - 0.3)
        self.time_axis(ax)
        if kinds:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="kind (count)")
        self.save(fig, "events.png", "Events", "one lane per kind; every event is in the Events table below")
        lim = [e for e in ev if e.kind in ("limit", "rejection")]
        self.row("limits", "limit hits and rejections (events)", len(lim))
        for e in lim[:50]:
            self.row("limits", f"{self.when(e.t_ns)} {e.role}", f"{e.name}: {e.text}")
        if len(lim) > 50:
            self.row("limits", "…", f"{len(lim) - 50} more")

    def loop_health(self) -> None:
        """Each role's control loop, from its last recorded figures (bedside COUNTERS, console link status):
        tick p99.9 and max, ticks over the bound, the slowest step; then every stall reported, with the call
        the loop was in (docs/architecture.md, "Loop health and stalls")."""
        s = self.s
        sec = "loop health"
        found = False
        for role, topic, key in (("bedside", BEDSIDE.counters, "values"), ("console", CONSOLE.link, "counters")):
            c: dict[str, int] = {}
            for _t, body in reversed(s.json_rows(role, topic)):
                c = loop_counters(body.get(key) or {})
                if c:
                    break
            if not c:
                continue
            found = True
            self.row(sec, f"{role}: tick p99.9 / max (ms)",
                     f"{c.get('loop_tick_p999_us', 0) / 1e3:.3f} / {c.get('loop_tick_max_us', 0) / 1e3:.3f}")
            self.row(sec, f"{role}: ticks over the {c.get('loop_bound_us', 0) / 1e3:g} ms bound",
                     f"{c.get('loop_over_bound', 0)} of {c.get('loop_ticks', 0)}")
            steps = {k.removeprefix("loop_max_us_"): v for k, v in c.items() if k.startswith("loop_max_us_")}
            if steps:
                name, us = max(steps.items(), key=lambda kv: kv[1])
                self.row(sec, f"{role}: slowest step, longest (ms)", f"{name} {us / 1e3:.3f}")
        for role in s.roles:
            stalls = s.json_rows(role, Topics(role).stall)
            found = found or bool(stalls)
            for t, b in stalls[:50]:
                where = (b.get("loop_stack") or ["no stacks captured"])[0]
                self.row(sec, f"{self.when(t)} {role} stall",
                         f"{b.get('tick_ms', 0):.1f} ms · slowest {b.get('step', '?')} · {where}")
            if len(stalls) > 50:
                self.row(sec, f"{role} stalls: …", f"{len(stalls) - 50} more")
        if not found:
            self.row(sec, "figures", "none recorded (a recording from before loop health)")

    def _event_ticks(self, ax, kinds: tuple[str, ...]) -> None:
        seen: set[str] = set()
        for e in self.s.events():
            if e.kind in kinds:
                ax.axvline(float(self.s.seconds(e.t_ns)), color=KIND_COLOURS[e.kind], lw=0.6, alpha=0.6,
                           label=None if e.kind in seen else e.kind)
                seen.add(e.kind)

    # ------------------------------------------------------------------ output

    def write_html(self) -> Path:
        s = self.s
        parts = ["<!doctype html><html><head><meta charset='utf-8'><title>teleop QA report</title><style>",
                 "body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse}"
                 "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:13px;vertical-align:top}"
                 "th{background:#eee}img{max-width:100%;border:1px solid #ddd}</style></head><body>",
                 f"<h1>teleop QA report</h1><p>{html.escape(', '.join(str(f.path) for f in s.files))}</p>",
                 "<h2>Summary</h2><table><tr><th>section</th><th>item</th><th>value</th></tr>"]
        for sec, name, val in self.rows:
            parts.append(f"<tr><td>{html.escape(sec)}</td><td>{html.escape(name)}</td><td>{_fmt(val)}</td></tr>")
        parts.append("</table>")
        events = [t for t in self.tables if t[0] == "Events"]
        for title, header, rows, note in [t for t in self.tables if t[0] != "Events"]:
            parts.append(_html_table(title, header, rows, note))
        for name, title, cap in self.figures:
            parts.append(f"<h2>{html.escape(title)}</h2><img src='{name}' alt='{html.escape(title)}'>"
                         f"<p><i>{html.escape(cap)}</i></p>")
        for title, header, rows, note in events:
            parts.append(_html_table(title, header, rows, note))
        parts.append("</body></html>")
        path = self.out / "report.html"
        path.write_text("\n".join(parts), encoding="utf-8")
        return path


def _html_table(title: str, header: list[str], rows: list[list[object]], note: str) -> str:
    out = [f"<h2>{html.escape(title)}</h2>", f"<p><i>{html.escape(note)}</i></p>" if note else "",
           "<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in r) + "</tr>" for r in rows]
    out.append("</table>")
    return "\n".join(out)


STEPS = ("overview", "key_figures", "commands", "latency", "frame_age", "freezes", "loop_health", "hands",
         "tool_paths", "limits", "events_table")


def make_report(files: list[str], out: str | Path, progress=None) -> Path:
    """Load `files`, write report.html and its PNGs into `out`; returns the HTML path."""
    out = Path(out)
    load = (lambda f, w: progress(0.5 * f, f"loading {w}")) if progress else None
    s = Session(files, progress=load)  # before the directory exists: a file it refuses leaves nothing behind
    made = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        r = Report(s, out)
        for i, name in enumerate(STEPS):
            if progress:
                progress(0.5 + 0.5 * i / len(STEPS), name)
            getattr(r, name)()
    except RecordingError:  # a damaged message found while plotting: no half report either
        if made:
            shutil.rmtree(out, ignore_errors=True)
        raise
    path = r.write_html()
    if progress:
        progress(1.0, "done")
    return path
