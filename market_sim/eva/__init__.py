"""eva: an evolving query stream by asymmetric self-play (docs/design.md, section 6).

Modules: :mod:`~market_sim.eva.grammar` (structured queries and mutation operators),
:mod:`~market_sim.eva.pool` (lineage, held-out split), :mod:`~market_sim.eva.creator`
(estimate, sample, evolve), :mod:`~market_sim.eva.reward` (user + advertiser reward of a reply),
:mod:`~market_sim.eva.solver` (best/worst preference pairs), :mod:`~market_sim.eva.experiment`
(``market-sim eva``), :mod:`~market_sim.eva.audit` (``market-sim audit``) and
:mod:`~market_sim.eva.stream` (the market's ``queries.stream = "eva"``).
"""
