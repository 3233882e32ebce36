"""The ``market-sim`` subcommands that read results: ``demo``, ``plot`` and ``summary``.

They live here, above :mod:`market_sim`, because they draw figures and tables with
:mod:`analysis`; ``market_sim.cli`` finds them through the ``market_sim.commands`` entry points
of ``pyproject.toml`` (:func:`market_sim.cli.extension_commands`) and never imports this package.
Each command is an object with ``add_parser(commands)`` and ``run(args)``. This module imports
only the standard library and :mod:`market_sim.cli` (already loaded) at load time, since every
``market-sim`` call loads it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from market_sim.cli import folder_argument


class DemoCommand:
    """``market-sim demo``: the headline experiment, its figures and its mechanism table."""

    def add_parser(self, commands: argparse._SubParsersAction) -> None:
        """The ``demo`` parser."""
        from market_sim.cli import add_runtime_arguments

        demo = commands.add_parser(
            "demo",
            help="token auctions (second, first price) and 4 ad-slot auctions on the Hawaii "
            "scenario with learning advertisers, 3 seeds, with figures",
        )
        demo.add_argument(
            "--out",
            type=folder_argument,
            default=Path("results/demo"),
            help="folder of the two sweeps and the figures (default results/demo)",
        )
        demo.add_argument("--rounds", type=int, help="rounds to run (default: the scenario's)")
        demo.add_argument("--seeds", default="0-2", help="seeds per mechanism (default 0-2)")
        demo.add_argument("--workers", default="2", help="parallel runs (default 2)")
        demo.add_argument(
            "--force",
            action="store_true",
            help="replace the tables of an earlier demo in --out that ran other rounds, seeds "
            "or --set (its run folders are kept)",
        )
        demo.add_argument(
            "--no-progress",
            action="store_true",
            help="no progress (default: a bar on a terminal, else a line every 5%% or 30 s)",
        )
        add_runtime_arguments(demo)

    def run(self, args: argparse.Namespace) -> None:
        """Run both demo sweeps, draw their figures, print the mechanism table."""
        from market_sim.cli import (
            UsageError,
            check_threads,
            checked_out_dir,
            model_load_error,
            parse_workers,
            scenario_overrides,
        )
        from market_sim.experiments.demo import run_demo
        from market_sim.scenario import ScenarioError
        from market_sim.sweep import SweepError

        check_threads(args.threads)
        checked_out_dir(args.out, args.out)
        check_demo_folder(args.out)
        overrides = scenario_overrides(args)
        workers = parse_workers(args.workers) or 1
        try:
            result = run_demo(
                args.out,
                args.seeds,
                tuple(overrides),
                workers,
                progress=False if args.no_progress else None,
                force=args.force,
            )
        except (SweepError, ScenarioError) as error:
            raise UsageError(str(error)) from None
        except FileNotFoundError as error:
            raise model_load_error(error) from None
        from analysis.figure_files import FORMATS
        from analysis.load import load_results
        from analysis.metrics import said_warnings
        from analysis.plots import plot_all
        from analysis.summary import format_summary, summary_table

        folders = [sweep.out_dir for sweep in result.sweeps.values()]
        figures, plot_messages = said_warnings(lambda: plot_all(folders, args.out / "figures"))
        table, table_messages = said_warnings(lambda: summary_table(load_results(folders)))
        for message in dict.fromkeys([*plot_messages, *table_messages]):
            print(f"market-sim: warning: {message}", file=sys.stderr)
        print(format_summary(table))
        print(f"\nruns: {args.out}/{{{','.join(result.sweeps)}}}/runs.parquet")
        count = len(figures) // len(FORMATS)
        print(f"figures ({count} as PNG, SVG and PDF): {args.out / 'figures'}/")


def check_demo_folder(folder: Path) -> None:
    """Refuse a ``demo --out`` folder that holds a command's results at its top.

    The demo writes ``token_auction/``, ``ad_slots/`` and ``figures/`` there; beside a run's or
    an eva's files they would make one folder of two experiments. Its sweep folders may hold
    its own sweep's files (a rerun resumes them), nothing else.

    Raises:
        UsageError: ``folder`` holds results
            (:func:`~market_sim.scenario.output_folder.result_files_in`).
    """
    from market_sim.cli import UsageError
    from market_sim.experiments.demo import DEMO_SWEEPS
    from market_sim.scenario.output_folder import COMMAND_FILES, result_files_in

    for where in [folder, *(folder / name for name in DEMO_SWEEPS)]:
        found = result_files_in(where)
        own = set(COMMAND_FILES["sweep"]) if where != folder else set()
        others = [name for name in found if name not in own]
        if others:
            raise UsageError(
                f"--out: '{where}' holds another command's results ({', '.join(others)}); "
                "choose another folder for the demo"
            )


class PlotCommand:
    """``market-sim plot DIR``: every figure the results under DIR support."""

    def add_parser(self, commands: argparse._SubParsersAction) -> None:
        """The ``plot`` parser."""
        plot = commands.add_parser("plot", help="draw the figures of a sweep or of run folders")
        plot.add_argument(
            "dir", type=Path, help="a sweep folder, a run folder, or a folder of runs"
        )
        plot.add_argument("--out", type=folder_argument, help="figure folder (default DIR/figures)")

    def run(self, args: argparse.Namespace) -> None:
        """Draw the figures; a token-auction run also gets its token-ownership figure."""
        import polars as pl

        from analysis.load import DamagedResultError, first_line
        from analysis.metrics import said_warnings
        from analysis.plots import NoResultsError, plot_all
        from analysis.tokens import plot_run_tokens
        from market_sim.cli import UsageError, checked_out_dir

        if args.dir.is_file():
            raise UsageError(f"{args.dir}: a file, not a folder of results")
        if not args.dir.is_dir():
            raise UsageError(f"{args.dir}: no such folder")
        out_dir = checked_out_dir(args.out, args.dir / "figures")
        check_figures_folder(args.dir, out_dir)
        # Every figure is drawn into a staging folder inside out_dir and moved into place only
        # when all were drawn: results found unreadable halfway leave out_dir as it was (and
        # remove the folders this call created).
        created = first_missing_folder(out_dir)
        staging = None
        drawn: list[Path] = []
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out_dir))
            try:
                drawn, messages = said_warnings(lambda: plot_all(args.dir, staging))
            except (NoResultsError, DamagedResultError) as error:
                raise UsageError(str(error)) from None
            except (*unanalysable_errors(), ValueError) as error:  # e.g. eva's missing columns
                raise unanalysable(args.dir, error, args.verbose) from None
            try:  # a token-auction run: who wrote each token
                drawn += plot_run_tokens(args.dir, staging)
            except (pl.exceptions.PolarsError, OSError) as error:
                message = f"{args.dir}: its rounds cannot be read ({first_line(error)})"
                raise UsageError(message) from None
            paths = [out_dir / path.relative_to(staging) for path in drawn]
            for source, target in zip(drawn, paths, strict=True):
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(source, target)  # the same file system: staging is inside out_dir
        except BaseException:
            if created is not None:
                shutil.rmtree(created, ignore_errors=True)
            raise
        finally:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
        for message in messages:
            print(f"market-sim: warning: {message}", file=sys.stderr)
        print(f"{len(paths)} figures in {out_dir}/:")
        for path in paths:
            print(f"  {path}")


class SummaryCommand:
    """``market-sim summary DIR``: headline metrics per mechanism with n and 95% intervals."""

    def add_parser(self, commands: argparse._SubParsersAction) -> None:
        """The ``summary`` parser."""
        summary = commands.add_parser(
            "summary", help="headline metrics per mechanism (and grid values) with n and 95%% CIs"
        )
        summary.add_argument(
            "dir",
            type=Path,
            nargs="+",
            help="sweep folders, run folders, folders of runs or eva outputs (the runs of all "
            "folders pooled in one table, their eva results in another)",
        )
        summary.add_argument(
            "--by",
            action="append",
            default=[],
            metavar="KEY",
            help="also group by this runs-table column (a grid key or summary key); repeatable "
            "(default: mechanism and the grid keys that vary)",
        )
        summary.add_argument(
            "--format",
            choices=("table", "markdown", "csv", "json"),
            default="table",
            help="output format; csv and json keep full precision (default: %(default)s)",
        )

    def run(self, args: argparse.Namespace) -> None:
        """Print the table; pooling warnings go to stderr."""
        from market_sim.cli import UsageError

        folders = args.dir if isinstance(args.dir, list) else [args.dir]
        for folder in folders:
            if folder.is_file():
                raise UsageError(f"{folder}: a file, not a folder of results")
            if not folder.is_dir():
                raise UsageError(f"{folder}: no such folder")
        if len(folders) > 1:
            for folder in folders:
                if not holds_results(folder):
                    print(
                        f"market-sim: warning: {folder}: no runs and no eva results; skipped",
                        file=sys.stderr,
                    )
        print_summary(folders, args.by, args.format, args.verbose)


def check_figures_folder(results: Path, out_dir: Path) -> None:
    """Refuse to draw into another folder of results (figures would mix with its files).

    Drawing into the results folder itself (``--out DIR``) is allowed: the figures sit beside
    the results they show.

    Raises:
        UsageError: ``out_dir`` is not ``results`` and holds a command's result files.
    """
    from market_sim.cli import UsageError
    from market_sim.scenario.output_folder import result_files_in

    if out_dir.expanduser().resolve() == results.expanduser().resolve():
        return
    found = result_files_in(out_dir)
    if found:
        raise UsageError(
            f"--out: '{out_dir}' holds other results ({', '.join(found)}); draw the figures "
            f"into '{results}', its figures folder, or a folder without results"
        )


def first_missing_folder(folder: Path) -> Path | None:
    """The outermost folder of ``folder``'s path that does not exist yet (None: it exists)."""
    missing = None
    for candidate in [folder, *folder.parents]:
        if candidate.exists():
            break
        missing = candidate
    return missing


