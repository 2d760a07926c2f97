"""The session index: many recorded sessions, one row each, in a Parquet file that DuckDB (embedded, the
default), Spark or Trino read as it is (docs/recording.md, "Many sessions").

Why: a hospital's QA reviews hundreds of sessions, and the questions are across them ("which sessions had a
stale-video episode longer than a second, and on which console?"). Each row holds the key figures of
qa/figures.py (the numbers the single-session report prints) and the files it came from.

How files become sessions: a recording directory holds every role's files of every run
(`<role>-<date>-<nnn>.mcap`). A file's wall-clock span comes from its MCAP summary (log times are wall
clock), or, for a file cut short without a summary, from its name and a streaming read. Files whose spans
overlap (within `GAP_S`) are one session: the console's and the bedside's of one run, and a role's rotated
parts.

Incremental: each row carries the fingerprint (name, size, mtime) of its files; re-running over the same
directory reads only sessions whose fingerprint is not in the index yet. DuckDB writes the Parquet file
(no pyarrow/pandas).
"""

from __future__ import annotations

import html
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from base.errors import UserError
from qa.figures import HOLD_COLUMNS, figures
from qa.session import RecordingError, Session, check_files

INDEX_NAME = "sessions.parquet"
NOT_INDEXED = ("voice-",)
"""Recordings in the directory that are no console/bedside session file (the intercom's, qa/voice.py reads them)."""
GAP_S = 5.0
"""Files further apart than this in wall-clock time are different sessions."""
_NAME_RE = re.compile(r"^(bedside|console)-(\d{8}-\d{6})-\d+\.mcap$")

COLUMNS: dict[str, str] = {
    "session_id": "VARCHAR", "fingerprint": "VARCHAR", "indexed_utc": "VARCHAR", "start_wall_ns": "BIGINT",
    "start_utc": "VARCHAR", "duration_s": "DOUBLE", "files": "VARCHAR", "hosts": "VARCHAR", "software": "VARCHAR",
    "surgeons": "VARCHAR", "rtt_p50_ms": "DOUBLE", "rtt_p95_ms": "DOUBLE", "rtt_p99_ms": "DOUBLE",
    "rtt_p999_ms": "DOUBLE", "rtt_max_ms": "DOUBLE", "acks_with_rtt": "BIGINT", "freezes": "BIGINT",
    "freezes_watchdog": "BIGINT", "freezes_grace": "BIGINT", "freezes_estop": "BIGINT", "freezes_other": "BIGINT",
    "freeze_latency_max_ms": "DOUBLE", "holds": "BIGINT",
    **{f"holds_{k.lower()}": "BIGINT" for k in HOLD_COLUMNS}, "holds_other": "BIGINT", "holds_by_reason": "VARCHAR",
    "video_stale_holds": "BIGINT", "stale_episodes": "BIGINT", "stale_episodes_console_counter": "BIGINT",
    "stale_ms_total": "DOUBLE", "stale_ms_max": "DOUBLE", "alarms": "BIGINT", "estops": "BIGINT",
    "handovers": "BIGINT", "refusals": "BIGINT", "limit_events": "BIGINT", "rejections": "BIGINT",
    "failovers": "BIGINT", "voice_losses": "BIGINT", "m2p_p50_ms": "DOUBLE", "m2p_p99_ms": "DOUBLE",
    "frames_received": "BIGINT", "frame_age_p50_ms": "DOUBLE", "frame_age_p99_ms": "DOUBLE",
}
"""The index's columns and their SQL types, in order (docs/recording.md lists what each means)."""

Progress = Callable[[float, str], None]


@dataclass
class FileSpan:
    path: Path
    start_ns: int
    end_ns: int

    @property
    def fingerprint(self) -> str:
        st = self.path.stat()
        return f"{self.path.name}:{st.st_size}:{st.st_mtime_ns}"


