"""A viewer that watches the picture for a while (run inside the console's namespace by tests/test_netns_paths.py):
rehearsal/videowatch.py, the one `teleop bench failover` runs too."""

from __future__ import annotations

import sys

from rehearsal.videowatch import main

if __name__ == "__main__":
    main(sys.argv[1:])
