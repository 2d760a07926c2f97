"""The bedside agent: drives the (simulated) arms, enforces its own limits, freezes on its own."""
