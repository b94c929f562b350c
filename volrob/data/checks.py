"""Check every case of a manifest against its files and report a verdict per case.

Per case: every file exists and is readable; images are 3D (or 4D with a channel) and finite; all modalities share
shape, spacing and affine (within ``AFFINE_ATOL``); the label agrees with the images and holds only values its
convention allows; recorded sha256 hashes match.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from volrob.data.cases import inspect_case
from volrob.data.manifest import Manifest

EMPTY_LABEL = "label map is empty (no tumour): its scores follow the empty policy (docs/metrics.md)"


@dataclass
class CaseVerdict:
    """The outcome of checking one case: every problem is one line naming its file."""

    case_id: str
    split: str
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def iter_verdicts(manifest: Manifest, *, verify_hashes: bool = True, backend: str = "nibabel") -> Iterator[CaseVerdict]:
    """Check the cases one at a time (for progress output on large datasets)."""
    for case in manifest.cases:
        data, problems = inspect_case(manifest, case, backend=backend, verify_hashes=verify_hashes, keep=True)
        empty = data is not None and data.label is not None and not np.any(data.label)
        warnings = [f"{manifest.resolve(case.label)}: {EMPTY_LABEL}"] if empty and case.label is not None else []
        yield CaseVerdict(case.id, case.split, [str(p) for p in problems], warnings)


def check_manifest(manifest: Manifest, *, verify_hashes: bool = True, backend: str = "nibabel") -> list[CaseVerdict]:
    """Check every case of ``manifest``; one :class:`CaseVerdict` per case, in manifest order."""
    return list(iter_verdicts(manifest, verify_hashes=verify_hashes, backend=backend))


def format_verdict(verdict: CaseVerdict, id_width: int = 0) -> str:
    """One case as table rows: status, id, split, then its problems (one per line, aligned)."""
    status = "FAIL" if not verdict.ok else "WARN" if verdict.warnings else "OK"
    head = f"{status:<6} {verdict.case_id:<{id_width}}  {verdict.split:<10}"
    lines = verdict.problems or [f"warning: {w}" for w in verdict.warnings]
    if not lines:
        return head.rstrip()
    pad = " " * len(head)
    return "\n".join(f"{head if i == 0 else pad}  {p}" for i, p in enumerate(lines))


def summarize(verdicts: Iterable[CaseVerdict]) -> str:
    """One summary line: cases checked, how many passed and failed, problems in total."""
    verdicts = list(verdicts)
    failed = [v for v in verdicts if not v.ok]
    n_problems = sum(len(v.problems) for v in failed)
    warned = [v for v in verdicts if v.ok and v.warnings]
    tail = f"; {len(warned)} with warnings ({', '.join(v.case_id for v in warned[:5])}" \
           f"{', ...' if len(warned) > 5 else ''})" if warned else ""
    return (f"{len(verdicts)} case(s) checked: {len(verdicts) - len(failed)} OK, {len(failed)} with problems"
            f" ({n_problems} problem(s)){tail}")


def format_verdicts(verdicts: Iterable[CaseVerdict]) -> str:
    """A readable per-case table followed by the summary line."""
    verdicts = list(verdicts)
    width = max((len(v.case_id) for v in verdicts), default=4)
    rows = [f"{'STATUS':<6} {'CASE':<{width}}  {'SPLIT':<10}  PROBLEMS".rstrip()]
    rows += [format_verdict(v, width) for v in verdicts]
    return "\n".join([*rows, summarize(verdicts)])
