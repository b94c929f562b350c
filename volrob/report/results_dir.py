"""What a report reads: a study folder (``study.json``: its stages' run folders and trained models) or one engine
run folder (``run.json``), with every table, record, sanity flag and worst-case view they hold.

Only finished work is reported: a run whose ``run.json`` does not say ``finished`` is an error naming it (rerun the
command; it resumes), so a page never mixes a half-written table with a complete one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from volrob.errors import DataError

COMMAND_ROLE = {"evaluate": "evaluate", "attack": "grid", "robustness": "grid", "transfer": "transfer",
                "query": "query", "universal": "universal"}
"""The part a single run plays in a report, by the command that made it (a study names its stages)."""
EVALUATE_COLUMNS = ("case", "model", "region", "metric", "clean")
ATTACK_COLUMNS = ("cell", "case", "model", "source", "white_box", "attack", "budget_key", "budget", "eps", "region",
                  "metric", "clean", "adversarial", "linf_255", "ssim")


def read_json(path: Path) -> Any:
    """A JSON file's data; DataError naming the file when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise DataError(f"cannot read ({err.strerror or err})", path=path) from None
    except ValueError as err:
        raise DataError(f"is not valid JSON ({err})", path=path) from None


@dataclass
class RunFolder:
    """One finished engine run."""

    role: str
    path: Path
    record: dict[str, Any]
    stage: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.record.get("config") or {})

    @property
    def region(self) -> str:
        return str(self.config.get("region") or "WT")

    @property
    def seed(self) -> int:
        return int(self.config.get("seed") or 0)

    @property
    def seconds(self) -> float | None:
        value = self.stage.get("seconds", self.record.get("seconds"))
        return float(value) if isinstance(value, (int, float)) else None

    def table(self, name: str) -> pd.DataFrame | None:
        """``name`` (a CSV of the run) as a frame; None when the run has no such table."""
        path = self.path / name
        if not path.is_file():
            return None
        try:
            return pd.read_csv(path)
        except (OSError, ValueError) as err:
            raise DataError(f"cannot read the table ({err})", path=path) from None

    @cached_property
    def results(self) -> pd.DataFrame | None:
        """``results.csv``, checked for the columns a report reads (an evaluation has no attack columns)."""
        table = self.table("results.csv")
        if table is not None:
            need = EVALUATE_COLUMNS if self.role == "evaluate" else ATTACK_COLUMNS
            missing = [c for c in need if c not in table.columns]
            if missing:
                raise DataError(f"is not a volrob results table: it lacks column(s) {missing}",
                                path=self.path / "results.csv")
        return table

    @cached_property
    def flags(self) -> list[dict[str, Any]]:
        path = self.path / "sanity.json"
        return list(read_json(path)) if path.is_file() else []

    def views(self) -> list[tuple[dict[str, Any], Path]]:
        """Each worst-case view the run drew (``views/<cell>.json`` and its PNG), in cell order of the run."""
        folder = self.path / "views"
        order = {c.get("id"): i for i, c in enumerate(self.record.get("cells") or [])}
        found = []
        for meta in folder.glob("*.json") if folder.is_dir() else []:
            png = meta.with_suffix(".png")
            if png.is_file():
                found.append((read_json(meta), png))
        return sorted(found, key=lambda v: (order.get(v[0].get("cell"), len(order)), str(v[0].get("cell"))))

    def devices(self) -> list[str]:
        """The devices the run's processes used (from ``ranks/*.json``)."""
        out = []
        for path in sorted((self.path / "ranks").glob("*.json")):
            try:
                out.append(str(json.loads(path.read_text(encoding="utf-8")).get("device")))
            except (OSError, ValueError):
                continue
        return sorted(set(out))


@dataclass
class TrainedModel:
    """A model the study trained (``train``) or fine-tuned with a defence (``defend``)."""

    name: str
    kind: str
    folder: Path
    stage: dict[str, Any]

    @cached_property
    def log(self) -> pd.DataFrame | None:
        path = self.folder / "log.csv"
        try:
            return pd.read_csv(path) if path.is_file() else None
        except (OSError, ValueError):
            return None

    @cached_property
    def config(self) -> dict[str, Any]:
        path = self.folder / "config.json"
        return dict(read_json(path)) if path.is_file() else {}


