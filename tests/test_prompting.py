"""The prompt builder: plain prompts byte for byte as before, chat prompts through a template."""

import dataclasses
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from market_sim.lm.bundled_models import BUNDLED_ROOT
from market_sim.lm.cached_models import CachedModelMissingError, resolve_cached_model
from market_sim.prompting import (
    CHAT_SPONSOR_INSTRUCTION,
    CHAT_SYSTEM_INSTRUCTION,
    CHAT_TASK_ANSWER_INSTRUCTION,
    PromptBuilder,
    build_chat_prompt,
    build_chat_task,
    build_prompt,
    chat_messages,
    prompt_builder,
    resolve_prompt_format,
)

ALPHA = "Alpha Airlines: nonstop flights to Hawaii."
BETA = "Beta Resort: beachfront rooms on Maui."
# ChatML, the template family of SmolLM2 (without its default system message).
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def word_tokenizer(chat_template: str | None) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]")
    wrapped.chat_template = chat_template
    return wrapped


# The prompts of today's platforms, written out: any change to the plain format fails here.
PLAIN_CASES = [
    (("vacation in Hawaii", ()), "Query: vacation in Hawaii\nReply:"),
    (("vacation in Hawaii", (ALPHA,)), f"Sponsor: {ALPHA}\nQuery: vacation in Hawaii\nReply:"),
    (
        ("family  trip\nto Maui ", (ALPHA, "Beta Resort:\tbeachfront rooms on Maui.")),
        f"Sponsor: {ALPHA}\nSponsor: {BETA}\nQuery: family trip to Maui\nReply:",
    ),
    (("", ()), "Query: \nReply:"),
]


@pytest.mark.parametrize(("arguments", "expected"), PLAIN_CASES)
def test_plain_prompts_byte_for_byte(arguments, expected):
    query, contexts = arguments
    assert build_prompt(query, contexts) == expected
    assert PromptBuilder("plain")(query, contexts) == expected
    chat_capable = prompt_builder("plain", word_tokenizer(CHATML))  # plain even with a template
    assert chat_capable(query, contexts) == expected


def test_bundled_model_stays_on_its_training_format():
    tokenizer = AutoTokenizer.from_pretrained(BUNDLED_ROOT / "tiny-ads")
    builder = prompt_builder("auto", tokenizer)  # no chat template: today's prompts unchanged
    assert builder.format == "plain"
    for (query, contexts), expected in PLAIN_CASES:
        assert builder(query, contexts) == expected


def test_chat_prompt_structure():
    builder = prompt_builder("auto", word_tokenizer(CHATML))
    assert builder.format == "chat"
    user = "<|im_start|>user\nvacation in Hawaii<|im_end|>\n<|im_start|>assistant\n"
    assert builder("vacation  in Hawaii") == (
        f"<|im_start|>system\n{CHAT_SYSTEM_INSTRUCTION}<|im_end|>\n{user}"
    )
    assert builder("vacation in Hawaii", [ALPHA]) == (
        f"<|im_start|>system\n{CHAT_SYSTEM_INSTRUCTION}\n{CHAT_SPONSOR_INSTRUCTION} the sponsor "
        f"below.\nSponsor: {ALPHA}<|im_end|>\n{user}"
    )
    both = chat_messages("q", [ALPHA, BETA])[0]["content"]
    assert both.endswith(f"the sponsors below.\nSponsor: {ALPHA}\nSponsor: {BETA}")


def test_prompt_format_errors():
    plain_only = word_tokenizer(None)
    assert resolve_prompt_format("auto", plain_only) == "plain"
    with pytest.raises(ValueError, match=r"^prompt_format 'chat': the model's tokenizer has no"):
        prompt_builder("chat", plain_only)
    with pytest.raises(ValueError, match=r"^prompt_format 'xml' is not one of auto, plain, chat$"):
        prompt_builder("xml", plain_only)


