"""Foxglove: the recorder writes every arm's pose as foxglove.FrameTransform (world → <arm>_base → <arm>_tool,
ECM_tool → the camera), readable with the `mcap` library alone, and its live view (foxglove-sdk, off by
default, loopback) serves them to a WebSocket client; the layout in docs/ names topics that exist."""

from __future__ import annotations

import asyncio
import json
import struct
import threading
import time
from pathlib import Path

import pytest
from mcap.reader import make_reader

from base.config import ConfigError, load_config
from bedside.agent import BedsideAgent
from recording.catalog import BEDSIDE, CONSOLE, VIDEO_FRAME_ID, channels
from recording.convert import K_BEDSIDE, head
from recording.recorder import RecorderLoop
from transport.messages import ARM_NAMES

ROOT = Path(__file__).resolve().parents[1]
FOXGLOVE_REQUIRED = ["timestamp", "parent_frame_id", "child_frame_id", "translation", "rotation"]


def _loop(tmp_path: Path, *sets: str) -> tuple[RecorderLoop, BedsideAgent]:
    cfg = load_config(None, [f"recording.dir={tmp_path}", *sets])
    (tmp_path / "ipc").mkdir()
    loop = RecorderLoop(cfg, "bedside", str(tmp_path / "ipc"))
    loop.start(time.monotonic_ns())
    return loop, BedsideAgent(cfg.bedside, 0)


def _feed(loop: RecorderLoop, agent: BedsideAgent, t_ns: int) -> None:
    loop._handle([head(K_BEDSIDE, t_ns), agent.telemetry(t_ns)])


def test_a_recording_carries_the_arm_transform_tree_with_foxgloves_schema(tmp_path):
    loop, agent = _loop(tmp_path)
    for k in range(60):  # 300 ms of 200 Hz telemetry
        _feed(loop, agent, 1_000_000_000 + k * 5_000_000)
    path = loop.files.path
    loop.close(time.monotonic_ns())
    with open(path, "rb") as f:  # the mcap library alone
        reader = make_reader(f)
        summary = reader.get_summary()
        chans = [c for c in summary.channels.values() if c.topic == BEDSIDE.tf]
        assert len(chans) == 1
        schema = summary.schemas[chans[0].schema_id]
        assert schema.name == "foxglove.FrameTransform" and schema.encoding == "jsonschema"
        js = json.loads(schema.data)
        assert js["required"] == FOXGLOVE_REQUIRED and set(js["properties"]) == set(FOXGLOVE_REQUIRED)
        assert set(js["properties"]["rotation"]["properties"]) == set("xyzw")
        msgs = [json.loads(m.data) for _s, _c, m in reader.iter_messages(topics=[BEDSIDE.tf])]
    edges = {(m["parent_frame_id"], m["child_frame_id"]) for m in msgs}
    assert edges == ({("world", f"{a}_base") for a in ARM_NAMES} | {(f"{a}_base", f"{a}_tool") for a in ARM_NAMES}
                     | {("ECM_tool", VIDEO_FRAME_ID)})
    assert all(set(m) == set(FOXGLOVE_REQUIRED) for m in msgs)
    tools = [m for m in msgs if m["child_frame_id"] == "PSM1_tool"]
    assert 14 <= len(tools) <= 16  # 50 Hz over 300 ms, not 200 Hz
    home = agent.arms[0].measured.position
    assert [tools[0]["translation"][k] for k in "xyz"] == pytest.approx(list(home))
    assert {"/bedside/tf", "/console/tf"} <= {c.topic for r in ("bedside", "console") for c in channels(r)}
    assert CONSOLE.tf == "/console/tf"


def test_the_live_view_is_off_by_default_on_loopback_and_its_port_is_range_checked():
    cfg = load_config(None, [])
    assert cfg.recording.live_view is False and cfg.recording.live_host == "127.0.0.1"
    for bad in ("recording.live_port=70000", "recording.live_port=-1", "recording.live_host= "):
        with pytest.raises(ConfigError):
            load_config(None, [bad])


async def _first_transform(port: int) -> dict:
    import websockets

    async with websockets.connect(f"ws://127.0.0.1:{port}", subprotocols=["foxglove.sdk.v1"]) as ws:
        while True:
            m = await asyncio.wait_for(ws.recv(), 10)
            if isinstance(m, str):
                d = json.loads(m)
                if d["op"] == "serverInfo":
                    assert d["capabilities"] == []  # read-only: no client publish, parameters or services
                if d["op"] == "advertise":
                    assert not any(c["topic"].endswith(("/video", "/command")) for c in d["channels"])
                    await ws.send(json.dumps({"op": "subscribe", "subscriptions": [
                        {"id": 7, "channelId": c["id"]} for c in d["channels"] if c["topic"] == BEDSIDE.tf]}))
            elif m[0] == 1:  # messageData: opcode, subscription id u32, log time u64, payload
                sub, _t = struct.unpack_from("<IQ", m, 1)
                assert sub == 7
                return json.loads(m[13:])


def test_a_websocket_client_receives_transforms_from_the_live_view(tmp_path):
    loop, agent = _loop(tmp_path, "recording.live_view=true", "recording.live_port=0")
    assert loop.live is not None and loop.live.host == "127.0.0.1" and loop.live.port > 0
    stop = threading.Event()

    def produce() -> None:
        t = 1_000_000_000
        while not stop.is_set():
            _feed(loop, agent, t)
            t += 20_000_000
            time.sleep(0.02)

    th = threading.Thread(target=produce, daemon=True)
    th.start()
    try:
        tf = asyncio.run(_first_transform(loop.live.port))
    finally:
        stop.set()
        th.join(5)
        loop.close(time.monotonic_ns())
    assert set(tf) == set(FOXGLOVE_REQUIRED) and tf["child_frame_id"].endswith(("_base", "_tool", VIDEO_FRAME_ID))


def test_the_foxglove_layout_names_recorded_topics():
    layout = json.loads((ROOT / "docs" / "foxglove-layout.json").read_text())
    text = json.dumps(layout)
    topics = {c.topic for r in ("bedside", "console") for c in channels(r)}
    named = {t for t in topics if f'"{t}"' in text or f'"{t}.' in text}
    assert {BEDSIDE.tf, BEDSIDE.video} <= named
    assert "3D!" in text and "Image!" in text
