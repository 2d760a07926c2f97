"""Print the effective configuration (defaults, file and --set overrides) as TOML with each key's range.

Save it, edit it, pass it back with --config FILE.
"""

from __future__ import annotations

import argparse

from base.config import to_toml


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    print(to_toml(args.cfg))
    return 0
