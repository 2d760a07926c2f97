"""atheris harness for every receiver but the bedside's control decoder (tests/fuzz_bedside.py): the rig the
first argument names, from tests/receivers.py, on arbitrary input and on valid input from the project's own
encoders, mutated. The rigs hold the invariants (nothing escapes but the documented errors, a refused input
changes nothing, no arm moves because of it):

    console    the console's receive path: ack, telemetry, event, counters frames (`ConsoleRig`)
    video      the video receiver: wire metadata, H.264/JPEG payloads, the recorder's translation (`VideoRig`)
    master     the master bridge and the controller reading its sample (`MasterRig`)
    uilink     the window link: intents, heartbeats, painted-frame reports (`UiRig`)
    recording  what `teleop report`/`teleop replay` do with a mutated recording (`RecordingRig`; one file per
               input in a temporary directory: TMPDIR=/dev/shm is faster)

Run (docs/reliability.md, "Fuzzing every receiver", has the flags):
    nice -n 10 python tests/fuzz_receiver.py TARGET -runs=100000   (exit status 0 = no crash)
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

import atheris

TARGETS = ("console", "video", "master", "uilink", "recording")
if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
    sys.exit(f"usage: python tests/fuzz_receiver.py {{{'|'.join(TARGETS)}}} [libFuzzer flags]")
TARGET = sys.argv.pop(1)

with atheris.instrument_imports():
    import receivers

    from base.config import load_config

logging.disable(logging.CRITICAL)
if TARGET == "recording":
    _rig = receivers.RecordingRig(Path(tempfile.mkdtemp(prefix="fuzz-recording-")), per_topic=2)
else:
    rig_class = {"console": receivers.ConsoleRig, "video": receivers.VideoRig, "master": receivers.MasterRig,
                 "uilink": receivers.UiRig}[TARGET]
    _rig = rig_class(load_config(None, ["security.insecure=true"]))
_make = getattr(_rig, "from_fuzzer", None) or (lambda data: receivers.from_fuzzer(_rig.seeds, data))
_inputs = [0]


def one_input(data: bytes) -> None:
    _rig.feed(_make(data))
    _inputs[0] += 1
    if _inputs[0] % 25_000 == 0:  # what became of the inputs (libFuzzer exits without running Python's atexit)
        print(f"inputs {_inputs[0]}: {dict(_rig.outcomes)}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    atheris.Setup(receivers.with_seed_corpus(sys.argv, _rig.seeds), one_input)
    atheris.Fuzz()
