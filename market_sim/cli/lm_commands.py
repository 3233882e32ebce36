"""``market-sim lm train``, ``lm generate`` and ``lm get``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from market_sim.cli.inputs import checked_out_dir, load_checked_model
from market_sim.cli.options import UsageError, check_int_option
from market_sim.config.bounds import (
    MAX_SAMPLES,
    MAX_TEMPERATURE,
    MIN_TEMPERATURE,
    SEED_MAX,
)

MAX_TRAIN_STEPS = 10**7
"""Largest ``lm train --steps`` (the bundled recipe takes a few thousand)."""


def command_lm(args: argparse.Namespace) -> None:
    """``lm train``, ``lm generate`` and ``lm get``."""
    if args.lm_command == "get":
        command_lm_get(args)
        return
    if args.lm_command == "train":
        check_int_option("--steps", args.steps, 1, MAX_TRAIN_STEPS)
        check_int_option("--seed", args.seed, 0, SEED_MAX)
        out_dir = checked_train_dir(args.out)
        from market_sim.lm.tiny import train_tiny_lm

        options = {} if args.steps is None else {"steps": args.steps}
        folder = train_tiny_lm(out_dir, seed=args.seed, **options)
        print(f"saved the tiny LM to {folder}")
        return
    from market_sim.prompting import prompt_builder

    check_int_option("--samples", args.samples, 1, MAX_SAMPLES)
    from market_sim.plugins.base import MAX_NEW_TOKENS  # the bound of mechanism.max_new_tokens

    check_int_option("--max-new-tokens", args.max_new_tokens, 1, MAX_NEW_TOKENS)
    check_int_option("--seed", args.seed, 0, SEED_MAX)
    if not MIN_TEMPERATURE <= args.temperature <= MAX_TEMPERATURE:  # NaN fails both
        raise UsageError(
            f"--temperature: must be between {MIN_TEMPERATURE:g} and {MAX_TEMPERATURE:g}, "
            f"got {args.temperature}"
        )
    if args.prompt == "":
        raise UsageError("prompt: empty; give text to continue, or leave it out for --query's")
    if args.prompt is None and not args.query.strip():  # as queries.items refuses a blank query
        raise UsageError("--query: must be a non-empty string")
    for sponsor in args.sponsor:  # as advertisers[i].context refuses a blank context
        if not sponsor.strip():
            raise UsageError(f"--sponsor: must be a non-empty string, got {sponsor!r}")
    if args.device is not None and not args.device.strip():
        from market_sim.lm.devices import DEVICES_DESCRIPTION

        raise UsageError(f"--device: empty; allowed: {DEVICES_DESCRIPTION}")
    if not args.model.strip():  # Path("") is the working folder: refuse it by name
        raise UsageError(
            "--model: empty; allowed: bundled:<name>, cache:<name>, hub:<id> or a model folder"
        )
    keys = ("--model", "--device", "dtype")  # dtype is always auto here: never reported
    lm = load_checked_model(args.model, args.device or "auto", threads=args.threads, keys=keys)
    try:
        builder = prompt_builder(args.prompt_format, lm.tokenizer)
        prompt = args.prompt if args.prompt is not None else builder(args.query, args.sponsor)
    except ValueError as error:  # no template for chat, or one that does not render
        raise UsageError(f"--prompt-format: {error}") from None
    prompt_tokens = len(lm.encode_prompt(prompt))
    if lm.max_positions is not None and prompt_tokens + args.max_new_tokens > lm.max_positions:
        raise UsageError(
            f"--max-new-tokens: the prompt ({prompt_tokens} tokens) and the reply must fit the "
            f"model's {lm.max_positions} positions: at most "
            f"{max(lm.max_positions - prompt_tokens, 0)}, got {args.max_new_tokens}"
        )
    samples = lm.sample([prompt] * args.samples, args.max_new_tokens, args.temperature, args.seed)
    print(prompt)
    for tokens in samples:
        print("  ->", lm.decode(tokens).strip())


def checked_train_dir(out: Path | None) -> Path:
    """``lm train --out``: required, writable, and never inside the bundled checkpoints."""
    from market_sim.lm.bundled_models import BUNDLED_ROOT

    if out is None:
        raise UsageError(
            "--out: required (e.g. --out results/tiny-ads); the bundled model is never replaced"
        )
    from market_sim.scenario.output_folder import result_files_in

    bundled = BUNDLED_ROOT.resolve()
    try:
        target = out.expanduser().resolve()
    except (RuntimeError, OSError):  # a loop of links: the folder check names it in one line
        checked_out_dir(out, out)
        raise
    if target == bundled or bundled in target.parents:
        raise UsageError(
            f"--out: '{out}' is inside the bundled checkpoints ({bundled}); choose another folder"
        )
    found = result_files_in(target)
    if found:
        raise UsageError(
            f"--out: '{out}' holds results ({', '.join(found)}), not a model; choose another folder"
        )
    return checked_out_dir(out, out)  # after the checks above: its write probe touches the folder


def command_lm_get(args: argparse.Namespace) -> None:
    """Download, verify, convert and cache a known model; print where it is and its manifest."""
    import json

    from market_sim.lm.cached_models import (
        CACHE_ENV,
        CACHE_PREFIX,
        MANIFEST_FILE,
        cache_root,
        model_folder,
    )
    from market_sim.lm.get import GetError, get_model
    from market_sim.scenario import ScenarioError
    from market_sim.scenario.output_folder import check_writable_folder

    # One root for the check, the download and the printed hint (``~`` expanded in all three).
    root = cache_root() if args.cache_dir is None else Path(args.cache_dir).expanduser()
    option = (
        "--cache-dir"
        if args.cache_dir is not None
        else CACHE_ENV
        if os.environ.get(CACHE_ENV)
        else "the cache folder (XDG_CACHE_HOME or ~/.cache)"
    )
    target = model_folder(args.name, root)
    try:
        if not (target / MANIFEST_FILE).is_file():  # a cached model is only read
            check_writable_folder(target.parent, option)  # <root>/models, where lm get writes
    except ScenarioError as error:
        raise UsageError(str(error)) from None
    except OSError as error:  # e.g. a name too long for the system
        where = f"'{error.filename}': " if error.filename else ""
        raise UsageError(f"{option}: {where}{error.strerror or error}") from None
    try:
        result = get_model(args.name, root)
    except GetError as error:
        raise UsageError(f"lm get: {error}") from None
    if not result.downloaded:
        print(f"already in the cache: {result.folder}")
    else:
        timings = ", ".join(f"{step} {secs:.1f} s" for step, secs in result.seconds.items())
        print(f"saved {args.name} to {result.folder} ({timings})")
    print(json.dumps(result.manifest, indent=2))
    hint = f" with {CACHE_ENV}={root}" if args.cache_dir is not None else ""
    print(f'use it as model.path = "{CACHE_PREFIX}{args.name}"{hint}')
