"""Paths in documents: relative below the working directory, the file name alone elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from volrob.io import shown_path


def test_shown_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "repo"
    (work / "runs" / "a").mkdir(parents=True)
    monkeypatch.chdir(work)
    assert shown_path(work / "runs" / "a" / "results.csv") == "runs/a/results.csv"
    assert shown_path("runs/a") == "runs/a"
    assert shown_path(tmp_path / "elsewhere" / "model.pt") == "model.pt"
