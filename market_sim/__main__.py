"""``python -m market_sim``: the ``market-sim`` command line."""

import sys

from market_sim.cli import main

if __name__ == "__main__":
    sys.exit(main())
