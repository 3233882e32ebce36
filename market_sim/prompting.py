"""Prompts of the market's language models: the plain format and the chat format.

Every platform turns (query, advertiser contexts) into the prompt of one distribution: no context
is the *user's* distribution p_0 (an unsponsored reply), one context is advertiser i's preferred
distribution p_i (docs/design.md, section 3.1.1), several contexts are a context-aware proposal.
:func:`prompt_builder` picks the format once per model from ``model.prompt_format``:

* ``plain``: the format of the bundled LM's training corpus (:func:`build_prompt`);
* ``chat``: the tokenizer's chat template (:func:`build_chat_prompt`), for instruction-tuned LMs;
* ``auto``: ``chat`` when the tokenizer has a chat template, ``plain`` otherwise.

The plain format: one prompt is::

    Sponsor: <advertiser context 1>
    Sponsor: <advertiser context 2>      (zero or more sponsor lines)
    Query: <user query>
    Reply:

and the model continues with `` <reply text>`` followed by its end-of-sequence token. A tokenizer
that puts a BOS token before text (Llama 2, Mistral) gets it before every plain prompt
(:func:`prompt_bos_id`).

The chat format: a system message holds :data:`CHAT_SYSTEM_INSTRUCTION` and, when there are
sponsors, :data:`CHAT_SPONSOR_INSTRUCTION` followed by one ``Sponsor: <context>`` line each; the
user message is the query; the template's generation prompt (the assistant turn's header) ends the
prompt. The wording was chosen once, before any run, and is not tuned toward any result:

* p_0 and p_i share the system message and differ only by the sponsor paragraph, so the
  advertiser's distribution is "the same assistant, told about the sponsor". An explicit system
  message also replaces any default system prompt that a template inserts when none is given
  (SmolLM2's names the model), equally for p_0 and p_i.
* "recommend ... where it fits the query" states what an advertiser wants from a reply (its
  product named to this user) while keeping the reply an answer to the query, the same role the
  bare ``Sponsor:`` line plays for the bundled LM, which learned it from its corpus.
* ``Sponsor: <context>`` lines reuse the plain format's words, so contexts read the same to
  both kinds of model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from market_sim.config.fields import first_line

SPONSOR_PREFIX = "Sponsor: "
QUERY_PREFIX = "Query: "
REPLY_PREFIX = "Reply:"

PROMPT_FORMATS: tuple[str, ...] = ("auto", "plain", "chat")
"""Values of ``model.prompt_format``."""
CHAT_SYSTEM_INSTRUCTION = "You are a helpful assistant. Answer the user's query."
"""System message of every chat prompt (alone for p_0)."""
CHAT_SPONSOR_INSTRUCTION = "This reply is sponsored: where it fits the query, recommend"
"""Start of the sponsor paragraph, completed by ``the sponsor below.`` or ``the sponsors below.``"""


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


def chat_messages(query: str, contexts: Sequence[str] = ()) -> list[dict[str, str]]:
    """The system and user messages of a chat prompt (see the module docstring).

    Args:
        query: The user's query.
        contexts: Advertiser contexts (none: the user's distribution p_0).

    Returns:
        ``[{"role": "system", ...}, {"role": "user", "content": query}]``.
    """
    system = CHAT_SYSTEM_INSTRUCTION
    if contexts:
        noun = "sponsor" if len(contexts) == 1 else "sponsors"
        sponsor_lines = "\n".join(f"{SPONSOR_PREFIX}{_one_line(c)}" for c in contexts)
        system = f"{system}\n{CHAT_SPONSOR_INSTRUCTION} the {noun} below.\n{sponsor_lines}"
    return [{"role": "system", "content": system}, {"role": "user", "content": _one_line(query)}]


def has_chat_template(tokenizer: Any) -> bool:
    """Whether a tokenizer carries a chat template that renders without a template name."""
    return is_default_chat_template(getattr(tokenizer, "chat_template", None))


def is_default_chat_template(template: Any) -> bool:
    """Whether a ``chat_template`` value holds a template used when none is named.

    A non-empty string; or named templates (a dict by name, as a loaded tokenizer holds them, or
    a list of ``{"name", "template"}`` as older ``tokenizer_config.json`` files do) with one
    named ``default``. Named templates alone (``additional_chat_templates/tool_use.jinja``) are
    not: ``apply_chat_template`` refuses to render without a name.
    """
    if isinstance(template, str):
        return bool(template)
    if isinstance(template, dict):
        return bool(template.get("default"))
    if isinstance(template, list):
        return any(
            isinstance(item, dict) and item.get("name") == "default" and item.get("template")
            for item in template
        )
    return False


def build_chat_prompt(tokenizer: Any, query: str, contexts: Sequence[str] = ()) -> str:
    """Render :func:`chat_messages` with the tokenizer's chat template and generation prompt.

    The text contains the template's special tokens (e.g. ``<|im_start|>``) as text; the
    tokenizer maps them back to their ids when the prompt is encoded. A template that refuses
    a system turn gets the system text at the start of the user turn instead
    (:func:`render_chat`).

    Raises:
        ValueError: See :func:`render_chat`.
    """
    return render_chat(tokenizer, chat_messages(query, contexts))


def render_chat(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """A system turn and a user turn rendered by the tokenizer's template, generation prompt on.

    Some templates (Gemma-it, Mistral-Instruct v0.1-0.2) raise on a system turn: the system
    text then opens the user turn, separated by a blank line, and the one user turn is
    rendered instead.

    Args:
        tokenizer: A tokenizer with a chat template.
        messages: ``[system, user]``, each ``{"role": ..., "content": ...}``.

    Raises:
        ValueError: The tokenizer has no chat template, or its template does not render (a
            syntax error, a refusal of the merged user turn as well, or any error raised
            inside the template); one line.
    """
    if not has_chat_template(tokenizer):
        raise ValueError("the tokenizer has no chat template; use prompt_format 'plain'")
    from jinja2 import TemplateError, TemplateSyntaxError

    try:
        try:
            return tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        except TemplateSyntaxError:
            raise  # no retry can help: reported below
        except TemplateError:
            system, user = messages
            merged = [{"role": "user", "content": f"{system['content']}\n\n{user['content']}"}]
            return tokenizer.apply_chat_template(merged, tokenize=False, add_generation_prompt=True)
    except Exception as error:  # noqa: BLE001 - whatever the template's code raises
        # A template's own Python error (adding a number to a message's text, 1 // 0, a
        # recursion) is no less a template that does not render: one line, not a traceback.
        raise ValueError(
            f"the tokenizer's chat template does not render: {first_line(error)}; fix its "
            "chat_template or use prompt_format 'plain'"
        ) from None


def resolve_prompt_format(requested: str, tokenizer: Any) -> str:
    """``plain`` or ``chat`` for a requested ``model.prompt_format`` and a tokenizer.

    Raises:
        ValueError: An unknown format, or ``chat`` for a tokenizer without a chat template.
    """
    if requested not in PROMPT_FORMATS:
        raise ValueError(f"prompt_format {requested!r} is not one of {', '.join(PROMPT_FORMATS)}")
    if requested == "auto":
        return "chat" if has_chat_template(tokenizer) else "plain"
    if requested == "chat" and not has_chat_template(tokenizer):
        raise ValueError("prompt_format 'chat': the model's tokenizer has no chat template")
    return requested


CHAT_TASK_ANSWER_INSTRUCTION = "Answer with the result only, on one line."
"""Appended to a task's request in chat format, where no plain-text answer cue ends the prompt."""


def build_chat_task(tokenizer: Any, request: str) -> str:
    """A task (e.g. eva's query rewrite) as a chat prompt: the request is the user message.

    The system message is :data:`CHAT_SYSTEM_INSTRUCTION`, as in every chat prompt; the user
    message is the request followed by :data:`CHAT_TASK_ANSWER_INSTRUCTION`, which does in chat
    what the plain format's trailing answer cue (``Rewritten query:``) does: it asks for the
    result alone, so that the first line of the reply can be read as the answer.

    Raises:
        ValueError: See :func:`render_chat` (which also folds a refused system turn).
    """
    messages = [
        {"role": "system", "content": CHAT_SYSTEM_INSTRUCTION},
        {"role": "user", "content": f"{request}\n{CHAT_TASK_ANSWER_INSTRUCTION}"},
    ]
    return render_chat(tokenizer, messages)


@dataclass(frozen=True)
class PromptBuilder:
    """The one prompt builder of a model: ``builder(query, contexts) -> prompt text``.

    Attributes:
        format: ``plain`` or ``chat`` (resolved, never ``auto``).
        tokenizer: The model's tokenizer (used by the chat format only).
    """

    format: str
    tokenizer: Any = None

    def __call__(self, query: str, contexts: Sequence[str] = ()) -> str:
        """The prompt of the distribution given ``contexts`` (none: the user's p_0)."""
        if self.format == "chat":
            return build_chat_prompt(self.tokenizer, query, contexts)
        return build_prompt(query, contexts)

    def task(self, request: str, answer_cue: str) -> str:
        """A task prompt: the request and the answer cue (plain), or :func:`build_chat_task`.

        Args:
            request: What the model is asked to do, including its input.
            answer_cue: The plain format's last line, e.g. ``"Rewritten query:"``.
        """
        if self.format == "chat":
            return build_chat_task(self.tokenizer, request)
        return f"{request}\n{answer_cue}"


def prompt_bos_id(tokenizer: Any, prompt_format: str) -> int | None:
    """The BOS id that goes before every prompt of a model, or None.

    In the plain format, the tokenizer's BOS when it puts one before text by default
    (``add_special_tokens=True``): Llama 2, Mistral and TinyLlama tokenizers do, and their models
    were trained with it; GPT-2, SmolLM2, Qwen and the bundled LM's do not. Prompts are encoded
    without special tokens (a reply must not get one), so the BOS is put back here. In the chat
    format, None: a template writes its own BOS as text, as transformers assumes when it renders
    one.

    Args:
        tokenizer: The model's tokenizer.
        prompt_format: ``plain`` or ``chat`` (resolved).
    """
    bos = getattr(tokenizer, "bos_token_id", None)
    if prompt_format != "plain" or bos is None:
        return None
    with_special = list(tokenizer("a")["input_ids"])
    without = list(tokenizer("a", add_special_tokens=False)["input_ids"])
    return int(bos) if with_special[:1] == [bos] and without[:1] != [bos] else None


def with_bos(token_ids: list[int], bos: int | None) -> list[int]:
    """``[bos, *token_ids]``, or ``token_ids`` when ``bos`` is None or already first."""
    if bos is None or token_ids[:1] == [bos]:
        return token_ids
    return [bos, *token_ids]


def prompt_builder(requested: str, tokenizer: Any) -> PromptBuilder:
    """The prompt builder for ``model.prompt_format`` on a model's tokenizer.

    Platforms call it once per model, e.g. ``prompt_builder(scenario.model.prompt_format,
    lm.tokenizer)``, and use the builder wherever they called :func:`build_prompt`.

    Raises:
        ValueError: See :func:`resolve_prompt_format`.
    """
    return PromptBuilder(resolve_prompt_format(requested, tokenizer), tokenizer)
