"""atheris harness: the console's video receiver (transport/video_wire.py decode, VideoReceiver._step:
admission, H.264/JPEG decoding, stale guard, reports) and the recorder's translation of a received frame, on
arbitrary input and on valid frames from the real encoders, mutated.

The rig and its invariants are tests/receivers.py `VideoRig`.
Run (docs/reliability.md, "Fuzzing every receiver", has the flags):
    nice -n 10 python tests/fuzz_video.py -runs=100000 (exit status 0 = no crash).
"""

from __future__ import annotations

import logging
import sys

import atheris

with atheris.instrument_imports():
    from receivers import VideoRig, with_seed_corpus

    from base.config import load_config

logging.disable(logging.CRITICAL)
_rig = VideoRig(load_config(None, ["security.insecure=true"]))
_inputs = [0]


def one_input(data: bytes) -> None:
    _rig.feed(_rig.from_fuzzer(data))
    _inputs[0] += 1
    if _inputs[0] % 25_000 == 0:  # what became of the inputs (libFuzzer exits without running Python's atexit)
        print(f"inputs {_inputs[0]}: {dict(_rig.outcomes)}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    atheris.Setup(with_seed_corpus(sys.argv, _rig.seeds), one_input)
    atheris.Fuzz()
