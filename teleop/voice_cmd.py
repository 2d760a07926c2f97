"""`teleop voice`: one end of the voice intercom as a process of its own (voice/link.py).

  teleop voice                     the station's end, at the bedside: binds voice.port (CURVE domain `voice`,
                                   the bedside's keys; surgeon and station keys only)
  teleop voice --side console      the surgeon's end: connects to voice.station_host (or link.bedside_host)

Devices come from voice.input / voice.output (or --input/--output): a PortAudio device ('default', 'pulse',
a name or index), or for headless runs 'tone:HZ', 'burst:HZ:PERIOD_MS', 'file:PATH.wav', 'silence' and
'null'. Without a window there is no push-to-talk key: --open-mic (or voice.mode=open) sends the mic.
Prints `READY side=… endpoint=…`; on exit (SIGTERM/SIGINT, --seconds) writes --summary JSON: counters, link
state, per path (link.paths), the bursts it sent, the tone onsets it heard (`--detect HZ`), when it concealed a
frame, one-way delays (same host only).
"""

from __future__ import annotations

import argparse
import statistics
import time

from base.runtime import StopFlag, announce_ready, die_with_parent, write_json
from base.stats import percentiles
from teleop.args import positive_seconds

SIDES = ("console", "station")  # voice.link.SIDES; spelled here so `teleop --help` loads no codec


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--side", choices=SIDES, default="station", help="which end (default: station)")
    p.add_argument("--input", metavar="SPEC", help="microphone (default: voice.input)")
    p.add_argument("--output", metavar="SPEC", help="speaker (default: voice.output)")
    p.add_argument("--open-mic", action="store_true", help="send the mic all the time (voice.mode=open)")
    p.add_argument("--detect", type=float, metavar="HZ", help="report onsets of a tone of HZ in what is played")
    p.add_argument("--seconds", type=positive_seconds, default=None, help="stop after this long")
    p.add_argument("--summary", metavar="FILE", help="write the run's figures as JSON on exit ('-' = stdout)")
    p.add_argument("--no-record", action="store_true", help="do not record voice (default: recording.enabled "
                                                            "and voice.record)")


def run(args: argparse.Namespace) -> int:
    from voice.jitter import Out
    from voice.levels import OnsetDetector
    from voice.link import VoiceLink

    cfg = args.cfg
    die_with_parent()
    stop = StopFlag()
    detector = OnsetDetector(args.detect) if args.detect else None
    heard: list[int] = []
    concealed_ns: list[int] = []

    def on_output(pcm, kind, t_ns: int) -> None:
        if kind == Out.CONCEAL and len(concealed_ns) < 10_000:  # when, to line up with a path cut (a test's)
            concealed_ns.append(t_ns)
        if detector is not None:  # a device plays what it is handed one output latency later
            out = link.output
            onset = detector.feed(pcm, t_ns + int(getattr(out, "latency_s", 0.0) * 1e9))
            if onset is not None:
                heard.append(onset)

    recorder = None
    if cfg.recording.enabled and cfg.voice.record and not args.no_record:
        from recording.recorder import recording_dir
        from voice.record import VoiceRecorder

        recorder = VoiceRecorder(recording_dir(cfg), args.side, cfg.recording.chunk_ms)
    link = VoiceLink(cfg, args.side, input_spec=args.input, output_spec=args.output, recorder=recorder,
                     on_output=on_output)
    if args.open_mic:
        link.set_mode("open")
    try:
        link.start()
    except BaseException:
        link.close()
        if recorder is not None:  # nothing ran: leave no empty recording behind
            recorder.close()
            recorder.path.unlink(missing_ok=True)
        raise
    try:
        announce_ready(side=args.side, endpoint=link.endpoint_address, recording=recorder.path if recorder else "")
        t_end = None if args.seconds is None else time.monotonic() + args.seconds
        while not stop and (t_end is None or time.monotonic() < t_end):
            time.sleep(0.05)
    finally:
        link.close()
        if recorder is not None:
            recorder.close()
    if args.summary:
        ep = link.endpoint
        one_way = [d / 1e6 for d in ep.one_way_ns]
        bursts = getattr(link.input, "bursts", None)
        write_json(None if args.summary == "-" else args.summary, {
            **link.snapshot(),
            "one_way_ms": percentiles(one_way) if one_way else None,
            "one_way_median_ms": statistics.median(one_way) if one_way else None,
            "bursts_ns": list(bursts.onsets_ns) if bursts is not None else [],
            "heard_ns": heard, "concealed_ns": concealed_ns, "dropped_catchup": ep.jitter.stats.dropped_catchup,
            "decoder_errors": ep.decoder.errors, "recording": str(recorder.path) if recorder else None,
        })
    return 0