def unanalysable_errors() -> tuple[type[Exception], ...]:
    """What reading results of another layout than this version writes raises.

    A column of another type or a missing one, a hand-edited ``summary.json`` or ``sweep.json``.
    polars is imported here, not when the CLI starts.
    """
    import polars as pl

    return (pl.exceptions.PolarsError, TypeError, KeyError)


def unanalysable(
    folders: Path | Sequence[Path], error: Exception, verbose: bool = False
) -> Exception:
    """A one-line UsageError for results that raised one of :func:`unanalysable_errors`.

    Args:
        folders: The result folders read.
        error: What reading them raised.
        verbose: ``--verbose``: return ``error`` itself, whose traceback shows where it came
            from (these errors are also what a bug in the analysis code would raise).
    """
    from analysis.load import first_line
    from market_sim.cli import UsageError

    if verbose:
        return error
    named = ", ".join(map(str, folders)) if isinstance(folders, list | tuple) else str(folders)
    return UsageError(
        f"{named}: the results cannot be analysed ({first_line(error)}); is a result file "
        "damaged, edited, or written by another version? (market-sim --verbose shows where)"
    )


def holds_results(folder: Path) -> bool:
    """Whether ``folder`` holds a run, a sweep or an eva output (at any depth)."""
    from analysis.eva import EVA_FILE, find_result_files
    from analysis.load import discover

    sweeps, runs = discover(folder)
    return bool(sweeps or runs or find_result_files(folder, EVA_FILE))


