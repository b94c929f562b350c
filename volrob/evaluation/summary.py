"""Summary statistics of tidy metric rows, a compact text table, and paired Wilcoxon tests (clean vs attacked).

Statistics per group: ``n``, ``mean``, ``std`` (sample, ddof=1; 0 for a single value), ``median``, ``q25``,
``q75`` (linear interpolation) and a percentile-bootstrap confidence interval of the mean (``ci_low``,
``ci_high``) drawn from ``np.random.default_rng(seed)``, restarted per group so a group's interval does not
depend on which other groups are present. Non-finite values are refused, never dropped.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from volrob.data.labels import REGIONS
from volrob.errors import ConfigError, DataError

STAT_COLUMNS: tuple[str, ...] = ("n", "mean", "std", "median", "q25", "q75", "ci_low", "ci_high")
METRIC_ORDER: tuple[str, ...] = ("dice", "hd95", "hd95_brats", "nsd", "lesion_dice", "lesion_hd95")
ALTERNATIVES: tuple[str, ...] = ("two-sided", "less", "greater")
_BOOT_CHUNK = 4_000_000  # resampled values held in memory at once


def bootstrap_mean_ci(
    values: Sequence[float] | np.ndarray, *, n_boot: int = 2000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap ``confidence`` interval of the mean of ``values`` (same seed -> same interval)."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < 1:
        raise ConfigError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not 0.0 < float(confidence) < 1.0:
        raise ConfigError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or x.size == 0 or not np.isfinite(x).all():
        raise DataError(f"bootstrap needs a non-empty 1-D array of finite values, got shape {list(x.shape)}")
    rng = np.random.default_rng(seed)
    rows = max(1, _BOOT_CHUNK // x.size)
    means = np.concatenate(
        [x[rng.integers(0, x.size, size=(min(rows, n_boot - start), x.size))].mean(axis=1)
         for start in range(0, n_boot, rows)]
    )
    alpha = (1.0 - float(confidence)) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def _plain(v: Any) -> Any:
    """numpy scalars as plain Python values, for readable messages."""
    return v.item() if isinstance(v, np.generic) else v


def _check_frame(df: pd.DataFrame, by: Sequence[str], value: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise ConfigError(f"summarize needs a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in (*by, value) if c not in df.columns]
    if missing:
        raise ConfigError(f"columns {missing} are missing from the rows (have {list(df.columns)})")
    if value in by:
        raise ConfigError(f"value column {value!r} cannot also be a grouping column {list(by)}")
    if df.empty:
        raise DataError("no rows to summarize")
    if not pd.api.types.is_numeric_dtype(df[value]) or pd.api.types.is_bool_dtype(df[value]):
        raise DataError(f"value column {value!r} must be numeric, got dtype {df[value].dtype}")
    bad = ~np.isfinite(df[value].to_numpy(dtype=float))
    bad_keys = df[list(by)].isna().any(axis=1).to_numpy()
    if bad.any() or bad_keys.any():
        rows = df.index[bad | bad_keys]
        shown = "; ".join(
            f"row {_plain(idx)!r} ({', '.join(f'{c}={_plain(df.at[idx, c])!r}' for c in (*by, value))})"
            for idx in rows[:5]
        )
        more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
        raise DataError(f"{len(rows)} row(s) have NaN/inf in {value!r} or NaN in {list(by)}: {shown}{more}")


def summarize(
    df: pd.DataFrame,
    by: Sequence[str] = ("region", "metric"),
    value: str = "value",
    *,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per group of ``by`` with the columns of :data:`STAT_COLUMNS`; NaN/inf values raise DataError."""
    by = [by] if isinstance(by, str) else list(by)
    if not by:
        raise ConfigError("by must name at least one grouping column")
    _check_frame(df, by, value)
    records: list[dict[str, Any]] = []
    for key, group in df.groupby(by, sort=True):
        x = group[value].to_numpy(dtype=float)
        q25, median, q75 = np.quantile(x, [0.25, 0.5, 0.75])
        low, high = bootstrap_mean_ci(x, n_boot=n_boot, confidence=confidence, seed=seed)
        records.append({
            **dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True)),
            "n": int(x.size), "mean": float(x.mean()), "std": float(x.std(ddof=1)) if x.size > 1 else 0.0,
            "median": float(median), "q25": float(q25), "q75": float(q75), "ci_low": low, "ci_high": high,
        })
    return pd.DataFrame.from_records(records, columns=[*by, *STAT_COLUMNS])


