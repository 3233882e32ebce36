"""Experiments built on the market and the platforms, each a module with one job.

* :mod:`~market_sim.experiments.demo`: the headline comparison (every mechanism, learning
  advertisers) as two sweeps;
* :mod:`~market_sim.experiments.lambda_sweep`: brand shares of replies as the first bid share
  moves;
* :mod:`~market_sim.experiments.mosaic_convergence`: MOSAIC's distance to pi* as M grows;
* :mod:`~market_sim.experiments.token_trace`: which participant carried each token of a run.
"""
