"""docs/protocol.md (and docs/masters.md) name every value the code defines or sends.

The enumerations are read from the code and looked up in the document member by member, so a value added to
the code without its line in the document fails here, naming the member and the section to add it to. The
document is searched loosely (the value next to the name, in a table or in a sentence), never by exact text.
"""

from __future__ import annotations

import enum
import re
from pathlib import Path

import pytest

from bedside import agent
from console import uilink
from console.engagement import ArmState
from console.engine import LinkState
from console.masters import network
from safety.latency_policy import LatencyLevel
from safety.limits import LimitKind
from safety.video_guard import VideoState
from transport import codec, messages, security, video_wire

ROOT = Path(__file__).parent.parent
PROTOCOL = ROOT / "docs" / "protocol.md"
MASTERS = ROOT / "docs" / "masters.md"

WINDOW_LINK = "Inside the console: the window link"


def section(doc: Path, heading: str) -> str:
    """The text under the heading that starts with `heading`, down to the next heading of its level or higher
    (code blocks skipped: a `#` comment there is no heading)."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    fenced = False
    start = level = None
    for i, line in enumerate(lines):
        if line.startswith("```"):
            fenced = not fenced
            continue
        m = None if fenced else re.match(r"(#+) (.*)", line)
        if m is None:
            continue
        if start is not None and len(m.group(1)) <= level:
            return "\n".join(lines[start:i])
        if start is None and m.group(2).startswith(heading):
            start, level = i + 1, len(m.group(1))
    if start is None:
        pytest.fail(f"docs/{doc.name} has no section starting '{heading}': restore it")
    return "\n".join(lines[start:])


def pairs_documented(text: str, value: int, name: str, bit: bool = False) -> bool:
    """`value` right before `name`: "3 FAULT", "| 3 | `FAULT` |", or for a flag "bit 2 LIMIT"."""
    number = rf"(?<!\w)bit\s+{value}" if bit else rf"(?<![\w.]){value}"
    return re.search(number + rf"[\s|`]+{re.escape(name)}(?!\w)", text) is not None


ENUMS = [  # (enum, document, section) — every member must be documented with its value there
    (messages.MsgType, PROTOCOL, "Message types"),
    (messages.ConsoleFlags, PROTOCOL, "1 `SERVO_CP`"),
    (messages.AckStatus, PROTOCOL, "16 `ACK`"),
    (messages.OperatingState, PROTOCOL, "17 `TELEMETRY`"),
    (messages.ArmMode, PROTOCOL, "17 `TELEMETRY`"),
    (messages.ArmFlags, PROTOCOL, "17 `TELEMETRY`"),
    (messages.EventKind, PROTOCOL, "18 `EVENT`"),
    (messages.Reason, PROTOCOL, "18 `EVENT`"),
    (video_wire.MsgType, PROTOCOL, "Video link"),
    (video_wire.Codec, PROTOCOL, "Video link"),
    (video_wire.Layout, PROTOCOL, "Video link"),
    (video_wire.FrameFlags, PROTOCOL, "Video link"),
    (video_wire.ReportFlags, PROTOCOL, "Video link"),
    (video_wire.ModeReason, PROTOCOL, "Video link"),
]


@pytest.mark.parametrize(("cls", "doc", "heading"), ENUMS, ids=[f"{c.__module__}.{c.__name__}" for c, _, _ in ENUMS])
def test_every_wire_enum_member_is_documented_with_its_value(cls: type[enum.Enum], doc: Path, heading: str) -> None:
    text = section(doc, heading)
    flag = issubclass(cls, enum.IntFlag)
    missing = []
    for member in cls:
        value = int(member)
        if flag and value == 0:
            continue  # NONE: no bit
        if flag:
            assert value & (value - 1) == 0, f"{cls.__name__}.{member.name} is not one bit"
        shown = value.bit_length() - 1 if flag else value
        if not pairs_documented(text, shown, member.name, bit=flag):
            form = f"bit {shown} {member.name}" if flag else f"{shown} {member.name}"
            missing.append(f"{cls.__name__}.{member.name} = {value} (write '{form}')")
    assert not missing, f"docs/{doc.name}, section '{heading}', lacks: " + "; ".join(missing)


def test_every_decode_error_is_named() -> None:
    for module, base, heading in ((codec, codec.ProtocolError, "Header"),
                                  (video_wire, video_wire.VideoWireError, "Video link")):
        text = section(PROTOCOL, heading)
        errors = [v.__name__ for v in vars(module).values()
                  if isinstance(v, type) and issubclass(v, base) and v is not base]
        assert errors
        missing = [e for e in errors if f"`{e}`" not in text]
        assert not missing, f"docs/protocol.md, section '{heading}', lacks the decode errors {missing}"


def test_every_request_has_its_answers() -> None:
    """Each console-to-bedside type (values below ACK) has rows in the table of answers."""
    heading = "What the bedside answers to each request"
    text = section(PROTOCOL, heading)
    requests = [t for t in messages.MsgType if t < messages.MsgType.ACK]
    missing = [t.name for t in requests if not re.search(rf"^\| {t.name}\b", text, re.M)]
    assert not missing, f"docs/protocol.md, section '{heading}', lacks rows for {missing}"
    assert re.search(r"^\| ESTOP \(0\)", text, re.M), "the e-stop reset's answer is missing"


def _counter_names(*modules) -> set[str]:
    """Counter names as the code writes them: literals, and f-string prefixes as `prefix_<`."""
    names = set()
    for m in modules:
        for line in Path(m.__file__).read_text(encoding="utf-8").splitlines():
            names.update(f"`{n}`" for n in re.findall(r'counters\[\s*"(\w+)"\s*\]', line))
            if "counter" in line.lower():
                names.update(f"`{p}<" for p in re.findall(r'f"(\w+_)\{', line))
    return names


def test_every_bedside_counter_is_documented() -> None:
    text = section(PROTOCOL, "19 `COUNTERS`")
    names = _counter_names(agent, security)
    assert len(names) > 10
    missing = sorted(n for n in names if n not in text)
    assert not missing, f"docs/protocol.md, section '19 `COUNTERS`', lacks the counters {missing}"


def test_window_link_kinds_and_values_are_documented() -> None:
    text = section(PROTOCOL, WINDOW_LINK)
    sent = ROOT / "console" / "runner.py", ROOT / "console" / "ui" / "links.py"
    source = "\n".join(p.read_text(encoding="utf-8") for p in sent)
    kinds = set(re.findall(r'"type":\s*"(\w+)"', source))
    intents = set(re.findall(r'"name":\s*"(\w+)"', source))
    assert {"heartbeat", "intent", "video", "state", "event"} <= kinds and intents
    missing = [f"type {k}" for k in sorted(kinds) if f"| `{k}` |" not in text]
    missing += [f"intent {n}" for n in sorted(intents) if f"`{n}`" not in text]
    for cls in (LinkState, ArmState, LatencyLevel, LimitKind, VideoState):
        missing += [f"{cls.__name__}.{m.name} (`{m.value}`)" for m in cls if f"`{m.value}`" not in text]
    assert f"{uilink.MAX_UI_BYTES} bytes" in text and f"{uilink.STATE_HZ} Hz" in text
    assert not missing, f"docs/protocol.md, section '{WINDOW_LINK}', lacks: " + "; ".join(missing)


def test_master_bridge_message_is_documented() -> None:
    text = section(MASTERS, "Network master")
    missing = [f"bit {i} {name}" for i, name in enumerate(network.BUTTON_BITS)
               if not re.search(rf"(?<!\w){i} {name}(?!\w)", text)]
    assert not missing, "docs/masters.md, section 'Network master', lacks the buttons " + "; ".join(missing)
    assert f"magic `{network.MAGIC.decode()}`" in text and f"version = {network.VERSION}" in text
    assert f"**Message** ({network.SIZE} bytes" in text
    assert "bit 0 = device valid" in text
