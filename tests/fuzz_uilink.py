"""atheris harness: the window link (console/uilink.py: the JSON intents, heartbeats and
painted-frame reports the engine reads) and the controller it holds, on arbitrary input and on valid
messages, mutated.

The rig and its invariants are tests/receivers.py `UiRig`.
Run: nice -n 10 python tests/fuzz_uilink.py -runs=100000 (exit status 0 = no crash).
"""

from __future__ import annotations

import logging
import sys

import atheris

with atheris.instrument_imports():
    from receivers import UiRig, from_fuzzer, with_seed_corpus

    from base.config import load_config

logging.disable(logging.CRITICAL)
_rig = UiRig(load_config(None, ["security.insecure=true"]))


def one_input(data: bytes) -> None:
    _rig.feed(from_fuzzer(_rig.seeds, data))


if __name__ == "__main__":
    atheris.Setup(with_seed_corpus(sys.argv, _rig.seeds), one_input)
    atheris.Fuzz()
