"""Safety rules and watchdogs: pure state machines fed the current time, returning decisions."""
