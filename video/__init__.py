"""Stereo endoscope video: sources, codecs, the video wire protocol, sender and receiver.

The pure parts (wire, framecode, abr, session) take bytes, pictures and the current time and return
decisions; sender.py and receiver.py wrap them in sockets, a process and a thread. docs/video.md.
"""
