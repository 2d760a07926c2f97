"""QA tools for recorded sessions (docs/recording.md): load, replay, re-drive a bedside, report."""
