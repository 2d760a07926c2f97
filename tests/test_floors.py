"""The floors of docs/architecture.md: every package is under a contract, and the launcher loads no UI until a
command opens a window. The contracts themselves are checked by `lint-imports` in the test command."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _contracts() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def test_every_package_of_ours_is_on_a_floor() -> None:
    """A new top-level package cannot escape the contracts: it must be placed on a floor first."""
    ours = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    cfg = _contracts()
    assert ours == set(cfg["root_packages"])
    layers = next(c for c in cfg["contracts"] if c["type"] == "layers")["layers"]
    on_floors = {name.strip() for layer in layers for name in layer.replace(":", "|").split("|")}
    assert on_floors == ours
    acyclic = next(c for c in cfg["contracts"] if c["type"] == "acyclic_siblings")["ancestors"]
    assert set(acyclic) == ours


def test_the_launcher_loads_no_ui_until_a_window_opens() -> None:
    """`teleop --help` and every headless subcommand's parser import neither Qt nor the UI modules."""
    code = (
        "import sys, teleop.cli\n"
        "teleop.cli.build_parser()\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'PySide6' or m == 'console.ui'"
        " or m.startswith('console.ui.') or m == 'qa.replay_window')\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
