"""Persisted preferences (QSettings, INI format) and the connection dialog.

Remembered per user: display mode, eye swap, window geometry, last motion scale, and the connection
(bedside address, ports, keys). The saved connection is applied *under* the command line: `--set` always
wins, so a harness or a test that names its ports is never redirected by a desktop's saved settings.
`Prefs(directory=...)` keeps a run's settings in a directory of its own (tests, screenshots, benches).
"""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QWidget,
)

from base.config import Config
from video.compositor import DisplayMode

CONNECTION_KEYS = {
    # settings key: (config override key, type)
    "bedside_host": ("link.bedside_host", str),
    "control_port": ("link.control_port", int),
    "telemetry_port": ("link.telemetry_port", int),
    "video_port": ("link.video_port", int),
    "keys_dir": ("security.keys_dir", str),
    "identity": ("security.identity", str),
    "server_key": ("security.server_key", str),
}


class Prefs:
    def __init__(self, app: str = "console", directory: str | Path | None = None) -> None:
        if directory is not None:
            Path(directory).mkdir(parents=True, exist_ok=True)
            self.qs = QSettings(str(Path(directory) / f"{app}.ini"), QSettings.Format.IniFormat)
        else:
            self.qs = QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, "teleop", app)

    @property
    def path(self) -> str:
        return self.qs.fileName()

    def display_mode(self, default: DisplayMode = DisplayMode.SIDE_BY_SIDE) -> DisplayMode:
        try:
            return DisplayMode(str(self.qs.value("display/mode", default.value)))
        except ValueError:
            return default

    def set_display_mode(self, mode: DisplayMode) -> None:
        self.qs.setValue("display/mode", mode.value)

    def swap_eyes(self) -> bool:
        return str(self.qs.value("display/swap_eyes", "false")).lower() == "true"

    def set_swap_eyes(self, on: bool) -> None:
        self.qs.setValue("display/swap_eyes", "true" if on else "false")

    def geometry(self) -> QByteArray | None:
        v = self.qs.value("window/geometry")
        return v if isinstance(v, QByteArray) and not v.isEmpty() else None

    def set_geometry(self, g: QByteArray) -> None:
        self.qs.setValue("window/geometry", g)

    def scale(self) -> float | None:
        v = self.qs.value("teleop/scale")
        try:
            return None if v is None else float(v)
        except (TypeError, ValueError):
            return None

    def set_scale(self, s: float) -> None:
        self.qs.setValue("teleop/scale", float(s))

    def connection(self) -> dict[str, str | int]:
        out: dict[str, str | int] = {}
        for key, (_, typ) in CONNECTION_KEYS.items():
            v = self.qs.value(f"connection/{key}")
            if v is None or v == "":
                continue
            try:
                out[key] = typ(v)
            except (TypeError, ValueError):
                continue
        return out

    def set_connection(self, values: dict[str, str | int]) -> None:
        for key, v in values.items():
            if key in CONNECTION_KEYS:
                self.qs.setValue(f"connection/{key}", v)

    def connection_overrides(self) -> list[str]:
        """The saved connection as `section.key=value` overrides, to go before the command line's."""
        out = []
        for key, v in self.connection().items():
            cfg_key = CONNECTION_KEYS[key][0]
            out.append(f"{cfg_key}={json.dumps(v)}")  # a JSON string is a TOML basic string
        return out

    def sync(self) -> None:
        self.qs.sync()


class ConnectionDialog(QDialog):
    """Bedside address, ports and keys; OK saves them and reconnects (the engine is restarted)."""

    def __init__(self, cfg: Config, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Connection")
        form = QFormLayout(self)
        self.fields: dict[str, QLineEdit | QSpinBox] = {}
        self.fields["bedside_host"] = QLineEdit(cfg.link.bedside_host)
        for key in ("control_port", "telemetry_port", "video_port"):
            box = QSpinBox()
            box.setRange(1024, 65535)
            box.setValue(getattr(cfg.link, key))
            self.fields[key] = box
        self.fields["keys_dir"] = QLineEdit(cfg.security.keys_dir)
        self.fields["identity"] = QLineEdit(cfg.security.identity)
        self.fields["server_key"] = QLineEdit(cfg.security.server_key)
        labels = {"bedside_host": "Bedside address", "control_port": "Control port",
                  "telemetry_port": "Telemetry port", "video_port": "Video port",
                  "keys_dir": "Keys directory", "identity": "This station's key name",
                  "server_key": "Pinned bedside key (blank: keys dir)"}
        for key, w in self.fields.items():
            form.addRow(labels[key], w)
        note = "Security is on" if not cfg.security.insecure else "INSECURE MODE (debug only)"
        form.addRow(QLabel(f"{note}. Changing these restarts the control process: the arms are released "
                           "and you must engage again."))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def values(self) -> dict[str, str | int]:
        out: dict[str, str | int] = {}
        for key, w in self.fields.items():
            out[key] = w.value() if isinstance(w, QSpinBox) else w.text().strip()
        return out
