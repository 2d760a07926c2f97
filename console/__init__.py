"""The surgeon's console: master devices, teleoperation logic, the 1 kHz engine and (later) the window."""
