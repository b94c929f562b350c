"""summarize / format_summary / paired_wilcoxon against numpy and scipy computed independently."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from volrob.errors import ConfigError, DataError
from volrob.evaluation.summary import STAT_COLUMNS, bootstrap_mean_ci, format_summary, paired_wilcoxon, summarize


def tidy(seed: int = 0, n_cases: int = 15) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [
        {"case": f"c{c:02d}", "region": r, "metric": m, "value": float(rng.uniform(0, 40 if m == "hd95" else 1))}
        for c in range(n_cases) for r in ("TC", "WT", "ET") for m in ("dice", "hd95", "nsd")
    ]
    return pd.DataFrame(rows)


def test_summary_statistics_match_numpy():
    df = tidy()
    out = summarize(df, n_boot=200)
    assert list(out.columns) == ["region", "metric", *STAT_COLUMNS]
    assert len(out) == 9
    for row in out.itertuples(index=False):
        x = df[(df.region == row.region) & (df.metric == row.metric)]["value"].to_numpy()
        assert row.n == x.size == 15
        assert row.mean == pytest.approx(np.sum(x) / x.size)
        assert row.std == pytest.approx(math.sqrt(np.sum((x - x.mean()) ** 2) / (x.size - 1)))
        assert row.median == pytest.approx(np.sort(x)[7])
        assert row.q25 == pytest.approx(np.percentile(x, 25)) and row.q75 == pytest.approx(np.percentile(x, 75))
        assert row.ci_low <= row.mean <= row.ci_high


def test_hand_values_and_single_value_group():
    df = pd.DataFrame({"region": ["TC"] * 4 + ["ET"], "metric": ["dice"] * 5, "value": [1.0, 2.0, 3.0, 4.0, 0.5]})
    out = summarize(df, n_boot=50).set_index("region")
    assert out.loc["TC", "mean"] == 2.5 and out.loc["TC", "median"] == 2.5
    assert out.loc["TC", "q25"] == 1.75 and out.loc["TC", "q75"] == 3.25
    assert out.loc["TC", "std"] == pytest.approx(math.sqrt(5 / 3))
    assert out.loc["ET", "n"] == 1 and out.loc["ET", "std"] == 0.0
    assert out.loc["ET", "ci_low"] == out.loc["ET", "ci_high"] == 0.5


def test_bootstrap_deterministic_given_seed():
    df = tidy(1)
    a, b = summarize(df, n_boot=300, seed=5), summarize(df, n_boot=300, seed=5)
    pd.testing.assert_frame_equal(a, b)
    c = summarize(df, n_boot=300, seed=6)
    assert not np.allclose(a["ci_low"], c["ci_low"])
    # a group's interval does not depend on which other groups are present
    sub = summarize(df[df.region == "WT"], n_boot=300, seed=5)
    pd.testing.assert_frame_equal(sub.reset_index(drop=True),
                                  a[a.region == "WT"].reset_index(drop=True))


def test_bootstrap_ci_agrees_with_normal_theory():
    x = np.random.default_rng(2).normal(10.0, 2.0, size=400)
    low, high = bootstrap_mean_ci(x, n_boot=4000, seed=0)
    half = 1.959964 * x.std(ddof=0) / math.sqrt(x.size)
    assert low == pytest.approx(x.mean() - half, abs=0.12 * half)
    assert high == pytest.approx(x.mean() + half, abs=0.12 * half)
    narrow = bootstrap_mean_ci(x, n_boot=4000, confidence=0.5, seed=0)
    assert low < narrow[0] < narrow[1] < high
    assert bootstrap_mean_ci(np.full(7, 3.0), n_boot=10) == (3.0, 3.0)


def test_bootstrap_chunking_keeps_the_stream(monkeypatch):
    x = np.random.default_rng(3).random(50)
    ref = bootstrap_mean_ci(x, n_boot=333, seed=9)
    import volrob.evaluation.summary as summary_mod

    monkeypatch.setattr(summary_mod, "_BOOT_CHUNK", 50 * 7)
    assert bootstrap_mean_ci(x, n_boot=333, seed=9) == pytest.approx(ref)


def test_other_grouping_columns():
    df = tidy(2)
    df["model"] = np.where(df["case"] < "c07", "unet", "segresnet")
    out = summarize(df, by=("model", "region", "metric"), n_boot=20)
    assert len(out) == 18 and out["n"].sum() == len(df)
    by_metric = summarize(df, by="metric", n_boot=20)
    assert list(by_metric["metric"]) == ["dice", "hd95", "nsd"] and set(by_metric["n"]) == {45}


def test_nan_rows_are_named():
    df = tidy(3)
    df.loc[[4, 17], "value"] = [np.nan, np.inf]
    with pytest.raises(DataError, match=r"2 row\(s\).*row 4 .*row 17 ") as err:
        summarize(df)
    assert "\n" not in str(err.value) and "region='WT', metric='hd95', value=nan" in str(err.value)
    df2 = tidy(3)
    df2.loc[5, "region"] = None
    with pytest.raises(DataError, match="row 5 "):
        summarize(df2)


def test_bad_frames_raise():
    df = tidy(4, n_cases=2)
    with pytest.raises(ConfigError, match="missing"):
        summarize(df, by=("region", "attack"))
    with pytest.raises(ConfigError, match="missing"):
        summarize(df, value="score")
    with pytest.raises(ConfigError, match="grouping"):
        summarize(df, by=("region", "value"))
    with pytest.raises(ConfigError, match="at least one"):
        summarize(df, by=())
    with pytest.raises(ConfigError, match="DataFrame"):
        summarize(df.to_dict())  # type: ignore[arg-type]
    with pytest.raises(DataError, match="no rows"):
        summarize(df.iloc[:0])
    with pytest.raises(DataError, match="numeric"):
        summarize(df.assign(value="x"))
    with pytest.raises(ConfigError, match="n_boot"):
        summarize(df, n_boot=0)
    with pytest.raises(ConfigError, match="confidence"):
        summarize(df, confidence=1.0)
    with pytest.raises(DataError, match="finite"):
        bootstrap_mean_ci([])


def test_format_summary_layout():
    df = pd.DataFrame({
        "region": ["ET", "ET", "TC", "WT", "TC"],
        "metric": ["dice", "hd95", "dice", "dice", "nsd"],
        "value": [0.5, 10.0, 0.25, 0.75, 1.0],
    })
    df = pd.concat([df, df.assign(value=df.value + 0.2)], ignore_index=True)
    text = format_summary(summarize(df, n_boot=10), digits=2)
    lines = text.splitlines()
    assert lines[0].split() == ["region", "dice", "hd95", "nsd"]
    assert [ln.split()[0] for ln in lines[1:]] == ["TC", "WT", "ET"]
    assert "0.35 ± 0.14" in lines[1] and "1.10 ± 0.14" in lines[1] and lines[1].split()[-4] == "-"
    assert "10.10 ± 0.14" in lines[3] and lines[3].rstrip().endswith("-")


def test_format_summary_with_extra_keys_and_errors():
    df = tidy(5, n_cases=3)
    df["model"] = "unet"
    text = format_summary(summarize(df, by=("model", "region", "metric"), n_boot=10))
    assert text.splitlines()[0].startswith("model / region") and "unet / TC" in text
    with pytest.raises(ConfigError, match="missing columns"):
        format_summary(pd.DataFrame({"region": ["TC"], "mean": [1.0]}))
    with pytest.raises(ConfigError, match="row key"):
        format_summary(summarize(df, by="metric", n_boot=10))
    s = summarize(df, by=("model", "region", "metric"), n_boot=10).drop(columns="model")
    s.loc[len(s)] = s.iloc[0]
    with pytest.raises(ConfigError, match="several rows"):
        format_summary(s)


def test_paired_wilcoxon_matches_scipy():
    rng = np.random.default_rng(8)
    clean = rng.uniform(0.6, 0.9, 25)
    attacked = clean - rng.normal(0.1, 0.05, 25)
    res = paired_wilcoxon(clean, attacked)
    ref = stats.wilcoxon(clean, attacked)
    assert res.statistic == float(ref.statistic) and res.pvalue == pytest.approx(float(ref.pvalue), rel=1e-12)
    assert res.n == 25 and res.median_difference == pytest.approx(np.median(clean - attacked))
    ref_less = stats.wilcoxon(clean, attacked, alternative="less")
    assert paired_wilcoxon(clean, attacked, alternative="less").pvalue == pytest.approx(float(ref_less.pvalue))


def test_paired_wilcoxon_aligns_series_by_case():
    rng = np.random.default_rng(9)
    ids = [f"case{i}" for i in range(12)]
    a = pd.Series(rng.random(12), index=ids)
    b = pd.Series(rng.random(12), index=ids)
    shuffled = b.sample(frac=1.0, random_state=1)
    assert paired_wilcoxon(a, shuffled) == paired_wilcoxon(a.to_numpy(), b.to_numpy())
    with pytest.raises(DataError, match="different cases"):
        paired_wilcoxon(a, b.rename(index={"case3": "other"}))
    with pytest.raises(DataError, match="unique"):
        paired_wilcoxon(a, pd.Series(b.to_numpy(), index=["x"] * 12))


def test_paired_wilcoxon_edge_cases_and_errors():
    x = np.array([0.5, 0.7, 0.9])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = stats.wilcoxon(x, x)
    res = paired_wilcoxon(x, x)
    assert (res.statistic, res.pvalue, res.n, res.median_difference) == (float(ref.statistic), float(ref.pvalue), 3,
                                                                          0.0)
    with pytest.raises(DataError, match="equal length"):
        paired_wilcoxon(x, x[:2])
    with pytest.raises(DataError, match="equal length"):
        paired_wilcoxon([], [])
    with pytest.raises(DataError, match="non-finite values at positions \\[1\\]"):
        paired_wilcoxon(x, [0.1, np.nan, 0.2])
    with pytest.raises(DataError, match="numeric"):
        paired_wilcoxon(["a", "b"], [1.0, 2.0])
    with pytest.raises(ConfigError, match="alternative"):
        paired_wilcoxon(x, x, alternative="bigger")
