"""A peer that replays the controller's last applied servo_cp on one path (run inside the console's namespace by
tests/test_netns_paths.py): it reads the session's epoch, last applied sequence number and tool poses from the
telemetry on that path, sends that servo_cp again with the surgeon's own key from a connection of its own, and
prints the bedside's answer as JSON."""

from __future__ import annotations

import json
import sys
import time

import zmq

from transport import codec
from transport.messages import Ack, ConsoleFlags, ServoCp, Telemetry
from transport.security import client_security
from transport.zmqlink import control_client, tcp, telemetry_subscriber


def main(keys_dir: str, host: str, control_port: int, telemetry_port: int) -> dict:
    ctx = zmq.Context.instance()
    sec = client_security(keys_dir, "surgeon")
    sub = telemetry_subscriber(ctx, tcp(host, telemetry_port), sec)
    ctrl = control_client(ctx, tcp(host, control_port), sec)
    try:
        tel = None
        end = time.monotonic() + 5
        while tel is None or not tel.last_applied_seq:
            if time.monotonic() > end:
                return {"error": "no telemetry with an applied command on this path"}
            if sub.poll(100):
                msg = codec.decode(sub.recv())
                if isinstance(msg, Telemetry):
                    tel = msg
        replay = ServoCp(tel.epoch, tel.last_applied_seq, time.monotonic_ns(), ConsoleFlags.OPERATOR_PRESENT, 0,
                         tuple(a.setpoint_cp for a in tel.arms))
        ctrl.send(codec.encode(replay))
        if not ctrl.poll(3000):
            return {"error": "no answer"}
        ack = codec.decode(ctrl.recv())
        assert isinstance(ack, Ack)
        return {"epoch": tel.epoch, "seq": tel.last_applied_seq, "status": ack.status.name,
                "rejected": ack.status.rejected}
    finally:
        sub.close(0)
        ctrl.close(0)


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