def _order(values: Sequence[Any], preferred: Sequence[str]) -> list[Any]:
    known = [v for v in preferred if v in values]
    return known + sorted((v for v in values if v not in preferred), key=str)


def format_summary(summary_df: pd.DataFrame, *, digits: int = 3) -> str:
    """Text table: one row per region (and any other key), one column per metric, cells ``"mean ± std"``."""
    need = ["metric", "mean", "std"]
    missing = [c for c in need if c not in summary_df.columns]
    if missing:
        raise ConfigError(f"summary is missing columns {missing}; pass the output of summarize()")
    keys = [c for c in summary_df.columns if c not in (*STAT_COLUMNS, "metric")]
    if not keys:
        raise ConfigError("summary needs a row key besides 'metric' (e.g. 'region')")
    if summary_df.duplicated([*keys, "metric"]).any():
        raise ConfigError(f"summary has several rows for the same {[*keys, 'metric']}")
    metrics = _order(list(pd.unique(summary_df["metric"])), METRIC_ORDER)
    labels = summary_df[keys].astype(str).agg(" / ".join, axis=1)
    row_labels = _order(list(pd.unique(labels)), REGIONS)
    cells = {(lab, r.metric): f"{r.mean:.{digits}f} ± {r.std:.{digits}f}"
             for lab, r in zip(labels, summary_df.itertuples(index=False), strict=True)}
    table = [[" / ".join(keys), *metrics]]
    table += [[lab, *(cells.get((lab, m), "-") for m in metrics)] for lab in row_labels]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table)


@dataclass(frozen=True)
class WilcoxonResult:
    """Paired Wilcoxon signed-rank test of ``a`` against ``b`` (differences ``a - b``)."""

    statistic: float
    pvalue: float
    n: int
    median_difference: float
    effect_size: float = 0.0
    """Matched-pairs rank-biserial correlation of ``a - b`` in [-1, 1]: (W+ − W−) / (W+ + W−) over the signed ranks
    of the non-zero differences (1: every case higher in ``a``; 0 when all differences are zero)."""


def _paired_arrays(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(a, pd.Series) and isinstance(b, pd.Series):
        if not (a.index.is_unique and b.index.is_unique):
            raise DataError("paired_wilcoxon: case ids (Series index) must be unique in both samples")
        if set(a.index) != set(b.index):
            only = sorted(map(str, set(a.index) ^ set(b.index)))[:5]
            raise DataError(f"paired_wilcoxon: the samples cover different cases, e.g. {only}")
        b = b.reindex(a.index)
    try:
        x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    except (TypeError, ValueError):
        raise DataError("paired_wilcoxon: samples must be numeric") from None
    if x.ndim != 1 or x.shape != y.shape or x.size == 0:
        raise DataError(f"paired_wilcoxon: need two non-empty 1-D samples of equal length, got {x.shape}, {y.shape}")
    bad = np.flatnonzero(~(np.isfinite(x) & np.isfinite(y)))
    if bad.size:
        raise DataError(f"paired_wilcoxon: non-finite values at positions {bad[:5].tolist()}")
    return x, y


def paired_wilcoxon(a: Any, b: Any, *, alternative: str = "two-sided") -> WilcoxonResult:
    """Wilcoxon signed-rank test on paired per-case values (arrays in the same case order, or Series by case id)."""
    if alternative not in ALTERNATIVES:
        raise ConfigError(f"alternative must be one of {list(ALTERNATIVES)}, got {alternative!r}")
    x, y = _paired_arrays(a, b)
    diff = x - y
    median_diff = float(np.median(diff))
    if not diff.any():  # scipy answers statistic 0, p 1 here, with a division warning
        return WilcoxonResult(0.0, 1.0, int(x.size), median_diff, 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # small-sample / ties notes from scipy
        res = stats.wilcoxon(x, y, alternative=alternative)
    return WilcoxonResult(float(res.statistic), float(res.pvalue), int(x.size), median_diff, rank_biserial(diff))


def rank_biserial(diff: np.ndarray) -> float:
    """Matched-pairs rank-biserial correlation of paired differences: zeros dropped (as the signed-rank test does
    by default), absolute values ranked with ties averaged, ``(W+ − W−) / (W+ + W−)``; 0 when nothing differs."""
    d = np.asarray(diff, dtype=float)
    d = d[d != 0]
    if d.size == 0:
        return 0.0
    ranks = stats.rankdata(np.abs(d))
    plus, minus = float(ranks[d > 0].sum()), float(ranks[d < 0].sum())
    return (plus - minus) / (plus + minus)