def find_recordings(paths: list[str]) -> list[Path]:
    """Every .mcap under the given directories, and the files given; a user's mistake is one line."""
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if not path.exists():
            raise UserError(f"{p} does not exist: give a directory of .mcap recordings (`recording.dir`, by default "
                            "~/.local/state/teleop/recordings) or .mcap files")
        if path.is_dir():
            found = sorted(q for q in path.rglob("*.mcap") if q.is_file() and not q.name.startswith(NOT_INDEXED))
            if not found:
                raise UserError(f"{p} holds no .mcap recording: give the directory the recorder writes to "
                                "(`recording.dir`)")
            out += found
        else:
            out.append(Path(check_files([str(path)])[0]))
    return sorted(set(out))


def _span(path: Path) -> FileSpan:
    """Wall-clock span of one file: its summary's statistics, else its name's time and the last log time read."""
    from mcap.reader import make_reader

    check_files([str(path)])  # missing, empty, not MCAP: one line naming the file
    with open(path, "rb") as f:
        try:
            st = make_reader(f).get_summary().statistics  # type: ignore[union-attr]
            if st is not None and st.message_count:
                return FileSpan(path, st.message_start_time, st.message_end_time)
        except Exception:  # no footer (cut short): fall through
            pass
    m = _NAME_RE.match(path.name)
    start = int(time.mktime(time.strptime(m.group(2), "%Y%m%d-%H%M%S")) - time.timezone) * 10**9 if m else 0
    return FileSpan(path, start, start + int(GAP_S * 1e9))


def group_sessions(files: list[Path]) -> list[list[FileSpan]]:
    """Files whose wall-clock spans overlap (within GAP_S) are one session, in start order."""
    spans = sorted((_span(p) for p in files), key=lambda s: (s.start_ns, str(s.path)))
    groups: list[list[FileSpan]] = []
    end = None
    gap = int(GAP_S * 1e9)
    for sp in spans:
        if groups and end is not None and sp.start_ns <= end + gap:
            groups[-1].append(sp)
            end = max(end, sp.end_ns)
        else:
            groups.append([sp])
            end = sp.end_ns
    return groups


def _connect():
    import duckdb

    return duckdb.connect()


def read_index(path: Path) -> list[dict]:
    """The rows of an existing index (none if there is no index yet)."""
    if not path.exists():
        return []
    con = _connect()
    try:
        cur = con.execute("SELECT * FROM read_parquet(?)", [str(path)])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    except Exception as exc:
        raise UserError(f"{path} is not a session index DuckDB can read ({type(exc).__name__}): delete it and run "
                        "`teleop report` again") from None
    finally:
        con.close()


def write_index(path: Path, rows: list[dict]) -> None:
    """All rows into one Parquet file (zstd), written beside and renamed over: a reader never sees half."""
    con = _connect()
    try:
        cols = ", ".join(f'"{k}" {t}' for k, t in COLUMNS.items())
        con.execute(f"CREATE TABLE sessions ({cols})")
        if rows:
            marks = ", ".join("?" for _ in COLUMNS)
            con.executemany(f"INSERT INTO sessions VALUES ({marks})", [[r.get(k) for k in COLUMNS] for r in rows])
        tmp = path.with_suffix(".parquet.tmp")
        con.execute(f"COPY (SELECT * FROM sessions ORDER BY start_wall_ns, session_id) TO '{tmp}' "
                    "(FORMAT parquet, COMPRESSION zstd)")
        os.replace(tmp, path)
    finally:
        con.close()


@dataclass
class IndexResult:
    path: Path
    rows: list[dict]
    indexed: int  # sessions read this run
    skipped: int  # sessions already in the index (not read again)
    failed: list[str]  # "file: why" of sessions that could not be read (left out, named)


