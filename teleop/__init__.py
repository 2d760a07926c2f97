"""Surgeon-console teleoperation: launcher, configuration and shared helpers.

The `teleop` command lives here; the roles live in console/, bedside/, transport/, video/ and safety/.
"""

__version__ = "0.1.0"
