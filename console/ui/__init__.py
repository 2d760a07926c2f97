"""The surgeon's console window and the on-site team's monitor (Qt, PySide6).

The window is a separate process from the console engine (console/runner.py --ui): it only displays the
engine's state and sends intents; the engine holds the arms when the window's heartbeat vanishes or the
picture it paints goes stale. docs/user-guide.md explains every indicator and control.
"""