def print_summary(
    folders: Path | Sequence[Path],
    by: Sequence[str] = (),
    fmt: str = "table",
    verbose: bool = False,
) -> None:
    """Print the summary table of the runs under ``folders``; pooling warnings go to stderr.

    Runs (``summary.json``) give the table of :func:`analysis.summary.summary_report`;
    ``market-sim eva`` outputs (``eva.parquet``) give the held-out reward per generation of
    :func:`analysis.summary.eva_report`; folders holding both give both. ``verbose``: results
    that cannot be analysed raise their own error (its traceback) instead of one line.

    Raises:
        UsageError: Neither runs nor eva results; ``--by`` without runs; ``csv`` or ``json``
            over folders holding both (two tables would not make one document); an unknown
            grouping key or format.
    """
    from analysis.eva import EVA_FILE, find_result_files
    from analysis.summary import eva_report, summary_report
    from market_sim.cli import UsageError

    has_eva = bool(find_result_files(folders, EVA_FILE))
    texts, warnings = [], []
    try:
        text, warnings = summary_report(folders, by, fmt)
        texts.append(text)
    except FileNotFoundError as error:
        if not has_eva:
            raise UsageError(f"{error}; no {EVA_FILE} either") from None
        if by:
            raise UsageError(
                f"--by groups runs; the folders hold only eva results ({EVA_FILE})"
            ) from None
    except ValueError as error:  # DamagedResultError, an unknown --by key, ...: one line each
        raise UsageError(str(error)) from None
    except unanalysable_errors() as error:
        raise unanalysable(folders, error, verbose) from None
    if has_eva and texts and fmt in ("csv", "json"):
        raise UsageError(
            f"--format {fmt}: the folders hold both runs and eva results ({EVA_FILE}); "
            "summarize them separately for one table each"
        )
    if has_eva:
        try:
            texts.append(eva_report(folders, fmt))
        except (FileNotFoundError, ValueError) as error:
            raise UsageError(str(error)) from None
        except unanalysable_errors() as error:
            raise unanalysable(folders, error, verbose) from None
    for warning in warnings:
        print(f"market-sim: warning: {warning}", file=sys.stderr)
    print("\n\n".join(texts))


DEMO = DemoCommand()
PLOT = PlotCommand()
SUMMARY = SummaryCommand()
