"""The one case source of every run: manifest → selected cases → preprocessed tensors and targets. Cases without
a label (the manifest's ``unlabelled`` split) are prepared too: they are segmented and attacked, never scored.

A case is read and preprocessed once per preprocessing and kept while the units of that case run (the kernel
processes units case by case), so however many cells and targets a run has, each (case, preprocessing) is
prepared once per process. :attr:`CaseSource.prepared_count` counts it (tests rely on that).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from volrob.data.cases import CaseData, load_case
from volrob.data.labels import canonical_to_regions
from volrob.data.manifest import Case, Manifest, load_manifest, split_cases
from volrob.data.preprocess import PreprocessConfig, Preprocessed, preprocess
from volrob.errors import ConfigError, DataError


@dataclass
class PreparedCase:
    """One case ready for every model that shares ``preprocessing``.

    ``x``: ``(1, C, *spatial)`` float32 in the [0, 1] attack space (CPU); ``label``: ``(1, 1, *spatial)``
    canonical classes on the same grid; ``gt``: boolean regions ``(3, i, j, k)`` on the source grid (what every
    score is computed against); ``pre``: the invertible preprocessing (to map predictions back). ``label`` and
    ``gt`` are None for an unlabelled case.
    """

    case: Case
    data: CaseData
    pre: Preprocessed
    preprocessing: PreprocessConfig
    x: torch.Tensor
    label: torch.Tensor | None
    gt: np.ndarray | None

    @property
    def labelled(self) -> bool:
        return self.label is not None

    @property
    def label_empty(self) -> bool:
        """A label map with no tumour at all (its scores follow the empty policy; runs record it as a warning)."""
        return self.data.label is not None and not np.any(self.data.label)

    def target(self, output_mode: str, label: torch.Tensor | None = None) -> torch.Tensor:
        """The attack target for a predictor's output mode: region masks or class indices of the case's label (or
        of ``label``, canonical ``(1, 1, *spatial)``, e.g. a model's clean prediction of an unlabelled case)."""
        lab = self.label if label is None else label
        if lab is None:
            raise DataError(f"case {self.case.id} has no label to attack towards")
        return canonical_to_regions(lab).float() if output_mode == "regions" else lab.long()


def select_cases(cases: list[Case], ids: Sequence[str] | None, max_cases: int | None, where: Path | None
                 ) -> list[Case]:
    """The cases named by ``ids`` (in that order; an unknown id is an error) or the first ``max_cases``."""
    if ids is not None:
        known = {c.id: c for c in cases}
        missing = [i for i in ids if i not in known]
        if missing:
            raise DataError(f"cases: {missing[:3]} not in the split (it holds {len(cases)} case(s), e.g. "
                            f"{[c.id for c in cases[:3]]})", path=where)
        cases = [known[i] for i in ids]
    if max_cases is not None:
        if max_cases < 1:
            raise ConfigError(f"max_cases must be a positive integer, got {max_cases}")
        cases = cases[:max_cases]
    return cases


class CaseSource:
    """The labelled cases of ``split`` (optionally a named subset or the first ``max_cases``), prepared on demand."""

    def __init__(self, manifest: str | Path | Manifest, split: str, modalities: Sequence[str], *,
                 cases: Sequence[str] | None = None, max_cases: int | None = None) -> None:
        self.manifest = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
        self.split = split
        self.cases = select_cases(split_cases(self.manifest, split, list(modalities)), cases, max_cases,
                                  self.manifest.path)
        self._by_id = {c.id: c for c in self.cases}
        self._data: tuple[str, CaseData] | None = None
        self._prepared: dict[str, PreparedCase] = {}
        self.prepared_count: Counter[tuple[str, str]] = Counter()

    @property
    def ids(self) -> list[str]:
        return [c.id for c in self.cases]

    def entry_digest(self, case_id: str) -> str:
        """A digest of the case's manifest entry (files, label, split, hashes): what the unit's scores depend on."""
        import hashlib

        entry = self._by_id[case_id].to_json(self.manifest.label_convention)
        text = json.dumps({"root": str(self.manifest.root_dir), "entry": entry}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def prepare(self, case_id: str, preprocessing: PreprocessConfig) -> PreparedCase:
        """The case under ``preprocessing``: read once, preprocessed once per preprocessing while it is current.
        A case that cannot be read raises :class:`~volrob.errors.DataError` naming the file."""
        key = json.dumps(preprocessing.to_dict(), sort_keys=True)
        if self._data is None or self._data[0] != case_id:
            self.release()
            self._data = (case_id, load_case(self.manifest, self._by_id[case_id]))
        if key not in self._prepared:
            data = self._data[1]
            p = preprocess(data.image, data.label, data.affine, preprocessing)
            self.prepared_count[(case_id, key)] += 1
            label = p.label.as_tensor()[None] if p.label is not None else None
            gt = canonical_to_regions(data.label) if data.label is not None else None
            self._prepared[key] = PreparedCase(self._by_id[case_id], data, p, preprocessing,
                                               p.image.as_tensor()[None].float(), label, gt)
        return self._prepared[key]

    def release(self) -> None:
        """Forget the current case (its arrays are freed once no unit holds them)."""
        self._data = None
        self._prepared = {}