def test_smollm2_chat_prompt_when_cached():
    try:
        folder = resolve_cached_model("cache:smollm2-135m-instruct")
    except CachedModelMissingError:
        pytest.skip("SmolLM2 is not in the cache (market-sim lm get smollm2-135m-instruct)")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    builder = prompt_builder("auto", tokenizer)
    prompt = builder("vacation in Hawaii", [ALPHA])
    assert builder.format == "chat"
    # Our system message replaces the template's default one (which names the model).
    assert prompt.startswith(f"<|im_start|>system\n{CHAT_SYSTEM_INSTRUCTION}\n")
    assert prompt.count("<|im_start|>system") == 1 and "SmolLM" not in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    ids = tokenizer.encode(prompt, add_special_tokens=False)
    im_start = tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert ids[0] == im_start and ids.count(im_start) == 3  # special tokens, not their letters


def test_cli_chat_format_needs_a_template(capsys):
    from market_sim.cli import main

    argv = ["lm", "generate", "--model", "bundled:tiny-ads", "--prompt-format", "chat"]
    assert main(argv) == 2
    last_line = capsys.readouterr().err.splitlines()[-1]  # after transformers' loading bar
    assert last_line == (
        "market-sim: error: --prompt-format: prompt_format 'chat': the model's tokenizer has no "
        "chat template"
    )


def test_scenario_prompt_format_is_validated_and_recorded():
    import tomllib
    from pathlib import Path

    from market_sim.scenario import ScenarioError, dump_scenario_toml, load_scenario

    hawaii = Path(__file__).parent.parent / "scenarios" / "hawaii.toml"
    # auto is resolved from the tokenizer's files: the bundled LM has no chat template.
    assert load_scenario(hawaii).model.prompt_format == "plain"
    scenario = load_scenario(hawaii, ['model.prompt_format="plain"'])
    assert tomllib.loads(dump_scenario_toml(scenario))["model"]["prompt_format"] == "plain"
    with pytest.raises(ScenarioError) as error:
        load_scenario(hawaii, ['model.prompt_format="xml"'])
    assert (
        str(error.value) == "model.prompt_format: unknown value 'xml'; allowed: auto, plain, chat"
    )


NO_SYSTEM_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}<turn>{{ message['role'] }}\n{{ message['content'] }}</turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<turn>assistant\n{% endif %}"
)


def test_a_template_without_system_turns_gets_the_system_text_in_the_user_turn(random_model_dir):
    """Gemma-it style templates raise on a system message: it used to be a jinja2 traceback."""

    tokenizer = AutoTokenizer.from_pretrained(str(random_model_dir))
    tokenizer.chat_template = NO_SYSTEM_TEMPLATE
    system, user = chat_messages("vacation in Hawaii", ["Alpha Airlines: flights."])
    prompt = build_chat_prompt(tokenizer, "vacation in Hawaii", ["Alpha Airlines: flights."])
    expected = f"<turn>user\n{system['content']}\n\n{user['content']}</turn>\n<turn>assistant\n"
    assert prompt == expected
    task = build_chat_task(tokenizer, "Rewrite the query: vacation in Hawaii")  # eva's rewrite
    assert task == (
        f"<turn>user\n{CHAT_SYSTEM_INSTRUCTION}\n\nRewrite the query: vacation in Hawaii\n"
        f"{CHAT_TASK_ANSWER_INSTRUCTION}</turn>\n<turn>assistant\n"
    )


@pytest.mark.parametrize(
    ("template", "error"),
    [
        ("{% for message in messages %}{{ message['content'] }", "TemplateSyntaxError"),
        ("{{ raise_exception('no turns at all') }}", "TemplateError: no turns at all"),
        ("{{ messages[0]['content'] + 1 }}", "TypeError: can only concatenate str"),
        ("{{ 1 // 0 }}", "ZeroDivisionError"),
    ],
)
def test_a_chat_template_that_does_not_render_is_one_line_before_the_run(
    template, error, random_model_dir
):
    """A syntax error, or a refusal of the user turn too, was a jinja2 traceback mid-run."""
    from market_sim.lm.model import LanguageModel
    from market_sim.scenario import ScenarioError, load_scenario
    from market_sim.scenario.prompt_fit import check_model_fits

    tokenizer = AutoTokenizer.from_pretrained(str(random_model_dir))
    tokenizer.chat_template = template
    with pytest.raises(ValueError, match=f"chat template does not render: {error}") as raised:
        build_chat_prompt(tokenizer, "vacation in Hawaii", [ALPHA])
    assert "\n" not in str(raised.value)
    with pytest.raises(ValueError, match=f"chat template does not render: {error}"):
        build_chat_task(tokenizer, "Rewrite the query: vacation in Hawaii")
    lm = LanguageModel.load(str(random_model_dir), device="cpu")
    lm.tokenizer.chat_template = template
    hawaii = Path(__file__).resolve().parent.parent / "scenarios" / "hawaii.toml"
    scenario = load_scenario(hawaii)  # its bundled model has no template: set chat here
    scenario = dataclasses.replace(
        scenario, model=dataclasses.replace(scenario.model, prompt_format="chat")
    )
    with pytest.raises(ScenarioError, match=f"chat template does not render: {error}") as checked:
        check_model_fits(scenario, lm)
    assert checked.value.key == "model.prompt_format"


