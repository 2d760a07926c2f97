"""The launcher: the `teleop` command, its subcommands, the demo and the benchmarks.

Nothing outside this package imports it; the roles live in console/, bedside/, qa/, video/, recording/,
safety/, transport/ and base/ (docs/architecture.md, "Floors").
"""

from base import __version__

__all__ = ["__version__"]
