"""atheris harness: what `teleop report` and `teleop replay` do with a recording (qa/session.py
loading, every table, event, video frame and re-drive plan), on mutated files: a small synthesised recording
written zstd-, lz4- and un-compressed and unchunked, with bytes overwritten or cut, or one message's JSON
mutated.

The rig and its invariants are tests/receivers.py `RecordingRig`. Writes one file per input into a
temporary directory (tmpfs is faster: TMPDIR=/dev/shm).
Run (docs/reliability.md, "Fuzzing every receiver", has the flags):
    nice -n 10 python tests/fuzz_recording.py -runs=100000 (exit status 0 = no crash).
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from receivers import RecordingRig, with_seed_corpus

logging.disable(logging.CRITICAL)
_rig = RecordingRig(Path(tempfile.mkdtemp(prefix="fuzz-recording-")), per_topic=2)
_inputs = [0]


def one_input(data: bytes) -> None:
    _rig.feed(_rig.from_fuzzer(data))
    _inputs[0] += 1
    if _inputs[0] % 25_000 == 0:  # what became of the inputs (libFuzzer exits without running Python's atexit)
        print(f"inputs {_inputs[0]}: {dict(_rig.outcomes)}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    atheris.Setup(with_seed_corpus(sys.argv, _rig.seeds), one_input)
    atheris.Fuzz()
