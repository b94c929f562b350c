"""Data manifests: a JSON list of cases (per-modality image paths, label path, split, hashes, label convention).

Schema (``data_manifests/manifest.schema.json`` documents it field by field)::

    {"format": "volrob-manifest", "version": 1, "name": str, "layout": "brats2021|brats2023|msd|synthetic",
     "root": str,                      # data root, relative to the manifest's folder unless absolute
     "label_convention": str,          # default for cases that do not name one
     "modalities": ["t1", "t1ce", "t2", "flair"],
     "cases": [{"id": str, "split": "train|val|test|unlabelled",
                "images": {"t1": "path" | {"path": "path", "channel": int}, ...},
                "label": "path" | null, "label_convention": str (optional),
                "sha256": {"t1": hex, ..., "label": hex} (optional)}]}

Paths inside cases are relative to ``root``. A 4D file (MSD Task01) is referenced once per modality with the
channel that holds it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from volrob.data.labels import CONVENTIONS
from volrob.errors import DataError
from volrob.io import atomic_write_text

FORMAT = "volrob-manifest"
VERSION = 1
MODALITIES: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")
SPLITS: tuple[str, ...] = ("train", "val", "test", "unlabelled")
LAYOUTS: tuple[str, ...] = ("brats2021", "brats2023", "msd", "synthetic")


@dataclass(frozen=True)
class ImageRef:
    """One modality of one case: a file, and the channel to take when the file is 4D."""

    path: str
    channel: int | None = None

    def to_json(self) -> str | dict[str, Any]:
        return self.path if self.channel is None else {"path": self.path, "channel": self.channel}


@dataclass
class Case:
    """One subject: modality images, optional label, split, convention and optional hashes."""

    id: str
    split: str
    images: dict[str, ImageRef]
    label: str | None
    label_convention: str
    sha256: dict[str, str] = field(default_factory=dict)

    def to_json(self, default_convention: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "split": self.split,
            "images": {m: ref.to_json() for m, ref in self.images.items()},
            "label": self.label,
        }
        if self.label_convention != default_convention:
            out["label_convention"] = self.label_convention
        if self.sha256:
            out["sha256"] = dict(self.sha256)
        return out


@dataclass
class Manifest:
    """A validated manifest; ``path`` is where it was read from (None when built in memory)."""

    name: str
    layout: str
    root: str
    label_convention: str
    modalities: tuple[str, ...]
    cases: list[Case]
    path: Path | None = None

    @property
    def root_dir(self) -> Path:
        """Absolute data root: ``root`` resolved against the manifest's folder."""
        base = self.path.parent if self.path is not None else Path.cwd()
        return (base / self.root).resolve()

    def resolve(self, rel: str) -> Path:
        """Absolute path of a file named inside a case."""
        p = Path(rel)
        return p if p.is_absolute() else self.root_dir / p

    def split(self, *names: str) -> list[Case]:
        """Cases whose split is one of ``names`` (all cases when none are given)."""
        for n in names:
            if n not in SPLITS:
                raise DataError(f"unknown split {n!r}; choose one of {list(SPLITS)}", path=self.path)
        return [c for c in self.cases if not names or c.split in names]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "name": self.name,
            "layout": self.layout,
            "root": self.root,
            "label_convention": self.label_convention,
            "modalities": list(self.modalities),
            "cases": [c.to_json(self.label_convention) for c in self.cases],
        }

    def save(self, path: str | Path) -> Path:
        """Write the manifest atomically; ``root`` is kept as given (relative to the new file's folder)."""
        path = Path(path)
        atomic_write_text(path, json.dumps(self.to_json(), indent=2) + "\n")
        self.path = path
        return path

    def digest(self) -> str:
        """sha256 of the canonical JSON form: identifies the data a model was trained on."""
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _require(cond: bool, where: str, what: str, path: Path | None) -> None:
    if not cond:
        raise DataError(f"{where}: {what}", path=path)


def _parse_ref(value: Any, where: str, path: Path | None) -> ImageRef:
    if isinstance(value, str) and value:
        return ImageRef(value)
    if isinstance(value, dict) and isinstance(value.get("path"), str):
        ch = value.get("channel")
        _require(ch is None or (isinstance(ch, int) and ch >= 0), where, "channel must be an int >= 0", path)
        _require(set(value) <= {"path", "channel"}, where, f"unknown keys {sorted(set(value) - {'path', 'channel'})}",
                 path)
        return ImageRef(value["path"], ch)
    raise DataError(f"{where}: must be a path string or {{'path': str, 'channel': int}}", path=path)