@dataclass
class ResultsDir:
    """Everything a report is made from."""

    root: Path
    study: dict[str, Any] | None
    runs: dict[str, RunFolder]
    trained: list[TrainedModel] = field(default_factory=list)
    data_stage: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        if self.study is not None:
            return str(self.study.get("name") or self.root.name)
        return self.root.name

    @property
    def seed(self) -> int:
        if self.study is not None:
            return int((self.study.get("config") or {}).get("seed") or 0)
        return next(iter(self.runs.values())).seed

    @property
    def environment(self) -> dict[str, Any]:
        if self.study is not None and self.study.get("environment"):
            return dict(self.study["environment"])
        return dict(next(iter(self.runs.values())).record.get("environment") or {})

    @property
    def seconds(self) -> float | None:
        """The time the work took: a study's stages summed as each recorded it when it ran (a rerun served from the
        cache takes seconds, which is not how long the study took), or the run's own time."""
        if self.study is None:
            return next(iter(self.runs.values())).seconds
        parts = [r.seconds for r in self.runs.values()] + [t.stage.get("seconds") for t in self.trained]
        parts.append((self.data_stage or {}).get("seconds"))
        found = [float(p) for p in parts if isinstance(p, (int, float))]
        return sum(found) if found else None

    def run(self, role: str) -> RunFolder | None:
        return self.runs.get(role)

    @cached_property
    def manifest(self) -> dict[str, Any]:
        """The data manifest the runs read (empty when it cannot be read any more), read once."""
        for r in self.runs.values():
            path = r.config.get("manifest")
            if path:
                try:
                    return dict(read_json(Path(path)))
                except DataError:
                    return {}
        return {}

    @property
    def synthetic(self) -> bool:
        """Whether the data are volrob's synthetic phantoms."""
        return self.data_stage is not None or self.manifest.get("layout") == "synthetic"


def trained_beside(run: RunFolder) -> list[TrainedModel]:
    """The models of a run whose checkpoint lies in a ``volrob train`` output folder (``log.csv`` beside it): their
    training record is read from the log (best mean validation Dice, its epoch, the summed epoch times)."""
    out = []
    for name, rec in (run.record.get("models") or {}).items():
        ckpt = (rec.get("origin") or {}).get("checkpoint")
        folder = Path(ckpt).parent if ckpt else None
        if folder is None or not (folder / "log.csv").is_file():
            continue
        model = TrainedModel(name, "train", folder, {})
        log = model.log
        if log is None or log.empty:
            continue
        if (model.config.get("train") or {}).get("init_from"):
            model.kind = "defend"
        val = log.dropna(subset=["val_dice_mean"]) if "val_dice_mean" in log else log.iloc[0:0]
        if not val.empty:
            best = val.loc[val["val_dice_mean"].idxmax()]
            model.stage.update(best_val_dice=float(best["val_dice_mean"]), best_epoch=int(best["epoch"]))
        if "seconds" in log:
            model.stage["seconds"] = float(log["seconds"].sum())
        out.append(model)
    return out


def _run(role: str, path: Path) -> RunFolder:
    record = read_json(path / "run.json")
    if not isinstance(record, dict) or record.get("status") != "finished":
        raise DataError("this run has not finished (rerun its command: it continues where it stopped)",
                        path=path / "run.json")
    stage = read_json(path / "stage.json") if (path / "stage.json").is_file() else {}
    return RunFolder(role, path, record, stage if isinstance(stage, dict) else {})


def _inside(root: Path, rel: str | None) -> Path | None:
    if rel is None:
        return None
    p = Path(rel)
    return p if p.is_absolute() else root / p


def load_results(path: str | Path) -> ResultsDir:
    """The study or run in ``path`` (see the module docstring)."""
    root = Path(path)
    if not root.is_dir():
        raise DataError("is not a folder (give a study's output folder or a run folder)", path=root)
    if (root / "study.json").is_file():
        study = read_json(root / "study.json")
        if not isinstance(study, dict):
            raise DataError("is not a study record", path=root / "study.json")
        stages = dict(study.get("stages") or {})
        runs = {role: _run(role, _inside(root, rel)) for role, rel in stages.items()  # type: ignore[arg-type]
                if role != "data" and rel is not None}
        trained = []
        for name, rel in (study.get("checkpoints") or {}).items():
            ckpt = _inside(root, rel)
            if ckpt is None or not (ckpt.parent / "stage.json").is_file():
                continue  # a given model: nothing trained here
            kind = ckpt.parent.parent.name
            trained.append(TrainedModel(name, kind, ckpt.parent, read_json(ckpt.parent / "stage.json")))
        data = _inside(root, stages.get("data"))
        data_stage = read_json(data / "stage.json") if data is not None and (data / "stage.json").is_file() else None
        return ResultsDir(root, study, runs, trained, data_stage)
    if (root / "run.json").is_file():
        run = _run("", root)
        command = str(run.record.get("command") or "")
        run.role = COMMAND_ROLE.get(command, "grid")
        return ResultsDir(root, None, {run.role: run}, trained_beside(run))
    raise DataError("holds neither study.json (volrob run) nor run.json (a volrob command's output folder)",
                    path=root)
