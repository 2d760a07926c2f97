"""Configuration: every bad value is refused with a message naming the key, before anything starts."""

from __future__ import annotations

import pytest

from base.config import ConfigError, load_config, parse_override, to_toml


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("bedside.watchdog_ms=4", ["bedside.watchdog_ms", "minimum"]),
        ("bedside.watchdog_ms=5000", ["bedside.watchdog_ms", "maximum"]),
        ("bedside.watchdog_ms=true", ["bedside.watchdog_ms", "expected int"]),
        ("bedside.nonsense=1", ["unknown key bedside.nonsense"]),
        ("nosuch.key=1", ["unknown section [nosuch]"]),
        ("console.master=joystick", ["console.master", "not one of"]),
        ("teleop.max_step_mm=9", ["max_step"]),
        ("bedside.arm_driver=ur5", ["bedside.arm_driver: 'ur5' is not one of simulated"]),
        ("bedside.arm_driver=3", ["bedside.arm_driver", "expected str"]),
        ("video.codec=vp9", ["video.codec"]),
    ],
)
def test_bad_values_name_the_key(override, words):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    for w in words:
        assert w in str(err.value)


def test_file_errors_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[bedside\nwatchdog_ms = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        parse_override("watchdog_ms=3")


def test_dump_round_trips(tmp_path):
    cfg = load_config(None, ["bedside.watchdog_ms=40", "console.master=figure8"])
    text = "\n".join(line.split("  #")[0] for line in to_toml(cfg).splitlines())
    f = tmp_path / "c.toml"
    f.write_text(text)
    assert load_config(f) == cfg


def test_the_arm_driver_key_is_documented_with_its_choices():
    """`teleop config` (to_toml) shows the key, its help and the accepted values."""
    line = next(x for x in to_toml(load_config()).splitlines() if x.startswith("arm_driver"))
    assert line.startswith('arm_driver = "simulated"  # which arm driver') and line.endswith("(simulated)")
