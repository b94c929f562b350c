"""The shared iterative gradient loop behind every pixel-space attack (FGSM, BIM, PGD and their variants).

One step: ``x_adv <- project(x_adv ± alpha * direction(∇_x loss))`` where ``direction`` is the sign of the gradient
(L∞) or the gradient divided by its per-sample L2 norm (L2), and ``project`` is the threat model's projection
(budget ball, region, valid range). Targeted attacks descend the loss to the target instead of ascending it.

Design choices (all tested):
- Samples are attacked **one at a time** (the predictor sees ``(1, C, *spatial)``): a sample's result is bitwise
  the same alone or in a batch (batched convolutions differ in the last bits, and sign steps amplify that), only
  one sample's graph is in memory, and restarts keep the best run per sample. The objective returns ``(B,)``.
- Random starts are drawn on CPU from a ``torch.Generator`` seeded by ``(seed, restart)``, **per sample** with the
  same stream, so a sample attacked alone gets the same start as inside a batch.
- Only the gradient with respect to the input is computed (``torch.autograd.grad``); parameter ``.grad`` fields
  are never touched. The predictor runs in eval mode for the duration and its previous mode is restored.
- ``eps`` and ``alpha`` are in 1/255 units of the ``[0, 1]`` attack space (see :mod:`volrob.attacks.threat`).
- A per-sample ``eps`` is applied by attacking each sample under its own scalar-budget threat model
  (:meth:`~volrob.attacks.base.RunContext.for_sample`): projection, random start and a default ``alpha`` follow that
  sample's budget, an explicit ``alpha`` is the same for all, and the record lists the per-sample values.
- Stateless: :meth:`IterativeAttack.prepare` resolves the per-call things (output mode, loss, the ensemble-aware
  objective, the progress counter) into a :class:`~volrob.attacks.base.RunContext` that every hook receives first.
  Hooks :meth:`IterativeAttack.transform_input` (input diversity) and :meth:`IterativeAttack.transform_gradient`
  (momentum) also get a state dict that is fresh per sample and restart. An ensemble predictor
  (:class:`~volrob.inference.ensemble.EnsemblePredictor`) is attacked through the weighted mean of the members'
  objectives (:func:`~volrob.attacks.losses.member_mean`).
- Progress: one unit per gradient step of one restart of one sample (``steps * restarts * batch`` in all).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import numbers
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from volrob.attacks.base import Attack, AttackResult, RunContext, StepCounter, StepProgress
from volrob.attacks.losses import LossFn, member_mean, resolve_loss
from volrob.attacks.threat import ThreatModel
from volrob.errors import ConfigError


def build_threat(threat: ThreatModel | None, eps: float | Sequence[float] | torch.Tensor | None, norm: str | None,
                 mask: str | None) -> ThreatModel:
    """``threat`` as given, or one built from ``eps`` (a number or one per sample), ``norm``, ``mask`` (defaults 8,
    linf, brain); not both."""
    if threat is not None:
        if any(v is not None for v in (eps, norm, mask)):
            raise ConfigError("attack: give either threat or eps/norm/mask, not both")
        if not isinstance(threat, ThreatModel):
            raise ConfigError(f"attack: threat must be a ThreatModel, got {type(threat).__name__}")
        return threat
    if eps is None:
        eps = 8.0
    elif isinstance(eps, numbers.Real) and not isinstance(eps, bool):
        eps = float(eps)
    return ThreatModel(eps=eps, norm=norm or "linf", mask=mask or "brain")


_EVAL_LOCK = threading.Lock()
_EVAL_USERS: weakref.WeakKeyDictionary[torch.nn.Module, tuple[int, bool]] = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def eval_mode(module: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Put ``module`` in eval mode for the block; restore its previous training flag afterwards. Blocks that
    overlap on one module (attacks running in several threads on one predictor) restore it when the last ends."""
    with _EVAL_LOCK:
        users, was_training = _EVAL_USERS.get(module, (0, module.training))
        _EVAL_USERS[module] = (users + 1, was_training)
        module.eval()
    try:
        yield module
    finally:
        with _EVAL_LOCK:
            users, was_training = _EVAL_USERS.pop(module)
            if users > 1:
                _EVAL_USERS[module] = (users - 1, was_training)
            else:
                module.train(was_training)


