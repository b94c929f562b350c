"""What every attack is: a configured object called on ``(predictor, x, target)`` that returns the adversarial
input and a JSON-serialisable record of how it was made.

Contract (tested for every registered attack):
- ``x`` is ``(B, C, *spatial)`` in the ``[0, 1]`` attack space and is never modified in place;
- a per-sample ``eps`` (see :class:`ThreatModel`) must have one value per sample of ``x``; each sample is attacked
  under its own scalar budget (:meth:`RunContext.for_sample`), so it gives the same result as attacked alone;
- ``x_adv`` stays in the threat set (budget, valid range, region) of the attack's :class:`ThreatModel`, except for
  attacks without a voxel budget (VAFA), which say so in their record;
- the same seed gives the same ``x_adv``; a sample attacked alone equals the same sample attacked in a batch;
- ``target`` follows the predictor's ``output_mode`` (see :mod:`volrob.attacks.losses`): the ground truth for
  untargeted attacks, the wanted output for targeted ones;
- an attack is **stateless**: configured once in ``__init__``, it never assigns an attribute afterwards. What one
  call resolves (the output mode, the loss, a sample's scalar threat, the progress counter) travels in a
  :class:`RunContext` handed to the hooks, so one object can serve several threads at once;
- ``progress(done, total)`` (a :data:`StepProgress`), when given, is called after each unit of work of the call
  (:meth:`Attack.progress_total` says how many there are); its exceptions propagate.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import torch

from volrob.attacks.threat import ThreatModel
from volrob.errors import ConfigError

T = TypeVar("T")

StepProgress = Callable[[int, int], None]
"""``progress(done, total)``: ``done`` units of work of ``total`` are finished (``1 <= done <= total``)."""


@dataclass
class AttackResult:
    """The adversarial input and its record (parameters, threat model, seed, per-step loss, final norms, time)."""

    x_adv: torch.Tensor
    record: dict[str, Any]


class StepCounter:
    """The progress of one call: counts units of work and reports ``progress(done, total)`` after each.

    Created per call (never stored on an attack). ``done`` rises strictly from 1 to ``total``; ``total`` is fixed
    before the first unit. With ``total == 0`` nothing is ever reported.
    """

    def __init__(self, total: int, progress: StepProgress | None = None) -> None:
        if isinstance(total, bool) or not isinstance(total, int) or total < 0:
            raise ConfigError(f"attack: progress total must be an integer >= 0, got {total!r}")
        if progress is not None and not callable(progress):
            raise ConfigError(f"attack: progress must be a callable progress(done, total), got "
                              f"{type(progress).__name__}")
        self.total = total
        self.done = 0
        self._progress = progress

    def advance(self, units: int = 1) -> None:
        """``units`` more units are finished: report the new count."""
        if units < 1 or self.done + units > self.total:
            raise RuntimeError(f"attack progress: cannot advance {units} unit(s) from {self.done} of {self.total}")
        self.done += units
        if self._progress is not None:
            self._progress(self.done, self.total)


@dataclass(frozen=True)
class RunContext:
    """What one call of an attack resolved, handed to its hooks (never stored on the attack).

    ``threat``: the call's threat model; inside one sample's attack (:meth:`for_sample`) that sample's scalar-budget
    threat model. ``mode``: the predictor's ``output_mode``. ``counter``: this call's progress. ``loss_fn``: the
    attack loss resolved for ``mode`` (None for attacks with a fixed objective). ``objective``: the per-sample
    objective the loop differentiates, averaged over an ensemble's members (None where an attack has none).
    """

    threat: ThreatModel
    mode: str
    counter: StepCounter
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    objective: Callable[..., torch.Tensor] | None = None

    def for_sample(self, index: int) -> RunContext:
        """This context with sample ``index``'s scalar-budget threat model (itself for a scalar ``eps``)."""
        threat = self.threat.for_sample(index)
        return self if threat is self.threat else dataclasses.replace(self, threat=threat)


class Attack(abc.ABC):
    """Base class; subclasses register with ``@register_attack`` and implement :meth:`run` and
    :meth:`progress_total`."""

    name: ClassVar[str] = "attack"
    targeted: ClassVar[bool] = False
    model_access: ClassVar[str] = "gradient"
    """How the attack uses the model: ``gradient`` (input gradients), ``queries`` (outputs only) or ``none``
    (noise and given perturbations); what cost estimates and sanity checks go by."""

    def __init__(self, *, threat: ThreatModel | None = None, seed: int = 0) -> None:
        self.threat = threat or ThreatModel()
        self.seed = int(seed)

    @abc.abstractmethod
    def run(self, predictor: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, *,
            progress: StepProgress | None = None) -> AttackResult:
        """Attack a batch; see the module docstring for the contract."""

    @abc.abstractmethod
    def progress_total(self, batch: int) -> int:
        """Units of work of one call on ``batch`` samples: the ``total`` reported to ``progress``."""

    def __call__(self, predictor: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, *,
                 progress: StepProgress | None = None) -> AttackResult:
        return self.run(predictor, x, target, progress=progress)

    def per_sample_value(self, fn: Callable[[ThreatModel], T]) -> T | list[T]:
        """``fn(threat)`` for a scalar ``eps``; for a per-sample ``eps`` the list of ``fn`` over each sample's
        scalar-budget threat model (how eps-derived parameters such as a default step size are recorded)."""
        if not isinstance(self.threat.eps, tuple):
            return fn(self.threat)
        return [fn(self.threat.for_sample(i)) for i in range(len(self.threat.eps))]

    def params(self) -> dict[str, Any]:
        """The attack's own parameters (JSON-serialisable), recorded with every result."""
        return {}

    def describe(self) -> dict[str, Any]:
        """Name, parameters, threat model and seed: enough to replay the attack."""
        return {"attack": self.name, "params": self.params(), "threat": self.threat.to_dict(), "seed": self.seed,
                "targeted": self.targeted}
