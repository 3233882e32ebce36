"""Incentive measurement: regret of truthful reporting and IR, via each round's counterfactual."""
