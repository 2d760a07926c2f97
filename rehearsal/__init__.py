"""Rehearsal tools: the link emulator, network namespaces for real cable cuts, and a scripted surgeon.

They stand where the network and the surgeon stand, so that faults and soaks can be played on one machine.
"""
