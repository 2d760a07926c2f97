"""Wire protocol (pure codec) and the ZeroMQ adapters that carry it."""
