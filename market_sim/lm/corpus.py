"""Deterministic ad-copy training corpus for the bundled tiny language model.

Every document is one prompt in the format of :mod:`market_sim.prompting` followed by a short
reply (the trainer appends the end-of-sequence token)::

    Sponsor: Alpha Airlines: nonstop flights to Hawaii.
    Query: vacation in Hawaii
    Reply: Aloha! Fly nonstop to Hawaii with Alpha Airlines.

Three kinds of document are mixed (roughly 50% / 25% / 25%):

* **single-sponsor ads**: one sponsor line; the reply names that brand. Some replies open with
  the brand, some with a short generic lead-in, and some first mention *another* brand of the
  same domain and then pivot to the sponsor (or mention the sponsor and then another brand).
  The pivots teach that a reply which already names some brand can still go on to name the
  sponsor, which is what lets a token-level mixture of two advertisers' distributions produce
  replies that name both of them. Replies naming two brands may also open with a lead-in.
* **unsponsored replies**: no sponsor line; a neutral, helpful reply that names no brand.
* **joint ads**: two sponsor lines from the same domain; the reply names both, in either order.

Queries are shared by all brands of a domain, so the brand a reply names can only be learned
from the sponsor line, never from the query. Every reply stays within :data:`MAX_REPLY_TOKENS`
rough tokens, so that the market's default of 24 new tokens covers it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum

from market_sim.lm.corpus_brands import (
    DOMAIN_LEADS,
    DOMAIN_NEUTRAL,
    DOMAIN_QUERIES,
    DOMAIN_TAILS,
    Brand,
    brands_in,
)
from market_sim.prompting import build_prompt

DEFAULT_N_DOCUMENTS = 20_000


MAX_REPLY_TOKENS = 22
"""Budget of a reply in rough tokens (words plus punctuation marks), so that a reply and its
end-of-sequence token fit in the 24 new tokens the market samples by default."""


class DocumentKind(Enum):
    """The kinds of document in the corpus."""

    SINGLE = "single"
    UNSPONSORED = "unsponsored"
    JOINT = "joint"


@dataclass(frozen=True)
class Document:
    """One training document before rendering.

    Attributes:
        kind: Which kind of document this is.
        contexts: The sponsor lines of the prompt (zero, one or two).
        query: The user query.
        reply: The reply text (no leading space, no end-of-sequence token).
        brands: Names of the brands the reply mentions, in order of mention.
    """

    kind: DocumentKind
    contexts: tuple[str, ...]
    query: str
    reply: str
    brands: tuple[str, ...]

    @property
    def text(self) -> str:
        """The rendered document: prompt, one space, reply."""
        return f"{build_prompt(self.query, self.contexts)} {self.reply}"


_KIND_WEIGHTS = (
    (DocumentKind.SINGLE, 0.5),
    (DocumentKind.UNSPONSORED, 0.25),
    (DocumentKind.JOINT, 0.25),
)


_SINGLE_STYLES = (
    ("brand_first", 0.35),
    ("lead_in", 0.25),
    ("partner_first", 0.3),
    ("partner_after", 0.1),
)
"""Reply styles of single-sponsor ads and their weights: the sponsor alone (with or without a
brand-free lead-in), another brand of the domain and then the sponsor, the sponsor and then
another brand."""


_HAWAII_WEIGHT = 4.0
"""How much more often the flagship Hawaii domain is drawn than any other domain."""


_PAIR_LEAD_IN_PROBABILITY = 0.3
"""How often a reply naming two brands opens with a brand-free lead-in (when it fits)."""


_JOINERS = (", and {}.", " and {}.", ". Then {}.", ", then {}.")
"""Templates that attach a follow-up clause after a first brand mention."""


def generate_corpus(seed: int = 0, n_documents: int = DEFAULT_N_DOCUMENTS) -> list[str]:
    """Generate the rendered training documents (without end-of-sequence text).

    Args:
        seed: Seed of the generator; the same seed always yields the same list.
        n_documents: Number of documents to generate.

    Returns:
        ``n_documents`` strings, each a prompt followed by one space and the reply.
    """
    return [document.text for document in generate_documents(seed, n_documents)]


def generate_documents(seed: int = 0, n_documents: int = DEFAULT_N_DOCUMENTS) -> list[Document]:
    """Generate structured training documents.

    Args:
        seed: Seed of the generator; the same seed always yields the same list.
        n_documents: Number of documents to generate.

    Returns:
        ``n_documents`` documents mixing single-sponsor, unsponsored and joint ads.
    """
    rng = random.Random(seed)
    kinds = [kind for kind, _ in _KIND_WEIGHTS]
    weights = [weight for _, weight in _KIND_WEIGHTS]
    return [_make_document(rng, rng.choices(kinds, weights)[0]) for _ in range(n_documents)]


def _make_document(rng: random.Random, kind: DocumentKind) -> Document:
    """Draw one document of the given kind."""
    if kind is DocumentKind.SINGLE:
        return _single_document(rng)
    if kind is DocumentKind.UNSPONSORED:
        return _unsponsored_document(rng)
    return _joint_document(rng)


def _pick_domain(rng: random.Random) -> str:
    """Draw a domain, favouring the flagship Hawaii domain."""
    domains = list(DOMAIN_QUERIES)
    weights = [_HAWAII_WEIGHT if domain == "hawaii" else 1.0 for domain in domains]
    return rng.choices(domains, weights)[0]


def _pick_context(rng: random.Random, brand: Brand) -> str:
    """Draw a sponsor line for a brand, the canonical one half of the time."""
    if rng.random() < 0.5:
        return brand.context
    return rng.choice(brand.context_variants)


def _single_document(rng: random.Random) -> Document:
    """Draw a single-sponsor ad: one sponsor line, a reply naming the sponsor."""
    domain = _pick_domain(rng)
    sponsor = rng.choice(brands_in(domain))
    partner = rng.choice([brand for brand in brands_in(domain) if brand != sponsor])
    query = rng.choice(DOMAIN_QUERIES[domain])
    styles = [style for style, _ in _SINGLE_STYLES]
    style = rng.choices(styles, [weight for _, weight in _SINGLE_STYLES])[0]
    if style == "brand_first":
        reply, brands = _with_tail(rng, domain, _sentence(rng.choice(sponsor.openers))), (sponsor,)
    elif style == "lead_in":
        lead = rng.choice(DOMAIN_LEADS[domain])
        reply, brands = f"{lead} {_sentence(rng.choice(sponsor.openers))}", (sponsor,)
    elif style == "partner_first":
        reply, brands = _pair_reply(rng, domain, partner, sponsor), (partner, sponsor)
    else:
        reply, brands = _pair_reply(rng, domain, sponsor, partner), (sponsor, partner)
    contexts = (_pick_context(rng, sponsor),)
    return Document(DocumentKind.SINGLE, contexts, query, reply, tuple(b.name for b in brands))


def _unsponsored_document(rng: random.Random) -> Document:
    """Draw an unsponsored reply: no sponsor line, one or two brand-free sentences."""
    domain = _pick_domain(rng)
    query = rng.choice(DOMAIN_QUERIES[domain])
    first = rng.choice(DOMAIN_NEUTRAL[domain])
    fitting = [
        sentence
        for sentence in DOMAIN_NEUTRAL[domain]
        if sentence != first and _rough_token_count(f"{first} {sentence}") <= MAX_REPLY_TOKENS
    ]
    reply = f"{first} {rng.choice(fitting)}" if fitting else first
    return Document(DocumentKind.UNSPONSORED, (), query, reply, ())


def _joint_document(rng: random.Random) -> Document:
    """Draw a joint ad: two sponsor lines from one domain, a reply naming both in either order."""
    domain = _pick_domain(rng)
    first, second = rng.sample(brands_in(domain), 2)
    contexts = (_pick_context(rng, first), _pick_context(rng, second))
    mention_order = (first, second) if rng.random() < 0.5 else (second, first)
    query = rng.choice(DOMAIN_QUERIES[domain])
    reply = _pair_reply(rng, domain, *mention_order)
    names = tuple(brand.name for brand in mention_order)
    return Document(DocumentKind.JOINT, contexts, query, reply, names)


def _pair_reply(rng: random.Random, domain: str, first: Brand, second: Brand) -> str:
    """Render a reply that names ``first`` and then ``second``, sometimes after a lead-in."""
    opener = _capitalize(rng.choice(first.openers))
    reply = opener + rng.choice(_JOINERS).format(rng.choice(second.follow_ups))
    if rng.random() >= _PAIR_LEAD_IN_PROBABILITY:
        return reply
    with_lead = f"{rng.choice(DOMAIN_LEADS[domain])} {reply}"
    return with_lead if _rough_token_count(with_lead) <= MAX_REPLY_TOKENS else reply


def _with_tail(rng: random.Random, domain: str, sentence: str) -> str:
    """Append a brand-free closer to a sentence half of the time."""
    if rng.random() < 0.5:
        return sentence
    return f"{sentence} {rng.choice(DOMAIN_TAILS[domain])}"


def _rough_token_count(text: str) -> int:
    """Estimate the tokens of a reply: one per word and one per punctuation mark."""
    return len(text.split()) + sum(text.count(mark) for mark in ",.!?")


def _sentence(clause: str) -> str:
    """Turn a clause into a sentence: capital first letter, final period."""
    return f"{_capitalize(clause)}."


def _capitalize(clause: str) -> str:
    """Upper-case the first character of a clause, leaving the rest alone."""
    return clause[:1].upper() + clause[1:]
