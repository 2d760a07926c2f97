"""Whatever a person can get wrong ends in one line naming the cause and the fix, a non-zero exit and no
traceback (issue #16, "Errors a person can act on"). Each case runs the real `teleop` command."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from base.procs import teleop_command


def teleop(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> tuple[int, str]:
    base_env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    out = subprocess.run(teleop_command(*args), capture_output=True, text=True, timeout=60,
                         env={**base_env, **(env or {})}, cwd=cwd, stdin=subprocess.DEVNULL)
    return out.returncode, out.stderr


def one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, Path]:
    empty = tmp_path / "empty.mcap"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mcap"
    text.write_text("not a recording\n")
    return {"missing": tmp_path / "nothing-here.mcap", "empty": empty, "not MCAP": text, "folder": tmp_path}


@pytest.mark.parametrize("command", ["replay", "report"])
@pytest.mark.parametrize("kind", ["missing", "empty", "not MCAP", "folder"])
def test_qa_commands_name_a_bad_recording(command: str, kind: str, bad_files: dict[str, Path],
                                          tmp_path: Path) -> None:
    path = bad_files[kind]
    extra = ["-o", str(tmp_path / "out")] if command == "report" else []
    rc, err = teleop(command, str(path), *extra)
    line = one_line(err)
    assert rc == 2
    assert str(path) in line and line.startswith("teleop: recording error:")
    assert not (tmp_path / "out").exists(), "no report is written for a bad recording"


@pytest.mark.parametrize(("argv", "fix"), [
    (["monitor"], "QT_QPA_PLATFORM=offscreen"),
    (["console"], "teleop console --headless"),
])
def test_windows_without_a_display_say_so_instead_of_aborting(argv: list[str], fix: str) -> None:
    rc, err = teleop(*argv)
    line = one_line(err)
    assert rc == 2
    assert line.startswith("teleop: no display:") and fix in line


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "ten"])
@pytest.mark.parametrize("command", ["bedside", "console", "demo", "monitor"])
def test_seconds_must_be_positive(command: str, value: str) -> None:
    rc, err = teleop(command, "--seconds", value)
    line = one_line(err)
    assert rc == 2
    assert "--seconds" in line and f"teleop {command} --help" in line


def test_a_bad_keys_directory_names_the_command_that_makes_one(tmp_path: Path) -> None:
    rc, err = teleop("keys", "list", "--dir", str(tmp_path))
    line = one_line(err)
    assert rc == 2
    assert f"teleop keys init --dir {tmp_path}" in line
    # ... and that hint is the real syntax: running it makes the directory usable.
    rc, _ = teleop("keys", "init", "--dir", str(tmp_path))
    assert rc == 0
    rc, err = teleop("keys", "list", "--dir", str(tmp_path))
    assert rc == 0, err


def test_a_reader_that_goes_away_is_not_a_traceback() -> None:
    p = subprocess.Popen(teleop_command("config"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stderr is not None
    p.stdout.read(10)
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) in (0, 141)
    assert "Traceback" not in err
