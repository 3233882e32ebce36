"""``python -m market_sim``: the ``market-sim`` command line."""

from market_sim.cli import console_main

if __name__ == "__main__":
    console_main()
