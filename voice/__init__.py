"""Voice intercom between the surgeon console and the bedside station (issue #14; docs/protocol.md, "Voice").

Pure parts take bytes, PCM frames and the current time and return packets, frames and events: `wire` (the
packet format), `jitter` (adaptive playout buffer), `levels` (meters, tone detection), `intercom` (the
endpoint: push-to-talk, mute, volume, link state). `opus` wraps PyAV's libopus; `audio_io` reaches real
devices through PortAudio (`sounddevice`) or a file/tone for headless runs; `link` and `soundserver` are the
thin socket/thread and sound-server wrappers. Voice never runs on a thread of a 1 kHz loop.
"""
