"""Cells and units of work.

A **cell** is one way of attacking: a source model (or ensemble) that crafts, an attack with its full options and
the budget that distinguishes it, the crafting window, and the targets its perturbations are scored on (the source
itself in a white-box grid, every target in a transfer matrix). A **unit of work** is a (cell, case) pair; a
**clean unit** is a (model, case) pair, computed once per run whatever the number of cells and targets.

A cell id is ``<source>__<attack>[__<key><value>]__<8-hex hash of attack, options and crafting window>``: stable
across runs and configs, never derived from the order of anything.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from volrob.engine.attack_spec import budgets, cell_id
from volrob.errors import ConfigError

if TYPE_CHECKING:
    from volrob.engine.config import RunConfig


@dataclass(frozen=True)
class Cell:
    """One (source, attack, budget) and the targets it is scored on."""

    id: str
    source: str
    targets: tuple[str, ...]
    attack: str
    options: dict[str, Any]
    budget_key: str | None
    budget: Any
    window: dict[str, Any] = field(default_factory=dict)
    """Crafting window overrides of this attack (on top of the run's window)."""
    fingerprint: dict[str, Any] = field(default_factory=dict)
    """Anything else that makes the cell's results what they are (e.g. the hash of a learned perturbation)."""
    resources: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """Run-time keyword arguments of the attack that are not configuration (e.g. a learned perturbation tensor);
    recorded through ``fingerprint``, never in ids or tables."""

    def create_attack(self, seed: int) -> Any:
        """The configured attack object of this cell, seeded with ``seed``."""
        from volrob import attacks

        return attacks.create(self.attack, **self.options, **self.resources, seed=seed)

    def eps(self) -> float | None:
        """The voxel budget ``eps`` (1/255 units), or None for attacks without one (VAFA's budget is its
        quantisation ceiling)."""
        from volrob.attacks.registry import ATTACKS

        if "eps" not in inspect.signature(ATTACKS.entry(self.attack).builder).parameters:
            return None
        eps = self.create_attack(0).threat.eps
        return None if eps is None or isinstance(eps, tuple) else float(eps)

    def spec(self) -> dict[str, Any]:
        """The cell's parameters as recorded in each unit file and compared on resume."""
        return {"cell": self.id, "source": self.source, "attack": self.attack,
                "options": json.loads(json.dumps(self.options, sort_keys=True, default=str)),
                "window": dict(self.window), **({"fingerprint": self.fingerprint} if self.fingerprint else {})}


@dataclass(frozen=True)
class Unit:
    """A (cell, case) pair."""

    cell: Cell
    case: str

    @property
    def key(self) -> str:
        return f"{self.cell.id}/{self.case}"


@dataclass(frozen=True)
class CleanUnit:
    """A (model, case) pair: the clean prediction and scores, shared by every cell."""

    model: str
    case: str

    @property
    def key(self) -> str:
        return f"clean/{self.model}/{self.case}"


def expand(cfg: RunConfig, extra: list[Cell] | None = None) -> list[Cell]:
    """Every source × attack × budget of ``cfg`` in config order, then ``extra`` (cells a run adds itself, such as
    the universal perturbation's); ids are unique."""
    cells: list[Cell] = []
    for source in cfg.source_names if cfg.attacks else []:
        targets = tuple(cfg.target_names) if cfg.transfer else (source,)
        for a in cfg.attacks:
            for key, value in budgets(a):
                opts = {**a.options, **({key: value} if key else {})}
                cells.append(Cell(cell_id(source, a.attack, opts, key, value, a.window), source, targets, a.attack,
                                  opts, key, value, dict(a.window)))
    cells += list(extra or [])
    ids = [c.id for c in cells]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ConfigError(f"attacks: the same attack and options appear twice (cell {dup[0]})")
    return cells


def clean_units(cells: list[Cell], models: list[str], cases: list[str]) -> list[CleanUnit]:
    """The clean units a run needs: every scored model (each cell's targets, plus ``models`` scored on their own,
    as in an evaluation) on every case, once."""
    wanted = list(models)
    for c in cells:
        wanted += [t for t in c.targets if t not in wanted]
    return [CleanUnit(m, case) for m in dict.fromkeys(wanted) for case in cases]
