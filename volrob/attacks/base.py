"""What every attack is: a configured object called on ``(predictor, x, target)`` that returns the adversarial
input and a JSON-serialisable record of how it was made.

Contract (tested for every registered attack):
- ``x`` is ``(B, C, *spatial)`` in the ``[0, 1]`` attack space and is never modified in place;
- ``x_adv`` stays in the threat set (budget, valid range, region) of the attack's :class:`ThreatModel`, except for
  attacks without a voxel budget (VAFA), which say so in their record;
- the same seed gives the same ``x_adv``; a sample attacked alone equals the same sample attacked in a batch;
- ``target`` follows the predictor's ``output_mode`` (see :mod:`volrob.attacks.losses`): the ground truth for
  untargeted attacks, the wanted output for targeted ones.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from volrob.attacks.threat import ThreatModel


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

    def params(self) -> dict[str, Any]:
        """The attack's own parameters (JSON-serialisable), recorded with every result."""
        return {}

    def describe(self) -> dict[str, Any]:
        """Name, parameters, threat model and seed: enough to replay the attack."""
        return {"attack": self.name, "params": self.params(), "threat": self.threat.to_dict(), "seed": self.seed,
                "targeted": self.targeted}
