"""The text format shared by the bundled LM's training corpus and the market's prompts.

One prompt is::

    Sponsor: <advertiser context 1>
    Sponsor: <advertiser context 2>      (zero or more sponsor lines)
    Query: <user query>
    Reply:

and the model continues with `` <reply text>`` followed by its end-of-sequence token. A prompt
with no sponsor line is the *user's* distribution p_0 (an unsponsored reply); a prompt with one
sponsor line is advertiser i's preferred distribution p_i (DESIGN.md 3.1).
"""

from __future__ import annotations

from collections.abc import Sequence

SPONSOR_PREFIX = "Sponsor: "
QUERY_PREFIX = "Query: "
REPLY_PREFIX = "Reply:"


def build_prompt(query: str, contexts: Sequence[str] = ()) -> str:
    """Render a query and zero or more advertiser contexts as one LM prompt.

    Args:
        query: The user's query, e.g. ``"vacation in Hawaii"``.
        contexts: Advertiser brand contexts, each one line of text.

    Returns:
        The prompt text, ending in ``"Reply:"`` (no trailing space: the reply's first token
        carries its own leading space, as byte-level BPE tokenizers expect).
    """
    lines = [f"{SPONSOR_PREFIX}{_one_line(context)}" for context in contexts]
    lines.append(f"{QUERY_PREFIX}{_one_line(query)}")
    lines.append(REPLY_PREFIX)
    return "\n".join(lines)


def _one_line(text: str) -> str:
    """Collapse whitespace so that a context or query cannot break the prompt's line structure."""
    return " ".join(text.split())
