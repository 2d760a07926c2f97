"""Black-box recording to MCAP (docs/recording.md): catalogue, producer taps, recorder process, files."""
