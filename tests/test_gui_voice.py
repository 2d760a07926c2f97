"""The voice panel (console/ui/voice_panel.py), offscreen: each control reaches the running voice link, the lost
state is shown and signalled, and a panel without a link says why and does nothing."""

from __future__ import annotations

import time

from base.config import load_config
from base.procs import free_ports
from console.ui.voice_panel import VoicePanel, console_panel
from voice.link import VoiceLink


def _wait(qtbot, pred, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not pred() and time.monotonic() < deadline:
        qtbot.wait(50)
    return pred()


def test_controls_reach_the_link_and_lost_is_shown_and_signalled(qtbot, key_overrides):
    port = free_ports(1)[0]  # nobody answers there: the link goes LOST
    cfg = load_config(None, [*key_overrides, f"voice.port={port}", "recording.enabled=false", "voice.lost_ms=300"])
    link = VoiceLink(cfg, "console", input_spec="tone:300", output_spec="null")
    panel = VoicePanel(link)
    qtbot.addWidget(panel)
    changes = []
    panel.lost_changed.connect(changes.append)
    link.start()
    try:
        assert _wait(qtbot, lambda: panel.link_lost)
        assert changes == [True] and "VOICE LINK LOST" in panel.state.text()
        panel.ptt.pressed.emit()
        assert link.snapshot()["ptt"] and link.snapshot()["talking"]
        panel.ptt.released.emit()
        assert not link.snapshot()["ptt"]
        panel.open_mic.setChecked(True)
        assert link.snapshot()["mode"] == "open" and link.snapshot()["talking"]
        panel.mute.setChecked(True)
        assert link.snapshot()["muted"] and not link.snapshot()["talking"]
        panel.volume.setValue(50)
        assert link.snapshot()["volume"] == 0.5
    finally:
        panel.close_link()


def test_a_panel_without_voice_says_why_and_is_inert(qtbot, cfg):
    panel = console_panel(cfg)  # voice.enabled is false by default
    qtbot.addWidget(panel)
    assert panel.link is None and "VOICE OFF" in panel.state.text() and "voice.enabled" in panel.state.text()
    assert not panel.ptt.isEnabled() and not panel.open_mic.isEnabled() and not panel.link_lost
