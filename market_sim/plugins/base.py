"""What a mechanism plugin declares: its typed settings, its report space and its platform.

A *mechanism plugin* is everything the simulator needs to know about one mechanism kind (or a
family of kinds sharing one set of keys, like the four ad-slot auctions):

* a frozen config dataclass, subclass of :class:`MechanismConfig`, whose fields are declared with
  :func:`~market_sim.config.settings.setting` (type, bounds, allowed values, default, one-line
  doc). Scenario parsing, the one-line error messages, the resolved ``scenario.toml``, the run id
  and the generated key reference (``docs/scenario-keys.md``) all read these declarations;
* its report space: what an advertiser's ``Report.report_scale`` means for it, in its own words,
  and the range a deviation search or learner grid covers (``ReportSpace(None)``: bids only);
* its platform factory. The platform returns, with each outcome, the mechanism's counterfactual
  (:class:`~market_sim.platform.base.Counterfactual`) through which learners and the regret
  estimator re-run the round under other reports.

Registering a plugin (:func:`market_sim.plugins.register_mechanism`, or the
``market_sim.mechanisms`` entry-point group for an installed package) is all it takes for
``mechanism.kind`` to accept its kinds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from market_sim.config.fields import REQUIRED, IntRange
from market_sim.config.settings import SPEC, Setting, setting, settings_of, temperature
from market_sim.platform.base import Platform, ReportSpace

if TYPE_CHECKING:
    from market_sim.lm.model import LanguageModel

MAX_NEW_TOKENS = 512


@dataclass(frozen=True)
class MechanismConfig:
    """The keys every mechanism reads: which kind runs, and the reply it generates.

    Attributes:
        kind: The scenario's ``mechanism.kind`` (one of the registered kinds).
        max_new_tokens: Length limit of the generated reply.
        temperature: Sampling temperature of the reply.
    """

    kind: str = ""
    max_new_tokens: int = setting(
        IntRange(min=1, max=MAX_NEW_TOKENS, default=24), "Length limit of the reply, in tokens."
    )
    temperature: float = setting(temperature(1.0), "Sampling temperature of the reply.")


PlatformFactory = Callable[[Any, "LanguageModel", Sequence[str]], Platform]
"""``(config, lm, queries) -> platform``; ``queries`` is the scenario's pool (a platform that
prepares per pool, like the fine-tuned affine maximizer, trains on it)."""


def no_check(values: Mapping[str, Any], key: str) -> None:
    """A plugin without cross-key rules."""


def one_advertiser(config: Any) -> tuple[int, str]:
    """A plugin that runs with any number of advertisers (at least one)."""
    return 1, ""


def any_queries(config: Any) -> str:
    """A plugin that serves any query, including ones evolved during the run."""
    return ""


def no_slow_settings(config: Any) -> list[str]:
    """A plugin without settings known to be slow."""
    return []


def no_auction_memory(config: Any, advertisers: int, vocabulary: int) -> int:
    """A plugin whose auctions keep nothing in proportion to the round's size: 0 bytes."""
    return 0


def sampled_candidates_memory(candidates: int, advertisers: int, max_new_tokens: int) -> int:
    r"""Bytes one auction over M sampled candidate replies holds until its round settles.

    Its counterfactual keeps ``[2n + 1, M]`` float64 (true and reported rewards per advertiser,
    and one weight per candidate: MOSAIC's importance weights, the affine maximizer's
    :math:`\pi_{init}`), and the round holds every candidate's tokens while it runs, one 8-byte
    list slot per token at least:

    .. math:: \text{bytes} = 8 M (2n + 1 + T), \qquad T = \text{max\_new\_tokens}.

    It errs low: the token objects themselves, the scores' float32 working set and the
    sampling and scoring batches (bounded by their own budgets) are left out.
    """
    return 8 * candidates * (2 * advertisers + 1 + max_new_tokens)