def manifest_from_json(data: Any, path: Path | None = None) -> Manifest:
    """Validate the structure of a parsed manifest (not the files it names: see ``volrob.data.checks``)."""
    _require(isinstance(data, dict), "manifest", "top level must be a JSON object", path)
    _require(data.get("format") == FORMAT, "format", f"must be {FORMAT!r}, got {data.get('format')!r}", path)
    _require(data.get("version") == VERSION, "version", f"must be {VERSION}, got {data.get('version')!r}", path)
    layout = data.get("layout", "synthetic")
    _require(layout in LAYOUTS, "layout", f"must be one of {list(LAYOUTS)}, got {layout!r}", path)
    conv = data.get("label_convention")
    _require(conv in CONVENTIONS, "label_convention", f"must be one of {sorted(CONVENTIONS)}, got {conv!r}", path)
    mods = data.get("modalities", list(MODALITIES))
    _require(isinstance(mods, list) and len(mods) > 0 and all(isinstance(m, str) for m in mods)
             and len(set(mods)) == len(mods), "modalities", "must be a non-empty list of distinct names", path)
    root = data.get("root", ".")
    _require(isinstance(root, str), "root", "must be a string", path)
    cases_raw = data.get("cases")
    _require(isinstance(cases_raw, list) and len(cases_raw) > 0, "cases", "must be a non-empty list", path)
    cases: list[Case] = []
    seen: set[str] = set()
    for i, raw in enumerate(cases_raw):
        where = f"cases[{i}]"
        _require(isinstance(raw, dict), where, "must be an object", path)
        cid = raw.get("id")
        _require(isinstance(cid, str) and cid != "", where, "id must be a non-empty string", path)
        where = f"case {cid!r}"
        _require(cid not in seen, where, "duplicate case id", path)
        seen.add(cid)
        extra = set(raw) - {"id", "split", "images", "label", "label_convention", "sha256"}
        _require(not extra, where, f"unknown keys {sorted(extra)}", path)
        split = raw.get("split", "train")
        _require(split in SPLITS, where, f"split must be one of {list(SPLITS)}, got {split!r}", path)
        imgs = raw.get("images")
        _require(isinstance(imgs, dict), where, "images must be an object of modality -> path", path)
        missing = [m for m in mods if m not in imgs]
        _require(not missing, where, f"missing modality {', '.join(missing)}", path)
        unknown = [m for m in imgs if m not in mods]
        _require(not unknown, where, f"modality {', '.join(unknown)} not in the manifest's modalities", path)
        images = {m: _parse_ref(imgs[m], f"{where} images.{m}", path) for m in mods}
        label = raw.get("label")
        _require(label is None or (isinstance(label, str) and label), where, "label must be a path or null", path)
        _require(label is not None or split == "unlabelled", where,
                 "label is null but split is not 'unlabelled'", path)
        cconv = raw.get("label_convention", conv)
        _require(cconv in CONVENTIONS, where, f"label_convention must be one of {sorted(CONVENTIONS)}", path)
        hashes = raw.get("sha256", {})
        _require(isinstance(hashes, dict) and all(isinstance(v, str) and len(v) == 64 for v in hashes.values()),
                 where, "sha256 must map modality/label to 64-hex-digit strings", path)
        _require(set(hashes) <= {*mods, "label"}, where, "sha256 keys must be modalities or 'label'", path)
        cases.append(Case(cid, split, images, label, cconv, dict(hashes)))
    return Manifest(str(data.get("name", "")), layout, root, conv, tuple(mods), cases, path)


def load_manifest(path: str | Path) -> Manifest:
    """Read and structurally validate a manifest file; errors name the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise DataError("manifest file does not exist", path=path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"not valid JSON ({err})", path=path) from None
    return manifest_from_json(data, path)


def split_cases(manifest: Manifest, split: str, modalities: list[str] | tuple[str, ...]) -> list[Case]:
    """The cases of ``split`` for a model fed ``modalities``, labelled or not (unlabelled cases are for inference
    and attacks without scores): the split must be non-empty and the manifest's modality order the model's."""
    cases = manifest.split(split)
    if not cases:
        raise DataError(f"no cases in split {split!r}", path=manifest.path)
    if list(manifest.modalities) != list(modalities):
        raise DataError(f"manifest modalities {list(manifest.modalities)} differ from the model's "
                        f"{list(modalities)}", path=manifest.path)
    return cases


def labelled_cases(manifest: Manifest, split: str, modalities: list[str] | tuple[str, ...]) -> list[Case]:
    """The cases of ``split`` for scoring a model fed ``modalities``: the split must be non-empty, every case
    labelled, and the manifest's modality order the model's."""
    cases = manifest.split(split)
    if not cases:
        raise DataError(f"no cases in split {split!r}", path=manifest.path)
    unlabelled = [c.id for c in cases if c.label is None]
    if unlabelled:
        raise DataError(f"split {split!r} has cases without labels ({', '.join(unlabelled[:3])}); scoring needs "
                        "ground truth", path=manifest.path)
    if list(manifest.modalities) != list(modalities):
        raise DataError(f"manifest modalities {list(manifest.modalities)} differ from the model's "
                        f"{list(modalities)}", path=manifest.path)
    return cases