def test_a_chat_template_that_fails_only_on_task_prompts_is_refused_before_the_run(
    random_model_dir,
):
    """eva's rewrite is a task prompt: the pre-run check renders one as well as a query prompt."""
    from market_sim.lm.model import LanguageModel
    from market_sim.scenario import ScenarioError, load_scenario
    from market_sim.scenario.prompt_fit import check_model_fits

    lm = LanguageModel.load(str(random_model_dir), device="cpu")
    lm.tokenizer.chat_template = (
        "{% if 'Answer with' in messages[-1]['content'] %}{{ raise_exception('no tasks') }}"
        "{% endif %}" + CHATML
    )
    hawaii = Path(__file__).resolve().parent.parent / "scenarios" / "hawaii.toml"
    scenario = load_scenario(hawaii)
    scenario = dataclasses.replace(
        scenario, model=dataclasses.replace(scenario.model, prompt_format="chat")
    )
    assert build_chat_prompt(lm.tokenizer, "vacation in Hawaii", [ALPHA]).startswith("<|im_start|>")
    with pytest.raises(ScenarioError, match="does not render: TemplateError: no tasks"):
        check_model_fits(scenario, lm)


@pytest.mark.parametrize(
    ("template", "renders_unnamed"),
    [
        (CHATML, True),
        ("", False),
        (None, False),
        ({"default": CHATML, "tool_use": CHATML}, True),
        ({"tool_use": CHATML}, False),  # named templates alone: apply_chat_template needs a name
        ([{"name": "default", "template": CHATML}], True),  # older tokenizer_config.json
        ([{"name": "tool_use", "template": CHATML}], False),
    ],
)
def test_only_a_template_used_without_a_name_counts_as_a_chat_template(template, renders_unnamed):
    from market_sim.prompting import has_chat_template, is_default_chat_template

    assert is_default_chat_template(template) is renders_unnamed
    if not isinstance(template, list):
        tokenizer = word_tokenizer(None)
        tokenizer.chat_template = template
        assert has_chat_template(tokenizer) is renders_unnamed


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"chat_template.jinja": CHATML}, True),
        ({"chat_template.json": '{"chat_template": "x"}'}, False),  # a processor's file
        ({"additional_chat_templates/tool_use.jinja": CHATML}, False),
    ],
)
def test_the_files_say_chat_exactly_when_the_loaded_tokenizer_has_a_default_template(
    files, expected, random_model_dir, tmp_path
):
    """Found by an audit: a folder whose template sat in chat_template.json (which tokenizers do
    not read) resolved prompt_format "auto" to chat, and the run then stopped on "no chat
    template"; one with named templates alone resolved to chat in `lm generate` and failed."""
    import shutil

    from market_sim.lm.references import has_chat_template_file, parse_model_reference
    from market_sim.prompting import has_chat_template

    folder = tmp_path / "model"
    shutil.copytree(random_model_dir, folder)
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    assert has_chat_template_file(parse_model_reference(str(folder))) is expected
    assert has_chat_template(AutoTokenizer.from_pretrained(str(folder))) is expected


def test_lm_generate_reports_a_template_that_does_not_render_in_one_line(
    random_model_dir, tmp_path, capsys
):
    import shutil

    from market_sim.cli import main

    folder = tmp_path / "model"
    shutil.copytree(random_model_dir, folder)
    (folder / "chat_template.jinja").write_text("{{ raise_exception('tools only') }}")
    argv = ["lm", "generate", "--model", str(folder), "--device", "cpu", "--max-new-tokens", "2"]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "TemplateError: tools only" in error
