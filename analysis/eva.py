r"""Analysis of EVA self-play runs (``eva.parquet``) and EVA regret audits (``audit.parquet``).

``market-sim eva`` writes one row per seed x method x generation of a solver trained on
EVA-evolved prompts (``method = "eva"``) or on a static prompt set (``"static"``); generation 0
is the base model, identical for both methods. ``market-sim audit`` writes one row per evaluated
query of a regret audit that searches queries by EVA evolution (``"eva"``) or samples them
uniformly (``"uniform"``).

Conventions (as in :mod:`analysis.metrics`):

* A seed is one observation. Intervals are Student t intervals over seeds
  (:func:`analysis.stats.mean_ci`),

  .. math::

      \bar x \pm t_{(1+c)/2,\,n-1}\, \frac{s}{\sqrt n}, \qquad
      s^2 = \frac{1}{n-1}\sum_k (x_k - \bar x)^2,

  null for :math:`n < 2`.
* Paired comparisons difference the two methods within a seed first (same seed, same base model
  and held-out set), then take the t interval of the :math:`n` per-seed differences
  :math:`d_k = x_k^{\text{eva}} - x_k^{\text{baseline}}`; only seeds present for both methods
  count.
* polars does not keep row order after ``group_by``: every result is sorted explicitly.

This module reads files only; it never imports the simulator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from analysis.load import Paths, as_paths, read_result_parquet
from analysis.stats import CONFIDENCE, mean_ci
from market_sim.results.layout import AUDIT_FILE, EVA_FILE

EVA_COLUMNS: tuple[str, ...] = ("seed", "method", "generation", "heldout_reward")
"""Columns of ``eva.parquet`` the analysis needs (others are kept and ignored)."""
AUDIT_COLUMNS: tuple[str, ...] = ("mechanism", "method", "seed", "generation", "text", "regret_max")
"""Columns of ``audit.parquet`` the analysis needs (others are kept and ignored)."""
AUDIT_METRICS: tuple[str, ...] = (
    "queries",
    "distinct_queries",
    "regret_max_found",
    "top_mean",
    "all_mean",
)
"""Per-seed audit quantities of :func:`audit_comparison`, summarised by
:func:`audit_comparison_summary`."""

_CI_SCHEMA = {"mean": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64}


# --------------------------------------------------------------------------- loading


def _result_file(path: Path, name: str) -> Path:
    """``path`` itself when it names a parquet file, else ``path / name``."""
    return path if path.suffix == ".parquet" else path / name


def _read(paths: Paths, name: str) -> pl.DataFrame:
    """Concatenate ``name`` from each of ``paths`` (folders or files), with a ``source`` column.

    Raises:
        FileNotFoundError: When a path has no such file, or no path is given.
    """
    frames = []
    given = as_paths(paths)
    if not given:
        raise FileNotFoundError(f"no paths given to read {name} from")
    for path in given:
        file = _result_file(path, name)
        if not file.is_file():
            raise FileNotFoundError(f"{file}: no such file ({name} expected)")
        frame = read_result_parquet(file)
        frames.append(frame.with_columns(pl.lit(str(file.resolve().parent)).alias("source")))
    return pl.concat(frames, how="diagonal_relaxed")


def load_eva(paths: Paths) -> pl.DataFrame:
    """Read ``eva.parquet`` from each folder in ``paths`` (or each file path) and concatenate.

    Args:
        paths: One or more ``market-sim eva --out`` folders or ``eva.parquet`` files. Seeds
            written to separate folders are pooled.

    Returns:
        The rows of every file plus a ``source`` column (the file's folder, absolute).

    Raises:
        FileNotFoundError: Naming the first path without an ``eva.parquet``.
    """
    return _read(paths, EVA_FILE)


def load_audit(paths: Paths) -> pl.DataFrame:
    """Read ``audit.parquet`` from each folder in ``paths`` (or each file path) and concatenate.

    Args:
        paths: One or more ``market-sim audit --out`` folders or ``audit.parquet`` files.

    Returns:
        The rows of every file plus a ``source`` column (the file's folder, absolute).

    Raises:
        FileNotFoundError: Naming the first path without an ``audit.parquet``.
    """
    return _read(paths, AUDIT_FILE)


def find_result_files(paths: Paths, name: str) -> list[Path]:
    """Every file called ``name`` at or below ``paths`` (sorted, no duplicates; none is fine).

    A file inside a ``seeds/seed-S/`` folder of an ``eva`` output is one seed's copy of rows the
    combined file two levels up already holds: it is skipped when that combined file exists.
    """
    found: set[Path] = set()
    for root in as_paths(paths):
        root = root.resolve()
        if root.is_file():
            if root.name == name:
                found.add(root)
        elif root.is_dir():
            found.update(path for path in root.rglob(name) if path.is_file())
    return sorted(path for path in found if not _per_seed_copy(path, found))


def _per_seed_copy(path: Path, found: set[Path]) -> bool:
    """Whether ``path`` is ``DIR/seeds/seed-S/<name>`` and ``DIR/<name>`` was found too."""
    parent = path.parent
    return parent.parent.name == "seeds" and parent.parent.parent / path.name in found


# --------------------------------------------------------------------------- helpers


def _require(frame: pl.DataFrame, columns: Sequence[str], what: str) -> None:
    """Raise ValueError naming the columns of ``columns`` that ``frame`` lacks."""
    missing = [col for col in columns if col not in frame.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}; have {frame.columns}")


def _check_unique(frame: pl.DataFrame, keys: Sequence[str], what: str) -> None:
    """Raise ValueError when a combination of ``keys`` appears on more than one row."""
    duplicated = frame.group_by(list(keys)).len().filter(pl.col("len") > 1).sort(list(keys))
    if duplicated.height:
        shown = duplicated.head(5).drop("len").to_dicts()
        raise ValueError(
            f"{what}: {duplicated.height} duplicated ({', '.join(keys)}) combination(s), "
            f"e.g. {shown}; pass each seed's results once"
        )


def _finite(column: str) -> pl.Expr:
    """Rows where ``column`` is neither null nor NaN."""
    return pl.col(column).is_not_null() & pl.col(column).is_not_nan()


def _nan_to_none(value: float) -> float | None:
    return None if value is None or math.isnan(value) else value


def _ci_rows(
    table: pl.DataFrame, by: Sequence[str], values: str, confidence: float
) -> pl.DataFrame:
    """Per group of ``by``: ``n`` and ``mean``/``ci_low``/``ci_high`` of the list ``values``."""
    rows = []
    for row in table.iter_rows(named=True):
        mean, low, high = mean_ci(row[values], confidence)
        rows.append(
            {
                **{key: row[key] for key in by},
                "n": len(row[values]),
                "mean": _nan_to_none(mean),
                "ci_low": _nan_to_none(low),
                "ci_high": _nan_to_none(high),
            }
        )
    schema = {**{key: table.schema[key] for key in by}, "n": pl.Int64, **_CI_SCHEMA}
    return pl.DataFrame(rows, schema=schema, orient="row")


def paired_difference(
    frame: pl.DataFrame,
    by: Sequence[str],
    value: str,
    method: str,
    baseline: str,
    confidence: float = CONFIDENCE,
) -> pl.DataFrame:
    r"""Per group of ``by``: t interval of :math:`d_k = x_k^{method} - x_k^{baseline}` over seeds.

    Args:
        frame: Rows with ``seed``, ``method``, ``by`` and ``value``; one row per
            (``by``, seed, method).
        by: Group columns (e.g. ``["generation"]``).
        value: The compared column.
        method: Method on the left of the difference.
        baseline: Method subtracted.
        confidence: Interval confidence.

    Returns:
        ``by``, ``seeds`` (seeds with a finite value for both methods), ``<method>_mean``,
        ``<baseline>_mean`` (means over those seeds), ``difference_mean``
        (:math:`\bar d`), ``ci_low``, ``ci_high`` (:math:`\bar d \pm t\, s_d/\sqrt n`, null
        for n < 2); sorted by ``by``.

    Raises:
        ValueError: When a (``by``, seed, method) combination appears twice.
    """
    keys = [*by, "seed"]
    _check_unique(
        frame.filter(pl.col("method").is_in([method, baseline])), [*keys, "method"], value
    )
    clean = frame.filter(_finite(value))
    left = clean.filter(pl.col("method") == method).select(*keys, pl.col(value).alias("_left"))
    right = clean.filter(pl.col("method") == baseline).select(*keys, pl.col(value).alias("_right"))
    pairs = left.join(right, on=keys, how="inner").with_columns(
        (pl.col("_left") - pl.col("_right")).alias("_difference")
    )
    lists = pairs.group_by(list(by)).agg(
        pl.col("_difference"), pl.col("_left").mean(), pl.col("_right").mean()
    )
    table = _ci_rows(lists, by, "_difference", confidence)
    table = table.join(lists.select(*by, "_left", "_right"), on=list(by), how="left")
    return table.select(
        *by,
        pl.col("n").alias("seeds"),
        pl.col("_left").alias(f"{method}_mean"),
        pl.col("_right").alias(f"{baseline}_mean"),
        pl.col("mean").alias("difference_mean"),
        "ci_low",
        "ci_high",
    ).sort(list(by))


# --------------------------------------------------------------------------- EVA training runs


def eva_summary(frame: pl.DataFrame, confidence: float = CONFIDENCE) -> pl.DataFrame:
    r"""Held-out reward per (method, generation): mean over seeds and t interval.

    Each seed contributes its ``heldout_reward`` :math:`x_k` (rows with a null or NaN reward are
    dropped); the interval is :math:`\bar x \pm t_{(1+c)/2,n-1}\, s/\sqrt n`.

    Args:
        frame: ``eva.parquet`` rows (:func:`load_eva`).
        confidence: Interval confidence.

    Returns:
        ``method``, ``generation``, ``seeds`` (n), ``heldout_reward_mean``, ``ci_low``,
        ``ci_high`` (null when n < 2), sorted by method then generation.

    Raises:
        ValueError: On missing columns or a (seed, method, generation) on two rows.
    """
    _require(frame, EVA_COLUMNS, "eva_summary")
    _check_unique(frame, ["seed", "method", "generation"], "eva_summary")
    lists = (
        frame.filter(_finite("heldout_reward"))
        .group_by("method", "generation")
        .agg(pl.col("heldout_reward"))
    )
    table = _ci_rows(lists, ["method", "generation"], "heldout_reward", confidence)
    return table.rename({"n": "seeds", "mean": "heldout_reward_mean"}).sort("method", "generation")


def eva_paired_difference(
    frame: pl.DataFrame,
    confidence: float = CONFIDENCE,
    method: str = "eva",
    baseline: str = "static",
) -> pl.DataFrame:
    r"""Per generation: EVA minus static held-out reward, paired by seed.

    :math:`d_k = x_k^{\text{eva}} - x_k^{\text{static}}` for every seed :math:`k` with both
    methods at that generation; the result is :math:`\bar d` and its t interval (see
    :func:`paired_difference`). Generation 0 (the shared base model) gives :math:`d_k = 0`.

    Args:
        frame: ``eva.parquet`` rows (:func:`load_eva`).
        confidence: Interval confidence.
        method: Left method (``"eva"``).
        baseline: Subtracted method (``"static"``).

    Returns:
        ``generation``, ``seeds``, ``eva_mean``, ``static_mean``, ``difference_mean``,
        ``ci_low``, ``ci_high`` (null when seeds < 2), sorted by generation.

    Raises:
        ValueError: On missing columns or a (seed, method, generation) on two rows.
    """
    _require(frame, EVA_COLUMNS, "eva_paired_difference")
    return paired_difference(frame, ["generation"], "heldout_reward", method, baseline, confidence)


def eva_table(frame: pl.DataFrame, confidence: float = CONFIDENCE) -> pl.DataFrame:
    """Per generation, each method's held-out reward and EVA minus static, with t intervals.

    One row per generation joining :func:`eva_summary` (each method over its seeds) and
    :func:`eva_paired_difference` (the paired difference over the seeds with both); the
    numbers are those functions' unchanged.

    Args:
        frame: ``eva.parquet`` rows (:func:`load_eva`).
        confidence: Interval confidence.

    Returns:
        ``generation``, then per method m in ``static``, ``eva``: ``m_seeds``, ``m_mean``,
        ``m_ci_low``, ``m_ci_high``; then ``difference_seeds``, ``difference_mean``,
        ``difference_ci_low``, ``difference_ci_high``. Nulls where a method is absent or has
        fewer than two seeds (intervals). Sorted by generation.

    Raises:
        ValueError: On missing columns or a (seed, method, generation) on two rows.
    """
    summary = eva_summary(frame, confidence)
    table = pl.DataFrame({"generation": sorted(set(frame["generation"].to_list()))})
    table = table.cast({"generation": frame.schema["generation"]})
    for method in ("static", "eva"):
        part = summary.filter(pl.col("method") == method).select(
            "generation",
            pl.col("seeds").alias(f"{method}_seeds"),
            pl.col("heldout_reward_mean").alias(f"{method}_mean"),
            pl.col("ci_low").alias(f"{method}_ci_low"),
            pl.col("ci_high").alias(f"{method}_ci_high"),
        )
        table = table.join(part, on="generation", how="left")
    difference = eva_paired_difference(frame, confidence).select(
        "generation",
        pl.col("seeds").alias("difference_seeds"),
        "difference_mean",
        pl.col("ci_low").alias("difference_ci_low"),
        pl.col("ci_high").alias("difference_ci_high"),
    )
    return table.join(difference, on="generation", how="left").sort("generation")


# --------------------------------------------------------------------------- regret audits


def audit_comparison(frame: pl.DataFrame, top: int = 10) -> pl.DataFrame:
    r"""Per (mechanism, method, seed): how much regret the audit found.

    Rows with a null or NaN ``regret_max`` are dropped. With :math:`r_q` the ``regret_max`` of
    evaluated query :math:`q` (all rows of the group) and :math:`R_1 \ge R_2 \ge \dots` the
    regrets of the *distinct* query texts (a text evaluated more than once counts once, with
    its highest regret, so re-finding one query does not fill the top):

    * ``queries``: number of evaluated queries (rows); ``distinct_queries``: distinct texts,
    * ``regret_max_found`` :math:`= \max_q r_q`,
    * ``top_mean`` :math:`= \frac{1}{m}\sum_{i \le m} R_i` with ``top_n`` :math:`m =
      \min(\text{top}, \text{distinct\_queries})`,
    * ``all_mean`` :math:`= \frac{1}{|Q|}\sum_q r_q` over all evaluated rows.

    Args:
        frame: ``audit.parquet`` rows (:func:`load_audit`).
        top: How many distinct highest-regret queries ``top_mean`` averages.

    Returns:
        ``mechanism``, ``method``, ``seed``, ``queries``, ``distinct_queries``,
        ``regret_max_found``, ``top_n``, ``top_mean``, ``all_mean``; sorted by mechanism,
        method, seed. :func:`audit_comparison_summary` averages it over seeds.
    """
    if top < 1:
        raise ValueError(f"audit_comparison: top must be >= 1, got {top}")
    _require(frame, AUDIT_COLUMNS, "audit_comparison")
    keys = ["mechanism", "method", "seed"]
    clean = frame.filter(_finite("regret_max"))
    overall = clean.group_by(keys).agg(
        pl.len().cast(pl.Int64).alias("queries"),
        pl.col("text").n_unique().cast(pl.Int64).alias("distinct_queries"),
        pl.col("regret_max").max().alias("regret_max_found"),
        pl.col("regret_max").mean().alias("all_mean"),
    )
    best = clean.group_by(*keys, "text").agg(pl.col("regret_max").max())
    tops = best.group_by(keys).agg(
        pl.col("regret_max").top_k(top).len().cast(pl.Int64).alias("top_n"),
        pl.col("regret_max").top_k(top).mean().alias("top_mean"),
    )
    return (
        overall.join(tops, on=keys, how="left")
        .select(
            *keys,
            "queries",
            "distinct_queries",
            "regret_max_found",
            "top_n",
            "top_mean",
            "all_mean",
        )
        .sort(keys)
    )


def audit_comparison_summary(
    per_seed: pl.DataFrame,
    confidence: float = CONFIDENCE,
    metrics: Sequence[str] = AUDIT_METRICS,
) -> pl.DataFrame:
    r"""Average :func:`audit_comparison` over seeds: per (mechanism, method, metric) a t interval.

    Args:
        per_seed: Output of :func:`audit_comparison`.
        confidence: Interval confidence.
        metrics: Per-seed columns to summarise (:data:`AUDIT_METRICS`).

    Returns:
        Long format: ``mechanism``, ``method``, ``metric``, ``seeds``, ``mean``, ``ci_low``,
        ``ci_high`` (:math:`\bar x \pm t\, s/\sqrt n` over seeds, null when seeds < 2); sorted
        by mechanism, method, metric order of ``metrics``.
    """
    keys = ["mechanism", "method"]
    present = [metric for metric in metrics if metric in per_seed.columns]
    if not present or per_seed.height == 0:
        schema = {"mechanism": pl.String, "method": pl.String, "metric": pl.String}
        return pl.DataFrame(schema={**schema, "seeds": pl.Int64, **_CI_SCHEMA})
    long = per_seed.unpivot(present, index=keys, variable_name="metric").with_columns(
        pl.col("value").cast(pl.Float64)
    )
    lists = long.filter(_finite("value")).group_by(*keys, "metric").agg(pl.col("value"))
    table = _ci_rows(lists, [*keys, "metric"], "value", confidence).rename({"n": "seeds"})
    order = {metric: index for index, metric in enumerate(present)}
    return (
        table.with_columns(
            pl.col("metric").replace_strict(order, return_dtype=pl.Int64).alias("_order")
        )
        .sort(*keys, "_order")
        .drop("_order")
    )


def audit_paired_difference(
    per_seed: pl.DataFrame,
    metric: str = "top_mean",
    confidence: float = CONFIDENCE,
    method: str = "eva",
    baseline: str = "uniform",
) -> pl.DataFrame:
    """Per mechanism: EVA minus uniform audit ``metric``, paired by seed.

    See :func:`paired_difference` for the formula.

    Args:
        per_seed: Output of :func:`audit_comparison`.
        metric: Per-seed column compared (``top_mean``, ``regret_max_found``, ...).
        confidence: Interval confidence.
        method: Left method (``"eva"``).
        baseline: Subtracted method (``"uniform"``).

    Returns:
        ``mechanism``, ``seeds``, ``eva_mean``, ``uniform_mean``, ``difference_mean``,
        ``ci_low``, ``ci_high``; sorted by mechanism.
    """
    _require(per_seed, ["mechanism", "method", "seed", metric], "audit_paired_difference")
    return paired_difference(per_seed, ["mechanism"], metric, method, baseline, confidence)


def audit_top_queries(
    frame: pl.DataFrame, top: int = 10, method: str | None = "eva"
) -> pl.DataFrame:
    """Per mechanism, the ``top`` distinct query texts with the highest ``regret_max``.

    A text evaluated more than once (other seeds or generations) is shown once, on its
    highest-regret row (ties: earliest generation, then lowest seed, then query id). Texts are
    ranked by ``regret_max`` descending, ties broken by text ascending.

    Args:
        frame: ``audit.parquet`` rows (:func:`load_audit`).
        top: Texts kept per mechanism.
        method: Only rows of this method (``None``: every method).

    Returns:
        ``mechanism``, ``rank`` (1 = highest), ``text``, ``regret_max``, then those of
        ``regret_mean``, ``method``, ``seed``, ``generation``, ``query_id``, ``operator``,
        ``parent_id`` that the frame has; sorted by mechanism then rank.
    """
    if top < 1:
        raise ValueError(f"audit_top_queries: top must be >= 1, got {top}")
    _require(frame, AUDIT_COLUMNS, "audit_top_queries")
    rows = frame.filter(_finite("regret_max"))
    if method is not None:
        rows = rows.filter(pl.col("method") == method)
    tie_breaks = [col for col in ("generation", "seed", "query_id") if col in rows.columns]
    distinct = rows.sort(
        ["regret_max", *tie_breaks], descending=[True] + [False] * len(tie_breaks)
    ).unique(subset=["mechanism", "text"], keep="first", maintain_order=True)
    ranked = distinct.sort(
        ["mechanism", "regret_max", "text"], descending=[False, True, False]
    ).with_columns((pl.int_range(pl.len()).over("mechanism") + 1).cast(pl.Int64).alias("rank"))
    extra = [
        col
        for col in (
            "regret_mean",
            "method",
            "seed",
            "generation",
            "query_id",
            "operator",
            "parent_id",
        )
        if col in ranked.columns
    ]
    return (
        ranked.filter(pl.col("rank") <= top)
        .select("mechanism", "rank", "text", "regret_max", *extra)
        .sort("mechanism", "rank")
    )
