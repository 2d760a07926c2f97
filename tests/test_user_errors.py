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


@pytest.mark.parametrize("value", ["0", "-1", "nan", "ten"])
@pytest.mark.parametrize("bench", ["soak", "stall"])
def test_bench_minutes_must_be_positive(bench: str, value: str) -> None:
    """A negative run once ran and reported its targets met."""
    rc, err = teleop("bench", bench, "--minutes", value)
    line = one_line(err)
    assert rc == 2
    assert "--minutes" in line and f"teleop bench {bench} --help" in line


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


def last_line(stderr: str) -> str:
    """The error line; log lines of a role that had started (the recorder's INFO line) may come before it."""
    assert "Traceback" not in stderr, stderr
    return [ln for ln in stderr.splitlines() if ln.strip()][-1]


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    d = tmp_path / "keys"
    assert teleop("keys", "init", "--dir", str(d))[0] == 0
    assert teleop("keys", "add", "s1", "--role", "surgeon", "--dir", str(d))[0] == 0
    return d


@pytest.fixture
def busy_port():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    yield s.getsockname()[1]
    s.close()


@pytest.mark.parametrize("key", ["link.control_port", "link.telemetry_port", "link.video_port"])
def test_a_bedside_port_in_use_names_the_key_and_leaves_no_recording(key: str, keys: Path, busy_port: int,
                                                                    tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    rc, err = teleop("bedside", "--seconds", "5", "--set", f"security.keys_dir={keys}", "--set",
                     f"recording.dir={rec}", "--set", f"{key}={busy_port}")
    line = last_line(err)
    assert rc == 2
    assert f"--set {key}=PORT" in line and str(busy_port) in line
    assert key != "link.video_port" or "--no-video" in line  # never a bedside running silently without video
    assert not list(rec.glob("*.mcap")), "a bedside that never ran leaves no recording"


def test_a_console_port_in_use_names_the_key_and_leaves_no_recording(keys: Path, busy_port: int,
                                                                    tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    rc, err = teleop("console", "--ui", "--seconds", "5", "--set", f"security.keys_dir={keys}", "--set",
                     "security.identity=s1", "--set", f"recording.dir={rec}", "--set",
                     f"console.ui_intent_port={busy_port}")
    line = last_line(err)
    assert rc == 2 and "--set console.ui_intent_port=PORT" in line
    assert not list(rec.glob("*.mcap"))


def test_an_unknown_identity_names_the_keys_there_and_the_command_that_makes_one(keys: Path,
                                                                                tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    rc, err = teleop("console", "--headless", "--seconds", "5", "--set", f"security.keys_dir={keys}", "--set",
                     "security.identity=nobody", "--set", f"recording.dir={rec}")
    line = one_line(err)
    assert rc == 2
    assert "'nobody'" in line and "s1" in line and "teleop keys add nobody" in line
    assert not rec.exists() or not list(rec.glob("*.mcap")), "a console that never ran leaves no recording"


def test_a_missing_or_malformed_bedside_key_names_the_file_and_the_command(keys: Path) -> None:
    secret = keys / "bedside.key_secret"
    secret.write_text("garbage\n")
    rc, err = teleop("bedside", "--seconds", "5", "--set", f"security.keys_dir={keys}")
    line = one_line(err)
    assert rc == 2 and str(secret) in line and f"teleop keys init --dir {keys}" in line
    secret.unlink()
    rc, err = teleop("bedside", "--seconds", "5", "--set", f"security.keys_dir={keys}")
    line = one_line(err)
    assert rc == 2 and "does not exist" in line and f"teleop keys init --dir {keys}" in line


def test_a_configuration_file_with_several_mistakes_names_each_with_its_key(tmp_path: Path) -> None:
    cfg = tmp_path / "site.toml"
    cfg.write_text('[link]\ncontrol_port = 99999\ntelemetry_port = "x"\n[bedside]\nwatchdog_ms = -5\nnope = 1\n'
                   '[teleop]\nscale_max = 0.1\n[nosuch]\n')
    rc, err = teleop("config", "--config", str(cfg))
    assert rc == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert all(ln.startswith("teleop: configuration error: ") for ln in lines), err
    for key in ("link.control_port", "link.telemetry_port", "bedside.watchdog_ms", "bedside.nope", "[nosuch]"):
        assert sum(key in ln for ln in lines) == 1, (key, err)
    # the scale range the user narrowed is named first, not the starting scale they never set
    assert any(ln.startswith("teleop: configuration error: teleop.scale_max: 0.1 is below teleop.motion_scale")
               for ln in lines), err
    assert len(lines) == 6, err


def test_the_replay_window_without_a_display_says_so(tmp_path: Path) -> None:
    """A good recording, no screen: the window's error, not a Qt abort; a picture (--screenshot) needs none."""
    from qa.synth import synthesize

    rec = synthesize(tmp_path / "rec", seconds=1.0, video=None)
    rc, err = teleop("replay", str(rec.console), str(rec.bedside))
    line = one_line(err)
    assert rc == 2 and line.startswith("teleop: no display:") and "--screenshot" in line
    rc, err = teleop("replay", str(rec.console), str(rec.bedside), "--screenshot", str(tmp_path / "r.png"))
    assert rc == 0 and (tmp_path / "r.png").stat().st_size > 0, err


@pytest.mark.parametrize(("argv", "fix"), [
    (["--scales", "abc"], "--scales 0.75,1.0"),
    (["--frames", "-3"], "--frames 60"),
    (["--pane", "12"], "--pane 1600x800"),
    (["--x264-threads", "0,99"], "--x264-threads 0,1,2"),
])
def test_bench_frames_refuses_a_bad_flag_in_one_line(argv: list[str], fix: str) -> None:
    rc, err = teleop("bench", "frames", *argv)
    line = one_line(err)
    assert rc == 2 and line.startswith("teleop bench frames: argument") and fix in line
