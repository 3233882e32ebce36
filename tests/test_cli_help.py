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
