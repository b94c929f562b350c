"""What every attack is: a configured object called on ``(predictor, x, target)`` that returns the adversarial
input and a JSON-serialisable record of how it was made.

Contract (tested for every registered attack):
- ``x`` is ``(B, C, *spatial)`` in the ``[0, 1]`` attack space and is never modified in place;
- a per-sample ``eps`` (see :class:`ThreatModel`) must have one value per sample of ``x``; each sample is attacked
  under its own scalar budget (:meth:`Attack.sample_threat`), so it gives the same result as attacked alone;
- ``x_adv`` stays in the threat set (budget, valid range, region) of the attack's :class:`ThreatModel`, except for
  attacks without a voxel budget (VAFA), which say so in their record;
- the same seed gives the same ``x_adv``; a sample attacked alone equals the same sample attacked in a batch;
- ``target`` follows the predictor's ``output_mode`` (see :mod:`volrob.attacks.losses`): the ground truth for
  untargeted attacks, the wanted output for targeted ones.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import torch

from volrob.attacks.threat import ThreatModel

T = TypeVar("T")


@dataclass
class AttackResult:
    """The adversarial input and its record (parameters, threat model, seed, per-step loss, final norms, time)."""

    x_adv: torch.Tensor
    record: dict[str, Any]


class Attack(abc.ABC):
    """Base class; subclasses register with ``@register_attack`` and implement :meth:`run`."""

    name: ClassVar[str] = "attack"
    targeted: ClassVar[bool] = False

    def __init__(self, *, threat: ThreatModel | None = None, seed: int = 0) -> None:
        self.threat = threat or ThreatModel()
        self.seed = int(seed)

    @abc.abstractmethod
    def run(self, predictor: torch.nn.Module, x: torch.Tensor, target: torch.Tensor) -> AttackResult:
        """Attack a batch; see the module docstring for the contract."""

    def __call__(self, predictor: torch.nn.Module, x: torch.Tensor, target: torch.Tensor) -> AttackResult:
        return self.run(predictor, x, target)

    @contextlib.contextmanager
    def sample_threat(self, index: int) -> Iterator[ThreatModel]:
        """Within the block ``self.threat`` is sample ``index``'s scalar-budget threat model; restored afterwards."""
        full = self.threat
        self.threat = full.for_sample(index)
        try:
            yield self.threat
        finally:
            self.threat = full

    def per_sample_value(self, fn: Callable[[], T]) -> T | list[T]:
        """``fn()`` for a scalar ``eps``; for a per-sample ``eps`` the list of ``fn()`` under each sample's budget
        (how eps-derived parameters such as a default step size are recorded)."""
        if not isinstance(self.threat.eps, tuple):
            return fn()
        out = []
        for i in range(len(self.threat.eps)):
            with self.sample_threat(i):
                out.append(fn())
        return out

    def params(self) -> dict[str, Any]:
        """The attack's own parameters (JSON-serialisable), recorded with every result."""
        return {}

    def describe(self) -> dict[str, Any]:
        """Name, parameters, threat model and seed: enough to replay the attack."""
        return {"attack": self.name, "params": self.params(), "threat": self.threat.to_dict(), "seed": self.seed,
                "targeted": self.targeted}