def output_mode_of(predictor: torch.nn.Module) -> str:
    """The predictor's ``output_mode`` (``regions`` when it does not say)."""
    return str(getattr(predictor, "output_mode", "regions"))


def check_inputs(x: torch.Tensor, target: torch.Tensor, output_mode: str) -> None:
    """ConfigError unless ``x`` is a float ``(B, C, D, H, W)`` batch and ``target`` matches ``output_mode``."""
    if not isinstance(x, torch.Tensor) or x.ndim != 5 or not x.is_floating_point():
        raise ConfigError(f"attack input x must be a float tensor (B, C, D, H, W), got {_shape(x)}")
    if not isinstance(target, torch.Tensor):
        raise ConfigError(f"attack target must be a tensor, got {type(target).__name__}")
    channels = 3 if output_mode == "regions" else 1
    want = (x.shape[0], channels, *x.shape[2:])
    if tuple(target.shape) != want:
        raise ConfigError(f"attack target for {output_mode!r} outputs must have shape {list(want)}, "
                          f"got {list(target.shape)}")


def _shape(x: Any) -> str:
    return str(list(x.shape)) if isinstance(x, torch.Tensor) else type(x).__name__


def per_sample(loss_fn: LossFn, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``(B,)`` vector of ``loss_fn`` evaluated on each sample alone (batch-independent, restart-comparable)."""
    return torch.stack([loss_fn(logits[i:i + 1], target[i:i + 1]).reshape(()) for i in range(logits.shape[0])])


def delta_norms(x: torch.Tensor, x_adv: torch.Tensor) -> dict[str, list[float]]:
    """Per-sample L∞ and L2 norms of ``x_adv - x`` in 1/255 units."""
    d = (x_adv - x).detach().flatten(1).double() * 255.0
    return {"linf_255": d.abs().amax(1).tolist(), "l2_255": d.norm(dim=1).tolist()}


def per_sample_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (random numbers are made on CPU, then moved)."""
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seed))
    return gen


def check_steps(steps: Any, *, minimum: int = 0, name: str = "steps") -> int:
    """``steps`` (or another count called ``name``) as an int ``>= minimum``; anything else is a ConfigError."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < minimum:
        raise ConfigError(f"attack: {name} must be an integer >= {minimum}, got {steps!r}")
    return steps


def check_positive(name: str, value: Any) -> float:
    """``value`` as a float ``> 0``; anything else is a ConfigError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"attack: {name} must be a number > 0 (1/255 units), got {value!r}")
    return float(value)


