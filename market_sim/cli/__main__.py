"""``python -m market_sim.cli``: the command line, as the ``market-sim`` console script."""

import sys

from market_sim.cli.entry import main

if __name__ == "__main__":
    sys.exit(main())
