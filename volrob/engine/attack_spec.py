"""One attack entry of a run config: options, budgets (an ``eps`` list or a one-key sweep), its
validation, and the stable id of each of its cells."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from volrob import attacks
from volrob.errors import ConfigError
from volrob.inference.predictor import SlidingWindowConfig

LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
"""What a model label may look like (it becomes part of folder names)."""


@dataclass
class AttackSpec:
    """One attack: fixed ``options`` plus either an ``eps`` list or a one-key ``sweep`` (or neither: one cell).

    ``window`` overrides the grid's sliding-window settings for this attack only, e.g. ``{gradient: tiles}`` to
    craft with the published tile protocol (scoring always uses blended overlapping windows).
    """

    attack: str
    options: dict[str, Any] = field(default_factory=dict)
    eps: list[float] | None = None
    sweep: dict[str, Any] | None = None
    window: dict[str, Any] = field(default_factory=dict)


def check_attack(a: AttackSpec, where: str) -> None:
    """ConfigError (prefixed by ``where``) unless every budget of ``a`` builds a valid attack."""
    if "seed" in a.options:
        raise ConfigError(f"{where}.options: give the seed at the top level, not as an attack option")
    if not isinstance(a.window, dict):
        raise ConfigError(f"{where}.window: expected a mapping of sliding-window settings, got {a.window!r}")
    try:
        SlidingWindowConfig.from_dict({**SlidingWindowConfig().to_dict(), **a.window})
    except ConfigError as err:
        raise ConfigError(f"{where}.window: {err}") from None
    if a.eps is not None and a.sweep is not None:
        raise ConfigError(f"{where}: give eps or sweep, not both")
    if a.eps is not None and (not a.eps or "eps" in a.options):
        raise ConfigError(f"{where}.eps: must be a non-empty list and eps must not also be in options")
    if a.sweep is not None:
        if len(a.sweep) != 1:
            raise ConfigError(f"{where}.sweep: expected exactly one key, got {sorted(a.sweep)}")
        ((key, values),) = a.sweep.items()
        if not isinstance(values, list) or not values or key in a.options or key == "seed":
            raise ConfigError(f"{where}.sweep.{key}: expected a non-empty list of values for a key not in options")
    cells = budgets(a)
    if len({json.dumps(v, sort_keys=True) for _, v in cells}) != len(cells):
        raise ConfigError(f"{where}: budget values repeat")
    for key, value in cells:
        opts = {**a.options, **({key: value} if key else {})}
        try:
            attacks.create(a.attack, **opts, seed=0)
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{where}: {a.attack} rejects options {opts}: {err}") from None


def budgets(a: AttackSpec) -> list[tuple[str | None, Any]]:
    """``(budget key, value)`` per cell of ``a``: eps values, sweep values, or one ``(None, None)``."""
    if a.eps is not None:
        return [("eps", v) for v in a.eps]
    if a.sweep is not None:
        ((key, values),) = a.sweep.items()
        return [(key, v) for v in values]
    return [(None, None)]


def _token(value: Any) -> str:
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return re.sub(r"[^A-Za-z0-9.-]+", "-", text)


def cell_id(model: str, attack: str, options: dict[str, Any], budget_key: str | None, budget: Any,
            window: dict[str, Any] | None = None) -> str:
    """``<model>__<attack>[__<key><value>]__<8-hex hash of attack, full options and any per-attack window>``."""
    key: dict[str, Any] = {"attack": attack, "options": options}
    if window:
        key["window"] = window
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode())
    parts = [model, attack] + ([f"{budget_key}{_token(budget)}"] if budget_key else []) + [digest.hexdigest()[:8]]
    return "__".join(parts)



