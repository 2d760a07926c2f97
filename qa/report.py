"""`teleop report FILE… -o DIR`: an HTML report of recorded sessions with PNG plots and a summary table.

Plots: command round trip (histogram and over time), video frame age (distribution), freezes with their
latencies, tool paths (3D and top view), limit hits and rejections; the summary table carries the
numbers (percentiles, counts, drops, files cut short, each role's loop health and stalls). A progress bar
goes to stderr.

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

from qa.session import EVENT_KINDS, RecordingError, Session, envelope
from recording.catalog import BEDSIDE, CONSOLE, Topics
from safety.loop_health import loop_counters
from transport.messages import ARM_NAMES

KIND_COLOURS = {"engagement": "#2ca02c", "clutch": "#1f77b4", "freeze": "#d62728", "hold": "#ff7f0e",
                "alarm": "#e377c2", "limit": "#d4a017", "rejection": "#8c564b", "state": "#7f7f7f",
                "info": "#bcbd22"}




def _pct(a: np.ndarray, q: float) -> float:
    a = a[np.isfinite(a)]
    return float(np.percentile(a, q)) if a.size else float("nan")


def _envelope(x: np.ndarray, y: np.ndarray, bins: int = 1500) -> tuple[np.ndarray, np.ndarray]:
    return envelope(x, y, bins)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return "—" if not np.isfinite(v) else f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
    return html.escape(str(v))


class Report:
    """Collects figures and table rows, writes report.html."""

    def __init__(self, session: Session, out: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        self.plt = plt
        self.s, self.out = session, out
        self.figures: list[tuple[str, str, str]] = []  # file, title, caption
        self.rows: list[tuple[str, str, object]] = []  # section, name, value

    def row(self, section: str, name: str, value: object) -> None:
        self.rows.append((section, name, value))

    def save(self, fig, name: str, title: str, caption: str = "") -> None:
        fig.tight_layout()
        fig.savefig(self.out / name, dpi=90)
        self.plt.close(fig)
        self.figures.append((name, title, caption))

    # ------------------------------------------------------------------ sections

    def overview(self) -> None:
        s = self.s
        self.row("session", "files", ", ".join(f.path.name for f in s.files))
        self.row("session", "duration (s)", s.duration_s)
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

    def commands(self) -> None:
        s = self.s
        for role in s.roles:
            if not s.has(role, Topics(role).ack):
                continue
            a = s.acks(role)
            st = Counter(a["status"].tolist())
            self.row("commands", f"{role}: acks by status", ", ".join(f"{k} {v}" for k, v in st.most_common()))
            self.row("commands", f"{role}: rejected", int(a["rejected"].sum()))

    def latency(self) -> None:
        s, plt = self.s, self.plt
        if not s.has("console", CONSOLE.ack):
            self.row("latency", "round trip", "no console recording: RTT is measured at the console")
            return
        a = s.acks("console")
        rtt = a["rtt_ms"]
        ok = np.isfinite(rtt)
        rtt_ok = rtt[ok]
        for q in (50, 95, 99, 99.9):
            self.row("latency", f"RTT p{q:g} (ms)", _pct(rtt_ok, q))
        self.row("latency", "RTT max (ms)", float(rtt_ok.max()) if rtt_ok.size else float("nan"))
        self.row("latency", "acks with RTT", int(rtt_ok.size))
        fig, ax = plt.subplots(figsize=(7, 3.2))
        if rtt_ok.size:
            hi = _pct(rtt_ok, 99.9) * 1.2 or 1.0
            ax.hist(np.clip(rtt_ok, 0, hi), bins=120, color="#4a7fbf")
            ax.set_yscale("log")
            for q, c in ((50, "k"), (99, "r")):
                ax.axvline(_pct(rtt_ok, q), color=c, ls="--", lw=1, label=f"p{q} {_pct(rtt_ok, q):.3f} ms")
            ax.legend()
        ax.set_xlabel("command → ack round trip (ms)")
        ax.set_ylabel("acks")
        self.save(fig, "latency_hist.png", "Round-trip latency: histogram",
                  "every acknowledged command (console clock)")
        fig, ax = plt.subplots(figsize=(9, 3.2))
        x, y = _envelope(np.asarray(s.seconds(a["t"][ok])), rtt_ok)
        ax.plot(x, y, lw=0.6, color="#4a7fbf", label="per ack (min/max envelope)")
        if s.has("console", CONSOLE.link):
            lk = s.link()
            ax.plot(s.seconds(lk["t"]), lk["rtt_ms"], lw=1.2, color="#e08000", label="link (10 Hz mean)")
        self._event_ticks(ax, ("freeze", "hold", "alarm"))
        ax.set_xlabel("session time (s)")
        ax.set_ylabel("RTT (ms)")
        ax.legend(loc="upper right", fontsize=8)
        self.save(fig, "latency_time.png", "Round-trip latency over time", "freezes/holds/alarms marked below")

    def frame_age(self) -> None:
        s, plt = self.s, self.plt
        v = s.video_frames("console")
        fig, ax = plt.subplots(figsize=(7, 3.2))
        if len(v) and np.isfinite(v["age_ms"]).any():
            age = v["age_ms"][np.isfinite(v["age_ms"])]
            ax.hist(age, bins=100, color="#b0508f")
            ax.set_xlabel("frame age at the console: capture → ready to paint (ms)")
            for q in (50, 95, 99):
                self.row("video", f"frame age p{q} (ms)", _pct(age, q))
            self.row("video", "frame age max (ms)", float(age.max()))
            self.row("video", "frames received / stale", f"{len(v)} / {int(v['stale'].sum())}")
            dur = max(1e-9, float(s.seconds(v["t"][-1]) - s.seconds(v["t"][0])))
            self.row("video", "frame rate received (fps)", (len(v) - 1) / dur)
            self.row("video", "mean frame size (kB)", float(v["size_bytes"].mean() / 1000))
        elif len(s.video_frames("bedside")):
            b = s.video_frames("bedside")
            d = (b["t"] - b["capture"]) / 1e6
            ax.hist(d, bins=100, color="#17becf")
            ax.set_xlabel("bedside: capture → sent (ms); no console recording for the age at the glass")
            self.row("video", "frames sent", len(b))
            self.row("video", "capture → sent p50 / p99 (ms)", f"{_pct(d, 50):.2f} / {_pct(d, 99):.2f}")
        else:
            ax.text(0.5, 0.5, "no video in this recording", ha="center", va="center", transform=ax.transAxes)
            self.row("video", "frames", 0)
        ax.set_ylabel("frames")
        self.save(fig, "frame_age.png", "Video frame age distribution")

    def freezes(self) -> None:
        s, plt = self.s, self.plt
        fz = s.freezes()
        holds = [e for e in s.events() if e.kind == "hold"]
        self.row("freezes", "bedside freezes", len(fz))
        self.row("freezes", "console holds (arm transitions to HELD)", len(holds))
        fig, ax = plt.subplots(figsize=(9, 3.2))
        if len(fz):
            t = np.asarray(s.seconds(fz["t"]))
            reasons = fz["reason"].tolist()
            cols = {r: c for r, c in zip(sorted(set(reasons)), plt.cm.tab10.colors, strict=False)}
            ax.bar(t, fz["latency_ms"], width=max(0.05, s.duration_s / 300),
                   color=[cols[r] for r in reasons])
            for r, c in cols.items():
                ax.bar([np.nan], [np.nan], color=c, label=r)
            ax.legend(fontsize=8)
            self.row("freezes", "freeze latency max (ms)", float(np.nanmax(fz["latency_ms"])))
            self.row("freezes", "by reason", ", ".join(f"{k} {v}" for k, v in Counter(reasons).most_common()))
            for i in range(len(fz)):
                self.row("freezes", f"{t[i]:.3f} s {reasons[i]}", f"{fz['latency_ms'][i]:.1f} ms · {fz['text'][i]}")
        else:
            ax.text(0.5, 0.5, "no bedside freeze recorded", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlim(0, max(1e-3, s.duration_s))
        ax.set_xlabel("session time (s)")
        ax.set_ylabel("latency (ms): last valid command → hold")
        self.save(fig, "freezes.png", "Freezes and their latencies", "bar height: time from the last valid "
                  "command to the hold, colour: reason")

    def tool_paths(self) -> None:
        s, plt = self.s, self.plt
        role = "bedside" if s.has("bedside", BEDSIDE.telemetry) else "console"
        tel = s.telemetry(role)
        fig = plt.figure(figsize=(10, 4.2))
        ax3 = fig.add_subplot(1, 2, 1, projection="3d")
        ax2 = fig.add_subplot(1, 2, 2)
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
                ax3.plot(p[:, 0], p[:, 1], p[:, 2], lw=0.8, color=colours[j], label=arm)
                ax2.plot(p[:, 0], p[:, 1], lw=0.8, color=colours[j], label=arm)
            for j in range(len(ARM_NAMES)):
                q = tel["pos"][tel["limit"][:, j], j] * 1000
                if q.size:
                    ax2.scatter(q[:, 0], q[:, 1], s=8, color="k", marker="x")
        ax3.set_xlabel("x (mm)")
        ax3.set_ylabel("y (mm)")
        ax3.set_zlabel("z (mm)")
        ax3.legend(fontsize=8)
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
            self.row("hands", f"{float(s.seconds(e.t_ns)):.3f} s swap", e.text)

    def limits(self) -> None:
        s, plt = self.s, self.plt
        ev = s.events()
        fig, ax = plt.subplots(figsize=(9, 2.8))
        kinds = [k for k in EVENT_KINDS if any(e.kind == k for e in ev)]
        for lane, k in enumerate(kinds):
            t = [float(s.seconds(e.t_ns)) for e in ev if e.kind == k]
            ax.scatter(t, [lane] * len(t), marker="|", s=200, color=KIND_COLOURS[k])
        ax.set_yticks(range(len(kinds)), kinds)
        ax.set_xlim(0, max(1e-3, s.duration_s))
        ax.set_xlabel("session time (s)")
        self.save(fig, "events.png", "Events", "every marker of the replay timeline")
        lim = [e for e in ev if e.kind in ("limit", "rejection")]
        self.row("limits", "limit hits and rejections (events)", len(lim))
        for e in lim[:50]:
            self.row("limits", f"{float(s.seconds(e.t_ns)):.3f} s {e.role}", f"{e.name}: {e.text}")
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
                self.row(sec, f"{float(s.seconds(t)):.3f} s {role} stall",
                         f"{b.get('tick_ms', 0):.1f} ms · slowest {b.get('step', '?')} · {where}")
            if len(stalls) > 50:
                self.row(sec, f"{role} stalls: …", f"{len(stalls) - 50} more")
        if not found:
            self.row(sec, "figures", "none recorded (a recording from before loop health)")

    def _event_ticks(self, ax, kinds: tuple[str, ...]) -> None:
        for e in self.s.events():
            if e.kind in kinds:
                ax.axvline(float(self.s.seconds(e.t_ns)), color=KIND_COLOURS[e.kind], lw=0.6, alpha=0.6)

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
        for name, title, cap in self.figures:
            parts.append(f"<h2>{html.escape(title)}</h2><img src='{name}' alt='{html.escape(title)}'>"
                         f"<p><i>{html.escape(cap)}</i></p>")
        parts.append("</body></html>")
        path = self.out / "report.html"
        path.write_text("\n".join(parts), encoding="utf-8")
        return path


def make_report(files: list[str], out: str | Path, progress=None) -> Path:
    """Load `files`, write report.html and its PNGs into `out`; returns the HTML path."""
    out = Path(out)
    steps = ("overview", "commands", "latency", "frame_age", "freezes", "loop_health", "hands", "tool_paths",
             "limits")
    load = (lambda f, w: progress(0.5 * f, f"loading {w}")) if progress else None
    s = Session(files, progress=load)  # before the directory exists: a file it refuses leaves nothing behind
    made = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    r = Report(s, out)
    try:
        for i, name in enumerate(steps):
            if progress:
                progress(0.5 + 0.5 * i / len(steps), name)
            getattr(r, name)()
    except RecordingError:  # a damaged message found while plotting: no half report either
        if made:
            shutil.rmtree(out, ignore_errors=True)
        raise
    path = r.write_html()
    if progress:
        progress(1.0, "done")
    return path