class IterativeAttack(Attack):
    """Signed-gradient (L∞) or normalised-gradient (L2) iterations with projection; the base of FGSM/BIM/PGD.

    Subclasses set defaults and may override :meth:`objective` (per-sample loss) and :meth:`step_alpha`.
    ``alpha`` defaults to ``alpha_factor * eps / steps`` (set by the subclass).
    """

    alpha_factor: float = 2.5

    def __init__(self, *, eps: float | Sequence[float] | None = None, norm: str | None = None,
                 mask: str | None = None, threat: ThreatModel | None = None, steps: int = 10,
                 alpha: float | None = None, random_start: bool = False, restarts: int = 1,
                 loss: str | LossFn = "auto", seed: int = 0) -> None:
        super().__init__(threat=build_threat(threat, eps, norm, mask), seed=seed)
        self.steps = check_steps(steps)
        self.alpha = None if alpha is None else check_positive("alpha", alpha)
        self.random_start = bool(random_start)
        self.restarts = check_steps(restarts, minimum=1, name="restarts")
        if not (callable(loss) or isinstance(loss, str)):
            raise ConfigError(f"attack: loss must be a name or a callable, got {type(loss).__name__}")
        self.loss = loss

    # -- configuration ---------------------------------------------------------------------------------------
    def alpha_for(self, threat: ThreatModel) -> float:
        """Step size in 1/255 units under one scalar-budget threat model: the explicit ``alpha``, or
        ``alpha_factor * eps / steps``."""
        if self.alpha is not None:
            return self.alpha
        return self.alpha_factor * threat.eps / max(self.steps, 1)

    @property
    def alpha_255(self) -> float | list[float]:
        """Step size in 1/255 units: the explicit ``alpha``, or :meth:`alpha_for` each sample's budget (a list for
        a per-sample ``eps``)."""
        if self.alpha is not None:
            return self.alpha
        return self.per_sample_value(self.alpha_for)

    def params(self) -> dict[str, Any]:
        loss = self.loss if isinstance(self.loss, str) else getattr(self.loss, "__name__", "callable")
        return {"steps": self.steps, "alpha": self.alpha_255, "alpha_units": "1/255",
                "random_start": self.random_start, "restarts": self.restarts, "loss": loss}

    def progress_total(self, batch: int) -> int:
        """One unit per gradient step of every restart of every sample."""
        return self.steps * self.restarts * batch

    # -- hooks (each receives the call's RunContext first) ---------------------------------------------------
    def resolve_loss_fn(self, output_mode: str) -> LossFn | None:
        """The attack loss for ``output_mode`` (None for attacks whose objective does not use one)."""
        return resolve_loss(self.loss, output_mode)

    def prepare(self, predictor: torch.nn.Module, batch: int, progress: StepProgress | None = None) -> RunContext:
        """The per-call context for ``predictor`` and a batch of ``batch`` samples: output mode, resolved loss,
        the ensemble-aware objective and the progress counter."""
        mode = output_mode_of(predictor)
        ctx = RunContext(threat=self.threat, mode=mode, counter=StepCounter(self.progress_total(batch), progress),
                         loss_fn=self.resolve_loss_fn(mode))
        return dataclasses.replace(ctx, objective=member_mean(functools.partial(self.objective, ctx), predictor))

    def objective(self, ctx: RunContext, logits: torch.Tensor, target: torch.Tensor, step: int) -> torch.Tensor:
        """Per-sample loss ``(B,)`` that the attack ascends (untargeted) or descends (targeted)."""
        assert ctx.loss_fn is not None  # resolved by prepare
        return per_sample(ctx.loss_fn, logits, target)

    def step_alpha(self, ctx: RunContext, step: int, logits: torch.Tensor,
                   target: torch.Tensor) -> torch.Tensor | float:
        """Step size in the [0, 1] space for ``step`` of one sample (a float or a one-element tensor)."""
        return self.alpha_for(ctx.threat) / 255.0

    def transform_input(self, ctx: RunContext, x_adv: torch.Tensor, target: torch.Tensor,
                        state: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``(input, target)`` pair the gradient step evaluates (identity here; input diversity overrides).
        ``state`` is fresh for every restart of every sample and holds ``"restart"``."""
        return x_adv, target

    def transform_gradient(self, ctx: RunContext, grad: torch.Tensor, state: dict[str, Any]) -> torch.Tensor:
        """The masked gradient turned into the quantity whose direction is stepped along (identity here; momentum
        overrides). ``state`` as in :meth:`transform_input`."""
        return grad

    # -- the loop --------------------------------------------------------------------------------------------
    def direction(self, ctx: RunContext, grad: torch.Tensor) -> torch.Tensor:
        """Steepest-ascent direction of unit norm in the threat model's norm (``grad`` is already masked)."""
        if ctx.threat.norm == "linf":
            return grad.sign()
        norms = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (grad.ndim - 1)))
        return grad / norms

    def random_init(self, ctx: RunContext, x: torch.Tensor, region: torch.Tensor, restart: int) -> torch.Tensor:
        """A random point of the threat set around ``x``; every sample gets the draw of seed ``(seed, restart)``
        scaled to its own budget."""
        threat = ctx.threat
        threat.check_batch(x.shape[0])
        starts = []
        for i in range(x.shape[0]):
            radius = threat.for_sample(i).radius
            gen = per_sample_generator(self.seed * 1000003 + restart)
            shape = (1, *x.shape[1:])
            if threat.norm == "linf":
                noise = (torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1) * radius
            else:
                noise = torch.randn(shape, generator=gen, dtype=torch.float64)
                scale = radius * torch.rand((), generator=gen, dtype=torch.float64) ** (1.0 / noise.numel())
                noise = noise / noise.norm().clamp_min(1e-12) * scale
            starts.append(noise)
        delta = torch.cat(starts).to(device=x.device, dtype=x.dtype) * region
        return threat.project(x, x + delta, region)

    def run(self, predictor: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, *,
            progress: StepProgress | None = None) -> AttackResult:
        mode = output_mode_of(predictor)
        check_inputs(x, target, mode)
        self.threat.check_batch(x.shape[0])
        ctx = self.prepare(predictor, x.shape[0], progress)
        t0 = time.perf_counter()
        x, target = x.detach(), target.detach()
        outs, histories, finals = [], [], []
        with eval_mode(predictor):
            for i in range(x.shape[0]):  # one sample at a time: bitwise batch-independent, one graph in memory
                x_adv, history, final = self._attack_sample(ctx.for_sample(i), predictor, x[i:i + 1],
                                                            target[i:i + 1])
                outs.append(x_adv)
                histories.append(history)
                finals.append(final)
        x_adv = torch.cat(outs)
        loss = torch.tensor(histories, dtype=torch.float64).mean(0).tolist() if histories[0] else []
        record = {**self.describe(), "loss": loss, "final_loss": finals, **delta_norms(x, x_adv),
                  "seconds": time.perf_counter() - t0}
        return AttackResult(x_adv, record)

    def _attack_sample(self, ctx: RunContext, predictor: torch.nn.Module, x: torch.Tensor,
                       target: torch.Tensor) -> tuple[torch.Tensor, list[float], float]:
        """All restarts on one sample ``(1, C, *spatial)`` under ``ctx.threat`` (its scalar-budget threat model):
        the best ``x_adv``, per-step losses, its final loss."""
        assert ctx.objective is not None  # built by prepare
        threat, objective = ctx.threat, ctx.objective
        region = threat.region(x)
        sign = -1.0 if self.targeted else 1.0
        history: list[float] = []
        best, best_loss = x, float("nan")
        for restart in range(self.restarts):
            x_adv = self.random_init(ctx, x, region, restart) if self.random_start else x.clone()
            state: dict[str, Any] = {"restart": restart}
            for step in range(self.steps):
                x_adv.requires_grad_(True)
                x_in, target_in = self.transform_input(ctx, x_adv, target, state)
                logits = predictor(x_in)
                loss = objective(logits, target_in, step)
                (grad,) = torch.autograd.grad(loss.sum(), x_adv)
                alpha = self.step_alpha(ctx, step, logits.detach(), target_in)
                alpha = float(alpha) if isinstance(alpha, float) else float(alpha.reshape(()))
                history.append(float(loss.detach()))
                with torch.no_grad():
                    ascent = self.transform_gradient(ctx, grad * region, state)
                    x_adv = threat.project(x, x_adv.detach() + sign * alpha * self.direction(ctx, ascent), region)
                ctx.counter.advance()
            with torch.no_grad():
                final = float(objective(predictor(x_adv), target, self.steps))
            better = final < best_loss if self.targeted else final > best_loss
            if restart == 0 or better:
                best, best_loss = x_adv.detach(), final
        return best, history, best_loss


class FixedObjectivePGD(IterativeAttack):
    """PGD (random start, restarts) whose per-voxel objective is fixed by the method, so it takes no ``loss``
    option; subclasses implement :meth:`objective` using ``ctx.mode`` (the predictor's output mode)."""

    alpha_factor = 2.5

    def __init__(self, *, eps: float | Sequence[float] | None = None, norm: str | None = None,
                 mask: str | None = None, threat: ThreatModel | None = None, steps: int = 20,
                 alpha: float | None = None, random_start: bool = True, restarts: int = 1, seed: int = 0) -> None:
        super().__init__(eps=eps, norm=norm, mask=mask, threat=threat, steps=steps, alpha=alpha,
                         random_start=random_start, restarts=restarts, seed=seed)

    def resolve_loss_fn(self, output_mode: str) -> LossFn | None:
        return None
