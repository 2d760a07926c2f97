"""Print, regenerate or check the state-machine diagrams in docs/state-machines.md, generated from the tables.

In the doc, each machine's diagram is the ```mermaid block right after its marker line
`<!-- diagram: NAME -->` (NAME is the table's name). Without options this prints every diagram; --write
replaces the blocks in the doc (the prose around them is left alone); --check exits 1 naming each machine
whose diagram no longer matches its table.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from bedside.agent import SESSION
from console.engagement import TRANSITIONS as ENGAGEMENT
from console.engine import LINK
from console.hands import ASSIGNMENT
from console.uilink import WINDOW
from safety.statemachine import TransitionTable, diagram
from voice.intercom import VOICE_LINK

MACHINES: tuple[TransitionTable, ...] = (ENGAGEMENT, ASSIGNMENT, SESSION, LINK, WINDOW, VOICE_LINK)
"""Every state machine of the product, in the order docs/state-machines.md shows them."""

DOC = Path(__file__).resolve().parent.parent / "docs" / "state-machines.md"
FIX = "run `teleop diagrams --write` to regenerate it from the tables"


def block(table: TransitionTable) -> str:
    """The marker and Mermaid block the doc holds for `table`."""
    return f"<!-- diagram: {table.name} -->\n```mermaid\n{diagram(table)}\n```"


def stale(doc: str) -> list[str]:
    """Names of the machines whose diagram in `doc` is missing or differs from their table."""
    return [t.name for t in MACHINES if block(t) not in doc]


def refresh(doc: str) -> str:
    """`doc` with every machine's block regenerated; KeyError naming a machine whose marker is missing."""
    for t in MACHINES:
        pattern = re.compile(rf"<!-- diagram: {re.escape(t.name)} -->\n```mermaid\n.*?```", re.DOTALL)
        if pattern.search(doc) is None:
            raise KeyError(t.name)
        doc = pattern.sub(lambda _m, t=t: block(t), doc, count=1)
    return doc


def add_arguments(p: argparse.ArgumentParser) -> None:
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="regenerate the diagrams in the doc from the tables")
    mode.add_argument("--check", action="store_true", help="exit 1 if a diagram in the doc no longer matches its table")
    p.add_argument("--doc", type=Path, default=DOC, metavar="FILE",
                   help="the doc to write or check (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    if not (args.write or args.check):
        for t in MACHINES:
            print(f"{block(t)}\n")
        return 0
    try:
        doc = args.doc.read_text(encoding="utf-8")
    except OSError as exc:
        print(f"teleop diagrams: cannot read {args.doc} ({exc.strerror}): run from a source checkout or pass "
              "--doc FILE", file=sys.stderr)
        return 2
    if args.check:
        bad = stale(doc)
        if bad:
            print(f"teleop diagrams: {args.doc} is stale for {', '.join(bad)} (the diagram no longer matches the "
                  f"table): {FIX}", file=sys.stderr)
            return 1
        print(f"{args.doc}: {len(MACHINES)} diagrams match their tables")
        return 0
    try:
        new = refresh(doc)
    except KeyError as exc:
        print(f"teleop diagrams: {args.doc} has no `<!-- diagram: {exc.args[0]} -->` line: add it, followed by a "
              "```mermaid block, to that machine's section and run again", file=sys.stderr)
        return 1
    if new != doc:
        args.doc.write_text(new, encoding="utf-8")
    print(f"{args.doc}: {len(MACHINES)} diagrams {'written' if new != doc else 'already up to date'}")
    return 0
