"""Pre-operative link qualification (`teleop linkcheck`): each configured path to a live bedside, judged against
go/no-go thresholds from the literature, with a verdict per path and overall and an HTML report with plots.

What is measured, per path (link.paths; the default one first), all at once for --minutes:
* round trip: PINGs at `rate_hz` on that path's own control connection (a PING changes nothing at the
  bedside, docs/protocol.md: safe against a bedside that is already in session), each answered by a PONG that
  echoes its send time: p50, p99, max;
* jitter: the mean absolute difference between consecutive round trips (the IPDV of RFC 3393, both ways);
* loss: pings not answered within LOSS_TIMEOUT_NS;
* reordering: answers that arrive after a later ping's answer (one TCP connection should show none: any is a
  sign of a middlebox or a path that is not what it claims);
* video: the stereo stream received on that path (a viewer of its own), its frame rate and Mbit/s, and the
  bitrate the sender's adaptive control settled at against the configured `video.bitrate_kbps` — a path whose
  queueing forces the sender down cannot carry the configured picture.

Thresholds (THRESHOLDS; docs/operations.md "Qualifying the link before surgery"):
* RTT p99 ≤ 200 ms: Xu et al., "Determination of the latency effects on surgical performance and the
  acceptable latency levels in telesurgery using the dV-Trainer simulator", Surg Endosc 2014;28:2569–76
  (≤ 200 ms acceptable, beyond it performance degrades); the GUIDE's "ideal ceiling" (§1).
* jitter ≤ 10 ms and loss ≤ 1 %: the multicentre 5G/edge telesurgery trials and the 6G target sheet collected
  in the GUIDE (§1: jitter ≤ 5–10 ms; 1.2 % loss tolerated, 3–7 % ruins the video); the issue's figures.
* reordering ≤ 0.1 %; video bitrate ≥ 90 % of `video.bitrate_kbps` (median of the frames' own header).

The measuring core (`PathProbe`) is pure: fed sends and answers with their times, it returns figures and the
verdict; `run_linkcheck` holds the sockets.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import zmq

from base.config import Config, PathEndpoint, link_paths
from base.errors import UserError
from base.stats import percentiles
from transport import codec, security
from transport.messages import Ack, AckStatus, Ping
from transport.zmqlink import control_client, tcp

LOSS_TIMEOUT_NS = 1_000_000_000
REACH_TIMEOUT_S = 5.0


class LinkcheckError(UserError):
    label = "linkcheck"


@dataclass(frozen=True)
class Thresholds:
    rtt_p99_ms: float = 200.0
    jitter_ms: float = 10.0
    loss_pct: float = 1.0
    reorder_pct: float = 0.1
    video_bitrate_frac: float = 0.9


THRESHOLDS = Thresholds()


@dataclass
class PathProbe:
    """One path's pings and answers (pure: times passed in)."""

    name: str
    endpoint: str
    sent: dict[int, int] = field(default_factory=dict)
    """seq -> send time of the pings not answered yet."""
    n_sent: int = 0
    n_answered: int = 0
    n_lost: int = 0
    n_reordered: int = 0
    max_echo_seq: int = 0
    samples: list[tuple[int, float]] = field(default_factory=list)
    """(answer time ns, round trip ms) of every answer."""
    video: dict[str, Any] | None = None

    def on_send(self, now_ns: int, seq: int) -> None:
        self.sent[seq] = now_ns
        self.n_sent += 1

    def on_answer(self, now_ns: int, echo_seq: int, echo_send_ns: int) -> None:
        if self.sent.pop(echo_seq, None) is None:
            return  # already counted lost, or not ours
        self.n_answered += 1
        if echo_seq < self.max_echo_seq:
            self.n_reordered += 1
        self.max_echo_seq = max(self.max_echo_seq, echo_seq)
        self.samples.append((now_ns, (now_ns - echo_send_ns) / 1e6))

    def expire(self, now_ns: int) -> None:
        """Pings unanswered for LOSS_TIMEOUT_NS are lost."""
        old = [s for s, t in self.sent.items() if now_ns - t > LOSS_TIMEOUT_NS]
        for s in old:
            del self.sent[s]
        self.n_lost += len(old)

    def figures(self) -> dict[str, Any]:
        rtts = [r for _, r in self.samples]
        pct = percentiles(rtts, True, ("p50", "p99"), 3) if rtts else {"p50": None, "p99": None, "max": None}
        jitter = (sum(abs(b - a) for a, b in itertools.pairwise(rtts)) / (len(rtts) - 1)
                  if len(rtts) > 1 else None)
        judged = self.n_answered + self.n_lost
        return {"sent": self.n_sent, "answered": self.n_answered, "lost": self.n_lost,
                "loss_pct": None if not judged else round(100 * self.n_lost / judged, 3),
                "rtt_ms": pct, "jitter_ms": None if jitter is None else round(jitter, 3),
                "reordered": self.n_reordered,
                "reorder_pct": None if not self.n_answered else round(100 * self.n_reordered / self.n_answered, 3),
                "video": self.video}

    def verdict(self, th: Thresholds, video_kbps: int | None) -> tuple[bool, list[str]]:
        """GO or NO-GO, and one line per threshold missed (why)."""
        f = self.figures()
        why = []
        if not self.n_answered:
            return False, ["no answer at all"]
        if f["rtt_ms"]["p99"] > th.rtt_p99_ms:
            why.append(f"RTT p99 {f['rtt_ms']['p99']:.1f} ms > {th.rtt_p99_ms:g} ms")
        if f["jitter_ms"] is not None and f["jitter_ms"] > th.jitter_ms:
            why.append(f"jitter {f['jitter_ms']:.2f} ms > {th.jitter_ms:g} ms")
        if f["loss_pct"] is not None and f["loss_pct"] > th.loss_pct:
            why.append(f"loss {f['loss_pct']:.2f} % > {th.loss_pct:g} %")
        if f["reorder_pct"] is not None and f["reorder_pct"] > th.reorder_pct:
            why.append(f"reordering {f['reorder_pct']:.2f} % > {th.reorder_pct:g} %")
        v = self.video
        if video_kbps is not None:
            if v is None or not v.get("frames"):
                why.append("no video received on this path")
            elif v["bitrate_kbps_p50"] < th.video_bitrate_frac * video_kbps:
                why.append(f"video settled at {v['bitrate_kbps_p50']} kbit/s < {th.video_bitrate_frac:.0%} of "
                           f"video.bitrate_kbps = {video_kbps}")
        return not why, why


