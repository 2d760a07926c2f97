"""The one kind of error a person can act on.

Whatever a user can get wrong (a key, a port, a file, a flag, a configuration value) is raised as a
`UserError` whose message is one line naming the cause and the fix. The launcher (`teleop/cli.py`) prints it
as `teleop: <label>: <message>` and exits 2, never with a traceback. Programming errors are not UserErrors.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix; `label` names the kind ("configuration error", "key error", ...)."""

    label = "error"