def build_index(paths: list[str], out: str | Path, progress: Progress | None = None) -> IndexResult:
    """Index every session under `paths` into `out`/sessions.parquet, reading only the sessions not yet in it."""
    files = find_recordings(paths)
    groups = group_sessions(files)  # before the output directory exists: a bad file leaves nothing behind
    outp = Path(out)
    outp.mkdir(parents=True, exist_ok=True)
    ipath = outp / INDEX_NAME
    old = {r["fingerprint"]: r for r in read_index(ipath)}
    rows: list[dict] = []
    indexed = skipped = 0
    failed: list[str] = []
    for i, g in enumerate(groups):
        fp = ";".join(sorted(s.fingerprint for s in g))
        if progress:
            progress(i / max(1, len(groups)), g[0].path.name)
        if fp in old:
            rows.append(old[fp])
            skipped += 1
            continue
        try:
            f = figures(Session([s.path for s in g]))
        except RecordingError as exc:
            failed.append(str(exc))
            continue
        row = {**f.row, "session_id": ";".join(sorted(s.path.name for s in g)), "fingerprint": fp,
               "indexed_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        rows.append(row)
        indexed += 1
    write_index(ipath, rows)
    if progress:
        progress(1.0, "index written")
    return IndexResult(ipath, rows, indexed, skipped, failed)


TRENDS = (("rtt_p99_ms", "RTT p99 (ms)", True), ("rtt_max_ms", "RTT max (ms)", True),
          ("stale_episodes", "stale-video episodes", False), ("holds", "holds (arm transitions)", False),
          ("freezes_watchdog", "watchdog freezes", False), ("alarms", "alarms", False))


def write_trends(res: IndexResult, out: str | Path) -> Path:
    """index.html: trend plots across sessions (x: session start, wall clock) and one table row per session."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    import numpy as np

    outp = Path(out)
    rows = sorted((r for r in res.rows if r.get("start_wall_ns")), key=lambda r: r["start_wall_ns"])
    x = np.asarray([np.datetime64(int(r["start_wall_ns"]), "ns") for r in rows], dtype="datetime64[ns]")
    fig, axes = plt.subplots(len(TRENDS), 1, figsize=(10, 2.1 * len(TRENDS)), sharex=True)
    for ax, (col, label, log) in zip(axes, TRENDS, strict=True):
        y = np.asarray([np.nan if r.get(col) is None else float(r[col]) for r in rows])
        ax.plot(x, y, marker="o", ms=3, lw=0.8, label=f"{label}, per session ({np.isfinite(y).sum()})")
        if log and np.isfinite(y).any() and np.nanmin(y) > 0 and np.nanmax(y) / np.nanmin(y) > 10:
            ax.set_yscale("log")
        ax.set_ylabel(label, fontsize=8)
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("session start (wall clock, UTC)")
    axes[-1].xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d\n%H:%M"))
    fig.savefig(outp / "trends.png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    keys = ("start_utc", "duration_s", "hosts", "surgeons", "rtt_p99_ms", "rtt_max_ms", "stale_episodes",
            "stale_ms_max", "holds", "freezes", "freezes_watchdog", "freezes_grace", "alarms", "estops",
            "handovers", "m2p_p50_ms", "failovers", "session_id")
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>teleop sessions</title><style>"
             "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
             "padding:2px 6px;font-size:12px}th{background:#eee}img{max-width:100%}</style></head><body>",
             f"<h1>teleop sessions: {len(res.rows)}</h1><p>index: {html.escape(str(res.path))} "
             f"({res.indexed} read this run, {res.skipped} already indexed)</p>",
             "<h2>Trends across sessions</h2><img src='trends.png' alt='trends'>",
             "<h2>Sessions</h2><table><tr>" + "".join(f"<th>{k}</th>" for k in keys) + "</tr>"]
    for r in rows:
        parts.append("<tr>" + "".join(f"<td>{html.escape('—' if r.get(k) is None else str(r[k]))}</td>"
                                      for k in keys) + "</tr>")
    parts.append("</table>")
    if res.failed:
        parts.append("<h2>Not indexed</h2><ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in res.failed) + "</ul>")
    parts.append("</body></html>")
    path = outp / "index.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def query(path: str | Path, sql: str) -> list[tuple]:
    """Run `sql` with the index as the view `sessions` (what docs/recording.md's examples use)."""
    con = _connect()
    try:
        con.execute(f"CREATE VIEW sessions AS SELECT * FROM read_parquet('{Path(path)}')")
        return con.execute(sql).fetchall()
    finally:
        con.close()


def summary_json(res: IndexResult) -> str:
    return json.dumps({"index": str(res.path), "sessions": len(res.rows), "indexed": res.indexed,
                       "skipped": res.skipped, "failed": res.failed})
