"""A live, read-only Foxglove view of what a role records: the recorder's records, served over Foxglove's
WebSocket protocol by `foxglove-sdk` (docs/recording.md, "Live view").

Why in the recorder: it already holds every record as catalogue JSON, runs at nice +10 in its own process,
and never feeds anything back to a control loop, so a slow or hostile viewer can cost the recorder CPU at
worst, never a tick. Read-only by construction: the server is started with no capability (no client
publishing, no parameters, no services), so a viewer can only subscribe. It has none of the link's CURVE
roles: it binds loopback unless `recording.live_host` says otherwise, and is reached from elsewhere through
an SSH tunnel. Off by default (`recording.live_view`).

Video (base64 JSON, megabytes a second) and the 1 kHz command stream are not served: the proctor's picture
is `teleop monitor`; the live view is for the arms (transforms, poses), events, freezes, link and telemetry.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from recording.catalog import SCHEMAS, schema_bytes

log = logging.getLogger("recording.live")

NOT_SERVED = ("/video", "/video/frame", "/command", "/config")
"""Topic endings the live view leaves out (bandwidth; the command stream is the black box's alone)."""


def served(topic: str) -> bool:
    return not topic.endswith(NOT_SERVED)


class LiveView:
    """One foxglove-sdk WebSocket server with a channel per served topic, created on first use."""

    def __init__(self, host: str, port: int, name: str) -> None:
        import foxglove

        self._fox = foxglove
        self.context = foxglove.Context()  # our channels only, not the process-wide default context
        self.server = foxglove.start_server(name=name, host=host, port=port, capabilities=[],
                                            context=self.context)
        self.host, self.port = host, self.server.port
        self.channels: dict[str, Any] = {}
        log.info("live Foxglove view on ws://%s:%d (read-only)", host, self.port)

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def publish(self, topic: str, schema: str | None, wall_ns: int, msg: dict[str, Any]) -> None:
        """Log one record (wall-clock time, as in the file) if its topic is served."""
        if not served(topic) or schema not in SCHEMAS:
            return
        ch = self.channels.get(topic)
        if ch is None:
            sch = self._fox.Schema(name=schema, encoding="jsonschema", data=schema_bytes(schema))
            ch = self.channels[topic] = self._fox.Channel(topic, schema=sch, message_encoding="json",
                                                          context=self.context)
        ch.log(json.dumps(msg, separators=(",", ":")).encode(), log_time=max(0, wall_ns))

    def close(self) -> None:
        self.server.stop()