@dataclass(frozen=True)
class MechanismPlugin:
    """One mechanism (or family of kinds sharing keys), as the simulator sees it.

    Attributes:
        name: Names the plugin and its optional ``[mechanism.<name>]`` table of settings used
            when one of its kinds runs (for scenarios swept across kinds).
        kinds: The ``mechanism.kind`` values it runs (``(name,)`` for most plugins).
        title: How messages name it, e.g. ``"the token auction"``.
        summary: One line for the key reference.
        config_type: Its frozen config dataclass (a :class:`MechanismConfig` subclass).
        build: Its platform factory.
        report_space: ``config -> ReportSpace``: what ``Report.report_scale`` means for it.
        check: Cross-key rules on the parsed values (``values, table key``), raising
            :class:`~market_sim.config.fields.ScenarioError`; one-key rules belong in the specs.
        slow_settings: ``config -> lines`` warning about settings known to be slow.
        decodes_per_auction: Whether every auction runs the LM under the mechanism (a
            decode or candidate scoring; the run-length warning applies), unlike a classic
            auction beside one unsponsored reply.
        auction_memory: ``(config, advertisers, vocabulary) -> bytes`` one auction holds until
            its round settles, estimated from below; a round of K auctions holds K times that
            (:mod:`market_sim.scenario.round_memory` refuses rounds that cannot fit).
        fewest_advertisers: ``config -> (count, reason)``: the fewest advertisers the
            configured mechanism runs with, and why, starting with the key that sets it
            (``"group_distortion = blend mixes ..."``; refused at load, before any work).
        fixed_queries: ``config -> reason``: why the configured mechanism serves only the
            queries it was built on (empty: it serves any), starting with the key that sets
            it; an eva query stream or ``[audit]`` (which score evolved queries) is then
            refused at load.
    """

    name: str
    kinds: tuple[str, ...]
    title: str
    summary: str
    config_type: type[MechanismConfig]
    build: PlatformFactory
    report_space: Callable[[Any], ReportSpace]
    check: Callable[[Mapping[str, Any], str], None] = no_check
    slow_settings: Callable[[Any], list[str]] = no_slow_settings
    decodes_per_auction: bool = True
    auction_memory: Callable[[Any, int, int], int] = no_auction_memory
    fewest_advertisers: Callable[[Any], tuple[int, str]] = one_advertiser
    fixed_queries: Callable[[Any], str] = any_queries
    settings: tuple[Setting, ...] = field(init=False)

    def __post_init__(self) -> None:
        config_name = self.config_type.__name__
        if not issubclass(self.config_type, MechanismConfig):
            raise TypeError(f"{config_name} must subclass MechanismConfig")
        if "__dataclass_fields__" not in vars(self.config_type):  # else its fields are unseen
            raise TypeError(
                f"mechanism plugin {self.name!r}: {config_name} must be declared "
                "@dataclass(frozen=True) itself (a subclass without it adds no keys)"
            )
        undeclared = [
            item.name
            for item in dataclasses.fields(self.config_type)
            if item.name != "kind" and SPEC not in item.metadata
        ]
        if undeclared:  # a plain field would be no key: the scenario could never set it
            raise TypeError(
                f"mechanism plugin {self.name!r}: {config_name}.{undeclared[0]} is declared "
                "without setting(spec, doc), so no scenario key reads it; declare it as "
                f"{undeclared[0]}: ... = setting(FloatRange(...), 'what it is')"
            )
        object.__setattr__(self, "settings", settings_of(self.config_type))
        for item in self.settings:  # a default its own spec refuses would be refused on reload
            default = item.spec.default
            if default is REQUIRED or default is None:
                continue
            try:
                item.spec.parse(list(default) if isinstance(default, tuple) else default, item.name)
            except ValueError as error:
                raise ValueError(
                    f"mechanism plugin {self.name!r}: the default of {error}"
                ) from None

    def read_settings(self, config: MechanismConfig) -> tuple[Setting, ...]:
        """The settings ``config`` reads (a key gated by ``when`` on other keys may not be)."""
        values = {item.name: getattr(config, item.name) for item in self.settings}
        return tuple(item for item in self.settings if item.is_read(values))

    def plain(self, config: MechanismConfig) -> dict[str, Any]:
        """The resolved table: ``kind`` and every key ``config`` reads, nothing else.

        This is what ``scenario.toml`` records (lists stay tuples here; the dump converts them)
        and the run id hashes, so adding a key to one kind never renames the runs of another.
        """
        values = {item.name: getattr(config, item.name) for item in self.read_settings(config)}
        return {"kind": config.kind, **values}