def run_linkcheck(cfg: Config, seconds: float, rate_hz: float = 100.0, video: bool = True,
                  th: Thresholds = THRESHOLDS, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Probe every path of `cfg` (the console's side) for `seconds`; the result with verdicts. LinkcheckError
    (one line: cause and fix) when a path's bedside does not answer at all."""
    paths = link_paths(cfg.link, "console")
    ctx = zmq.Context.instance()
    sec = security.for_client(cfg)
    socks = [control_client(ctx, tcp(p.host, p.control_port), sec) for p in paths]
    probes = [PathProbe(p.name, tcp(p.host, p.control_port)) for p in paths]
    viewers = []
    seq = 0
    poller = zmq.Poller()
    for s in socks:
        poller.register(s, zmq.POLLIN)
    try:
        # every path answers before anything is measured: an unreachable bedside is one line, not a report
        for p, s, probe in zip(paths, socks, probes, strict=True):
            deadline = time.monotonic() + REACH_TIMEOUT_S
            answered = False
            while not answered and time.monotonic() < deadline:  # IMMEDIATE: nothing queues before it connects
                seq += 1
                with contextlib.suppress(zmq.Again):
                    s.send(codec.encode(Ping(0, seq, time.monotonic_ns())), zmq.NOBLOCK)
                answered = bool(s.poll(200))
            if not answered:
                raise LinkcheckError(
                    f"{p.name} ({probe.endpoint}): no answer from the bedside in {REACH_TIMEOUT_S:g} s; start "
                    "`teleop bedside` there, or fix link.bedside_host / link.paths and the ports (and check that "
                    "security.keys_dir holds this console's key and the bedside's public key)")
            s.recv()
        if video:
            viewers = [_VideoProbe(cfg, p) for p in paths]
        period = 1e9 / rate_hz
        start = time.monotonic_ns()
        end = start + int(seconds * 1e9)
        next_send = start
        next_progress = start + 10_000_000_000
        while (now := time.monotonic_ns()) < end:
            if now >= next_send:
                seq += 1
                for s, probe in zip(socks, probes, strict=True):
                    t = time.monotonic_ns()
                    with contextlib.suppress(zmq.Again):  # a full queue: that ping is counted lost
                        s.send(codec.encode(Ping(0, seq, t)), zmq.NOBLOCK)
                    probe.on_send(t, seq)
                next_send += period
            for s, _ in poller.poll(max(0, int((next_send - time.monotonic_ns()) / 1e6))):
                k = socks.index(s)
                while True:
                    try:
                        data = s.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    t = time.monotonic_ns()
                    try:
                        msg = codec.decode(data)
                    except codec.ProtocolError:
                        continue
                    if isinstance(msg, Ack) and msg.status is AckStatus.PONG:
                        probes[k].on_answer(t, msg.echo_seq, msg.echo_send_ns)
            t = time.monotonic_ns()
            for probe in probes:
                probe.expire(t)
            if progress is not None and t >= next_progress:
                next_progress += 10_000_000_000
                progress(f"linkcheck: {(t - start) / 1e9:.0f}/{seconds:.0f} s; " + "; ".join(
                    f"{pr.name} RTT p50 {pr.figures()['rtt_ms']['p50']} ms, lost {pr.n_lost}" for pr in probes))
        # the last answers, then what is still out is lost
        t_end = time.monotonic_ns() + LOSS_TIMEOUT_NS
        while any(p.sent for p in probes) and time.monotonic_ns() < t_end:
            for s, _ in poller.poll(50):
                k = socks.index(s)
                msg = codec.decode(s.recv())
                if isinstance(msg, Ack) and msg.status is AckStatus.PONG:
                    probes[k].on_answer(time.monotonic_ns(), msg.echo_seq, msg.echo_send_ns)
        for probe in probes:
            probe.expire(time.monotonic_ns() + 2 * LOSS_TIMEOUT_NS)
        for probe, v in zip(probes, viewers, strict=False):
            probe.video = v.result()
    finally:
        for v in viewers:
            v.close()
        for s in socks:
            s.close(0)
    video_kbps = cfg.video.bitrate_kbps if video else None
    out_paths = []
    for probe in probes:
        ok, why = probe.verdict(th, video_kbps)
        out_paths.append({"name": probe.name, "endpoint": probe.endpoint, **probe.figures(),
                          "verdict": "GO" if ok else "NO-GO", "why": why,
                          "series": [(round((t - start) / 1e9, 4), r) for t, r in probe.samples]})
    bad = [p["name"] for p in out_paths if p["verdict"] != "GO"]
    return {"seconds": seconds, "rate_hz": rate_hz, "thresholds": th.__dict__, "video_checked": video,
            "video_bitrate_kbps": video_kbps, "paths": out_paths, "verdict": "NO-GO" if bad else "GO",
            "why": (f"fix or leave out of link.paths: {', '.join(bad)}" if bad else "every path qualifies")}


class _VideoProbe:
    """A viewer on one path for the whole run, reading the frames' header bitrate as they decode."""

    def __init__(self, cfg: Config, p: PathEndpoint) -> None:
        from video.receiver import VideoReceiver

        self.bitrates: list[int] = []
        self.rx = VideoReceiver(cfg, endpoint=tcp(p.host, p.video_port), on_new_frame=self._frame)

    def _frame(self) -> None:
        h = self.rx.latest_header()
        if h is not None:
            self.bitrates.append(h.bitrate_kbps)

    def result(self) -> dict[str, Any]:
        st = self.rx.stats()
        b = sorted(self.bitrates)
        return {"frames": len(b), "fps": st.get("fps"), "mbps": st.get("mbps"),
                "bitrate_kbps_p50": b[len(b) // 2] if b else None, "lost": st.get("lost")}

    def close(self) -> None:
        self.rx.close()


def _plot(p: dict[str, Any], th: Thresholds) -> str:
    """One path's round trips over time and their histogram, as an inline PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3), gridspec_kw={"width_ratios": [3, 1]})
    ts = [t for t, _ in p["series"]]
    rs = [r for _, r in p["series"]]
    a.plot(ts, rs, ".", markersize=1.5)
    a.axhline(th.rtt_p99_ms, color="r", linewidth=0.8, label=f"RTT limit {th.rtt_p99_ms:g} ms")
    a.set_xlabel("s")
    a.set_ylabel("RTT, ms")
    a.set_title(f"{p['name']} ({p['endpoint']}): {p['verdict']}")
    a.legend(loc="upper right", fontsize=7)
    if rs:
        b.hist(rs, bins=50)
    b.set_xlabel("RTT, ms")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def render_html(result: dict[str, Any]) -> str:
    """The report: overall verdict, one table row per path against the thresholds, one plot per path."""
    th = Thresholds(**result["thresholds"])
    e = html.escape
    rows = []
    for p in result["paths"]:
        r = p["rtt_ms"]
        v = p.get("video") or {}
        rows.append(
            f"<tr class='{'go' if p['verdict'] == 'GO' else 'nogo'}'><td>{e(p['name'])}</td><td>{e(p['endpoint'])}"
            f"</td><td>{r['p50']}</td><td>{r['p99']}</td><td>{r['max']}</td><td>{p['jitter_ms']}</td>"
            f"<td>{p['loss_pct']}</td><td>{p['reorder_pct']}</td><td>{v.get('fps', '—')}</td>"
            f"<td>{v.get('mbps', '—')}</td><td>{v.get('bitrate_kbps_p50', '—')}</td><td><b>{p['verdict']}</b>"
            f"<br>{e('; '.join(p['why']))}</td></tr>")
    plots = "".join(f"<img alt='{e(p['name'])} round trips' src='data:image/png;base64,{_plot(p, th)}'>"
                    for p in result["paths"])
    need = result["video_bitrate_kbps"]
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>teleop linkcheck: {result['verdict']}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}} td,th{{border:1px solid #999;
padding:4px 8px}} .go{{background:#dfd}} .nogo{{background:#fdd}} img{{display:block;margin:1em 0}}</style></head>
<body><h1>Link qualification: {result['verdict']}</h1><p>{e(result['why'])}. {result['seconds']:g} s per path,
pings at {result['rate_hz']:g} Hz on every path at once; video {'checked against video.bitrate_kbps = ' +
str(need) + ' kbit/s' if need else 'not checked'}.</p>
<p>Thresholds: RTT p99 ≤ {th.rtt_p99_ms:g} ms (Xu et al., Surg Endosc 2014); jitter ≤ {th.jitter_ms:g} ms and
loss ≤ {th.loss_pct:g} % (5G/edge telesurgery trials, 6G targets: GUIDE §1); reordering ≤ {th.reorder_pct:g} %;
video bitrate ≥ {th.video_bitrate_frac:.0%} of the configured. docs/operations.md, "Qualifying the link".</p>
<table><tr><th>path</th><th>endpoint</th><th>RTT p50 ms</th><th>p99</th><th>max</th><th>jitter ms</th>
<th>loss %</th><th>reorder %</th><th>video fps</th><th>Mbit/s</th><th>bitrate kbit/s</th><th>verdict</th></tr>
{''.join(rows)}</table>{plots}</body></html>"""
