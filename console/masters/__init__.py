"""Master devices beyond the scripted and file masters of console/master.py, all behind MasterDevice.

keyboard.KeyboardMouseMaster   two hands, pedals and presence from a keyboard and mouse (GUI demo)
spacemouse.SpaceMouseMaster    a 3Dconnexion SpaceMouse through hidapi (optional extra `spacemouse`)
network.NetworkMaster          poses streamed by an external haptic-device driver over ZeroMQ

docs/masters.md documents the bindings, the network message, its frames and rates.
"""
