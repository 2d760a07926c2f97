"""The ground floor: geometry, configuration, process runtime, statistics and process helpers.

Everything else stands on this package; it imports nothing of ours (an import-linter contract says so).
"""

__version__ = "0.1.0"
