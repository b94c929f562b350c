"""Input checks shared by the figure and table functions: one-line errors naming the function and parameter."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from volrob.errors import ConfigError, DataError

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def check_columns(table: object, columns: Sequence[str], what: str, name: str = "table") -> pd.DataFrame:
    """``table`` itself; ConfigError unless it is a DataFrame with every one of ``columns``."""
    if not isinstance(table, pd.DataFrame):
        raise ConfigError(f"{what}: {name} must be a pandas DataFrame, got {type(table).__name__}")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ConfigError(f"{what}: {name} lacks column(s) {missing}")
    return table


def finite(table: pd.DataFrame, column: str, what: str) -> pd.Series:
    """``table[column]`` as floats; DataError naming the column when a value is not a finite number."""
    values = pd.to_numeric(table[column], errors="coerce").astype(float)
    if not np.isfinite(values.to_numpy()).all():
        raise DataError(f"{what}: column {column!r} must hold finite numbers only")
    return values


def as_bool(table: pd.DataFrame, column: str, what: str) -> pd.Series:
    """``table[column]`` as booleans (``True``/``False``, 1/0 or their text, as a CSV reader may leave them)."""
    def one(v: object) -> bool:
        if isinstance(v, bool | np.bool_):
            return bool(v)
        if isinstance(v, int | float | np.number) and v in (0, 1):
            return bool(v)
        text = str(v).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise DataError(f"{what}: column {column!r} must hold true/false values, got {v!r}")

    return table[column].map(one).astype(bool)
