"""The session index: `teleop report DIR -o OUT` builds OUT/sessions.parquet (one row per session, the key
figures of qa/figures.py), incrementally; the DuckDB query of docs/recording.md returns the expected rows;
a user's mistake is one line and exit 2."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import duckdb
import pytest

import qa.index
from base.errors import UserError
from base.procs import teleop_command
from qa.index import build_index, query, write_trends
from qa.synth import synthesize

ROOT = Path(__file__).resolve().parents[1]
HOUR = 3_600_000_000_000
W0 = 1_700_000_000_000_000_000


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    d = tmp_path_factory.mktemp("recordings")
    story = [synthesize(d, seconds=9.0, video=None, story=True, wall_ns=W0 + i * HOUR, host=f"or-{i}").truth
             for i in range(2)]
    synthesize(d, seconds=2.0, video=None, wall_ns=W0 + 5 * HOUR, host="or-9")
    return d, story


def _docs_query(out: Path) -> str:
    text = (ROOT / "docs" / "recording.md").read_text()
    sql = re.search(r"<!-- index-query -->\s*```sql\n(.*?)```", text, re.S)
    assert sql, "docs/recording.md: the index query (marked <!-- index-query -->) is missing"
    return sql.group(1).replace("OUT/sessions.parquet", str(out / "sessions.parquet"))


def test_the_index_has_one_row_per_session_with_its_figures_and_is_incremental(recordings, tmp_path, monkeypatch):
    d, story = recordings
    seen: list[float] = []
    res = build_index([str(d)], tmp_path, lambda f, _w: seen.append(f))
    assert (res.indexed, res.skipped, res.failed) == (3, 0, [])
    assert seen[-1] == 1.0 and seen == sorted(seen)
    rows = query(res.path, "SELECT hosts, stale_episodes, holds_video_stale, freezes_grace, estops, handovers, "
                           "start_utc FROM sessions ORDER BY start_wall_ns")
    assert [r[0] for r in rows] == ["or-0", "or-1", "or-9"]
    for row, truth in zip(rows, story, strict=False):
        assert row[1:6] == (len(truth["stale_episodes"]), truth["holds"]["VIDEO_STALE"], truth["grace_holds"],
                            truth["estops"], truth["handovers"])
    assert rows[0][6] == "2023-11-14 22:13:20.000" and rows[1][6] == "2023-11-14 23:13:20.000"
    assert rows[2][1:3] == (0, 0)
    # the docs' query, as written there, returns the expected rows
    got = duckdb.sql(_docs_query(tmp_path)).fetchall()
    assert [(r[0], r[1], r[2]) for r in got] == [
        ("2023-11-14 22:13:20.000", "or-0", 2), ("2023-11-14 23:13:20.000", "or-1", 2)]
    # incremental: a second run reads no session again…
    monkeypatch.setattr(qa.index, "Session", lambda *_a, **_k: pytest.fail("an indexed session was read again"))
    again = build_index([str(d)], tmp_path)
    assert (again.indexed, again.skipped, len(again.rows)) == (0, 3, 3)
    monkeypatch.undo()
    # …and a new session is the only one read
    synthesize(d, seconds=2.0, video=None, wall_ns=W0 + 9 * HOUR, host="or-new")
    more = build_index([str(d)], tmp_path)
    assert (more.indexed, more.skipped) == (1, 3)
    html = write_trends(more, tmp_path).read_text()
    assert "trends.png" in html and "or-new" in html and (tmp_path / "trends.png").stat().st_size > 10000


def test_index_mistakes_are_one_line(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        build_index([str(tmp_path / "nowhere")], tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"holds no \.mcap"):
        build_index([str(tmp_path / "empty")], tmp_path / "out")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "console-20231114-221320-000.mcap").write_bytes(b"not an mcap file at all")
    p = subprocess.run(teleop_command("report", str(bad), "-o", str(tmp_path / "out")), capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    line = p.stderr.strip().splitlines()[-1]
    assert "is not an MCAP recording" in line and "console-20231114-221320-000.mcap" in line
    p = subprocess.run(teleop_command("report", str(tmp_path / "nowhere"), "-o", str(tmp_path / "out")),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "does not exist" in p.stderr
