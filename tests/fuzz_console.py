"""atheris harness: the console's receive path (ack, telemetry, event, counters frames off the bedside's
control and telemetry sockets) on arbitrary and mutated valid input.

The rig and its invariants are tests/receivers.py `ConsoleRig`: nothing escapes, an undecodable frame changes
nothing, every frame the console sends decodes, an idle console never commands an arm.
Run (docs/reliability.md, "Fuzzing every receiver", has the flags):
    nice -n 10 python tests/fuzz_console.py -runs=100000 (exit status 0 = no crash).
"""

from __future__ import annotations

import logging
import sys

import atheris

with atheris.instrument_imports():
    from receivers import ConsoleRig, from_fuzzer, with_seed_corpus

    from base.config import load_config

logging.disable(logging.CRITICAL)
_rig = ConsoleRig(load_config(None, ["security.insecure=true"]))
_inputs = [0]


def one_input(data: bytes) -> None:
    _rig.feed(from_fuzzer(_rig.seeds, data))
    _inputs[0] += 1
    if _inputs[0] % 25_000 == 0:  # what became of the inputs (libFuzzer exits without running Python's atexit)
        print(f"inputs {_inputs[0]}: {dict(_rig.outcomes)}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    atheris.Setup(with_seed_corpus(sys.argv, _rig.seeds), one_input)
    atheris.Fuzz()
