"""--help: every option explained with its default; sweep --help offers nothing it rejects."""

import argparse
from pathlib import Path

import pytest

from market_sim.cli import build_parser, main


def options(parser: argparse.ArgumentParser, name: str = "market-sim"):
    """(command, action) of every optional argument, subcommands included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, subparser in action.choices.items():
                yield from options(subparser, f"{name} {sub}")
        elif action.option_strings and not isinstance(action, argparse._HelpAction):
            yield name, action


def test_every_option_has_help_that_states_its_default():
    missing = []
    for command, action in options(build_parser()):
        if action.help is argparse.SUPPRESS:
            continue
        flag = isinstance(action, argparse._StoreTrueAction) or action.nargs == 0
        text = action.help or ""
        said = action.required or "default" in text or "required" in text
        if not text or not (flag or said):
            missing.append(f"{command} {action.option_strings[0]}: {action.help!r}")
    assert missing == []


def test_sweep_help_does_not_offer_seed_but_still_explains_it(capsys):
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    text = capsys.readouterr().out
    assert "--seeds" in text and "--seed " not in text and "--seed\n" not in text
    scenario = Path(__file__).resolve().parent.parent / "scenarios" / "hawaii_learning.toml"
    assert main(["sweep", str(scenario), "--seeds", "0", "--seed", "3"]) == 2
    assert "--seed: a sweep takes --seeds" in capsys.readouterr().err


def test_help_shows_version_and_verbose(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "--version" in text and "--verbose" in text


@pytest.mark.parametrize(
    "argv",
    [
        ["--verbose", "run", "x.toml"],
        ["run", "x.toml", "--verbose"],
        ["lm", "get", "owner/model", "--verbose"],
        ["summary", "results", "--verbose"],
    ],
)
def test_verbose_is_accepted_before_or_after_the_subcommand(argv):
    assert build_parser().parse_args(argv).verbose is True


def test_verbose_stays_off_unless_given_anywhere():
    # The subcommands' copies default to SUPPRESS, so a subcommand without the flag must not
    # reset the top level's value, and neither position given means False.
    parser = build_parser()
    assert parser.parse_args(["run", "x.toml"]).verbose is False
    assert parser.parse_args(["lm", "get", "owner/model"]).verbose is False


def test_every_subcommand_offers_verbose():
    lacking = [
        command
        for command, subparser in subcommand_parsers(build_parser())
        if "--verbose" not in subparser._option_string_actions
    ]
    assert lacking == []


def subcommand_parsers(parser: argparse.ArgumentParser, name: str = "market-sim"):
    """(command, parser) of every subcommand, at any depth."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, subparser in action.choices.items():
                yield f"{name} {sub}", subparser
                yield from subcommand_parsers(subparser, f"{name} {sub}")


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["run", "x.toml", "--rounds", "5", "--rounds", "50"], "--rounds"),
        (["run", "x.toml", "--rounds=5", "--rounds", "50"], "--rounds"),
        (["sweep", "x.toml", "--seeds", "0-3", "--seeds", "9"], "--seeds"),
        (["run", "x.toml", "--no-progress", "--no-progress"], "--no-progress"),
        (["lm", "get", "owner/model", "--cache-dir", "a", "--cache-dir", "b"], "--cache-dir"),
        (["summary", "results", "--format", "csv", "--format", "json"], "--format"),
    ],
)
def test_a_single_valued_option_given_twice_is_refused(argv, option, capsys):
    assert main(argv) == 2  # before any work: the scenario file x.toml does not even exist
    assert (
        capsys.readouterr().err.strip() == f"market-sim: error: {option}: given twice; give it once"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["run", "x.toml", "--set", "rounds=10", "--rounds", "5"],
            "rounds: given twice (--set rounds=10, --rounds 5); give it once",
        ),
        (
            ["run", "x.toml", "--set", "advertisers[0].name=A", "--set", "advertisers.0.name=B"],
            "advertisers[0].name: given twice (--set advertisers[0].name=A, --set "
            "advertisers.0.name=B); give it once",
        ),
        (
            ["lambda-sweep", "x.toml", "--set", "lambda_sweep.samples=3", "--samples", "9"],
            "lambda_sweep.samples: given twice (--set lambda_sweep.samples=3, --samples 9); "
            "give it once",
        ),
    ],
)
def test_one_scenario_key_given_twice_is_refused(argv, message, capsys):
    """The last value silently won (`--set rounds=10 --rounds 5` ran 5 rounds)."""
    assert main(argv) == 2  # before any work: x.toml does not even exist
    assert capsys.readouterr().err == f"market-sim: error: {message}\n"


def test_a_device_with_a_quote_is_named_as_given(tmp_path, capsys):
    """It read `model.device: '"cpu""' is not a TOML value`: the CLI's own quoting, no choices."""
    scenario = Path(__file__).resolve().parent.parent / "scenarios" / "hawaii.toml"
    argv = ["run", str(scenario), "--device", 'cpu"', "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith(
        "market-sim: error: model.device: unknown value 'cpu\"'; allowed: auto, cpu, cuda"
    )


def test_repeatable_options_and_one_parser_parsing_twice_still_work():
    parser = build_parser()
    args = parser.parse_args(["sweep", "x.toml", "--seeds", "0", "--grid", "a=1", "--grid", "b=2"])
    assert args.grid == ["a=1", "b=2"]
    run = ["run", "x.toml", "--set", "rounds=2", "--set", "seed=3", "--rounds", "4"]
    assert parser.parse_args(run).overrides == ["rounds=2", "seed=3"]
    assert parser.parse_args(run).rounds == 4  # the record of options given starts afresh
