#!/usr/bin/env python3
"""A complete master bridge for a haptic device: start here to connect yours (docs/masters.md).

Needs only Python 3 and pyzmq (`pip install pyzmq`); it imports nothing from the console, so it can live with
your device's driver. Replace `MyDevice` with your driver: `read()` returns each hand's pose, velocity and
gripper in the master frame (x right, y up, z toward the surgeon; metres, m/s, unit quaternion x, y, z, w),
the buttons and your device's own fault state; `apply(forces)` commands each hand's force (N, master frame).

    python docs/example_bridge.py --bridge tcp://CONSOLE:5583 --force tcp://CONSOLE:5584

and on the console: `--set console.master=bridge` (its defaults bind 127.0.0.1:5583 and :5584; set
console.bridge_endpoint / console.bridge_force_endpoint to reach it from another host).

What it does every servo cycle (1 kHz here; at least 100 Hz):
1. sends one version-2 sample (200 bytes): pose, velocity, gripper, buttons, the device-valid and deadman
   flags, a sequence number and a source id fixed for this run;
2. applies the newest force message (88 bytes) if it is younger than FORCE_TIMEOUT_S by our clock, else zero:
   the console already fades a stale force to zero, this is the device's own guard behind it.
Your device's own safety (current limits, its watchdog) stays in charge: the console's force is a request.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import struct
import time

import zmq

SAMPLE = struct.Struct("<4sBBHIq" + "d" * 22 + "I")  # magic, version, flags, buttons, seq, t_ns, 22 doubles, source
FORCE = struct.Struct("<4sBBHIIqqq6d")  # magic, version, flags, reserved, seq, echo, send, measured, rx, 6 doubles
BUTTONS = ("operator_present", "clutch", "camera", "engage", "disengage", "estop", "swap")
FLAG_VALID, FLAG_DEADMAN = 1, 2
FORCE_TIMEOUT_S = 0.05


def encode_sample(seq: int, t_ns: int, hands, velocities, buttons: dict, valid: bool, source: int,
                  deadman: bool = True) -> bytes:
    """`hands`: two (x, y, z, qx, qy, qz, qw, gripper); `velocities`: two (vx, vy, vz); `buttons`: name -> bool."""
    bits = sum(1 << i for i, name in enumerate(BUTTONS) if buttons.get(name))
    vals = [*hands[0], *hands[1], *velocities[0], *velocities[1]]
    flags = (FLAG_VALID if valid else 0) | (FLAG_DEADMAN if deadman else 0)
    return SAMPLE.pack(b"TMST", 2, flags, bits, seq & 0xFFFFFFFF, t_ns, *vals, source)


def decode_force(data: bytes):
    """((fx, fy, fz) right, (fx, fy, fz) left) in N, or None for anything that is not a version-2 force."""
    if len(data) != FORCE.size:
        return None
    magic, version, _flags, _, _seq, _echo, _send, _measured, _rx, *f = FORCE.unpack(data)
    if magic != b"TFRC" or version != 2 or not all(math.isfinite(x) for x in f):
        return None
    return (tuple(f[0:3]), tuple(f[3:6]))


class MyDevice:
    """Replace with your driver. This stand-in holds both handles still, presence held, engage pressed once."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def read(self):
        right = (0.08, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.5)  # x, y, z, qx, qy, qz, qw (normalised!), gripper
        left = (-0.08, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.5)
        still = (0.0, 0.0, 0.0)
        t = time.monotonic() - self.t0
        buttons = {"operator_present": True, "engage": 1.0 < t < 1.1}
        return (right, left), (still, still), buttons, True  # hands, velocities, buttons, device valid

    def apply(self, forces) -> None:
        pass  # command your motors here (with your own limits)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bridge", default="tcp://127.0.0.1:5583", help="the console's console.bridge_endpoint")
    p.add_argument("--force", default="tcp://127.0.0.1:5584", help="the console's console.bridge_force_endpoint")
    p.add_argument("--rate-hz", type=float, default=1000.0)
    a = p.parse_args()
    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 4)  # never queue old poses
    pub.setsockopt(zmq.LINGER, 0)
    pub.connect(a.bridge)
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.CONFLATE, 1)  # the newest force wins
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(a.force)
    device = MyDevice()
    source = int.from_bytes(os.urandom(4), "little") or 1
    seq, force, force_t = 0, ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)), -1.0
    period = 1.0 / a.rate_hz
    nxt = time.monotonic()
    try:
        while True:
            try:
                got = decode_force(sub.recv(zmq.NOBLOCK))
                if got is not None:
                    force, force_t = got, time.monotonic()
            except zmq.Again:
                pass
            zero = ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0))
            device.apply(force if time.monotonic() - force_t <= FORCE_TIMEOUT_S else zero)
            hands, velocities, buttons, valid = device.read()
            seq += 1
            with contextlib.suppress(zmq.Again):  # a full queue: the console takes the newest anyway
                pub.send(encode_sample(seq, time.monotonic_ns(), hands, velocities, buttons, valid, source),
                         zmq.NOBLOCK)
            nxt += period
            time.sleep(max(0.0, nxt - time.monotonic()))
    except KeyboardInterrupt:
        pass
    finally:
        device.apply(((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)))
        pub.close(0)
        sub.close(0)


if __name__ == "__main__":
    main()
