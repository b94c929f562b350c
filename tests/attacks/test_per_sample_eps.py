"""Per-sample budgets: ``eps`` given as one value per sample for every pixel-space attack.

Oracle: each sample attacked alone under its own scalar ``eps`` (the per-sample result must equal it bitwise).
"""

from __future__ import annotations

import inspect
import json
from typing import Any

import numpy as np
import pytest
import torch

import volrob.attacks as attacks
from volrob.attacks.noise import GaussianNoise
from volrob.attacks.registry import ATTACKS
from volrob.attacks.threat import ThreatModel
from volrob.errors import ConfigError

PIXEL = [n for n in attacks.available() if ATTACKS.entry(n).extras.get("family") == "pixel"]
NORMS = [(n, norm) for n in PIXEL for norm in ("linf", "l2")
         if norm in getattr(ATTACKS.entry(n).builder, "norms", ("linf", "l2"))]  # the norms each attack supports
FAST = {"steps": 2, "restarts": 2}  # cheap settings; two restarts so the restart path sees per-sample budgets


def build(name: str, eps: Any, norm: str = "linf", seed: int = 3, **extra: Any) -> attacks.Attack:
    """``create(name, eps=eps, ...)`` with the cheap settings the attack's signature accepts."""
    params = inspect.signature(ATTACKS.entry(name).builder).parameters
    cfg = {k: v for k, v in FAST.items() if k in params}
    return attacks.create(name, eps=eps, norm=norm, mask="brain", seed=seed, **cfg, **extra)


def norms_255(x: torch.Tensor, x_adv: torch.Tensor, norm: str) -> torch.Tensor:
    delta = (x_adv - x).flatten(1).double()
    return delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)


def test_every_pixel_attack_is_covered() -> None:
    assert {"fgsm", "bim", "pgd", "segpgd", "cospgd", "targeted_bim", "gaussian_noise", "asma"} <= set(PIXEL)
    assert not any(n.startswith("vafa") for n in PIXEL)


@pytest.mark.parametrize("mode", ["regions", "labels"])
@pytest.mark.parametrize(("name", "norm"), NORMS)
def test_batch_equals_each_sample_alone_with_its_scalar_eps(name: str, norm: str, mode: str, predictors: Any,
                                                            inputs: Any) -> None:
    eps = (2.0, 16.0) if norm == "linf" else (20.0, 160.0)
    x, target = inputs(batch=2, mode=mode, seed=4)
    res = build(name, list(eps), norm).run(predictors[mode], x, target)
    for i, e in enumerate(eps):
        alone = build(name, e, norm).run(predictors[mode], x[i:i + 1], target[i:i + 1])
        assert torch.equal(res.x_adv[i:i + 1], alone.x_adv), (name, i)
        assert res.record["linf_255"][i] == alone.record["linf_255"][0]
        if "final_loss" in res.record:
            assert res.record["final_loss"][i] == alone.record["final_loss"][0]
    assert res.record["threat"]["eps"] == list(eps)
    json.dumps(res.record)


@pytest.mark.parametrize(("name", "norm"), NORMS)
def test_each_sample_stays_in_its_own_budget(name: str, norm: str, predictors: Any, inputs: Any) -> None:
    eps = [1.0, 12.0, 4.0] if norm == "linf" else [10.0, 120.0, 40.0]
    x, target = inputs(batch=3, seed=6)
    res = build(name, eps, norm).run(predictors["regions"], x, target)
    norms = norms_255(x, res.x_adv, norm)
    radii = torch.tensor(eps, dtype=torch.float64) / 255
    assert bool((norms <= radii + 1e-6).all()), (norms.tolist(), eps)
    assert float(norms[0]) > 0  # every sample moved
    # the larger budgets were actually used: the smallest one alone could not contain those samples
    assert float(norms[1]) > radii[0] + 1e-6
    assert float(res.x_adv.min()) >= 0 and float(res.x_adv.max()) <= 1
    background = (x == 0).all(dim=1, keepdim=True).expand_as(x)
    assert torch.equal(res.x_adv[background], x[background])


@pytest.mark.parametrize(("name", "norm"), NORMS)
def test_equal_per_sample_eps_equals_scalar_eps(name: str, norm: str, predictors: Any, inputs: Any) -> None:
    x, target = inputs(batch=2, mode="labels", seed=2)
    e = 6.0 if norm == "linf" else 60.0
    per = build(name, [e, e], norm).run(predictors["labels"], x, target)
    scalar = build(name, e, norm).run(predictors["labels"], x, target)
    assert torch.equal(per.x_adv, scalar.x_adv)
    assert per.record["loss"] == scalar.record["loss"]
    assert per.record["l2_255"] == scalar.record["l2_255"]


@pytest.mark.parametrize(("name", "factor"), [("fgsm", 1.0), ("bim", 1.25 / 2), ("pgd", 2.5 / 2),
                                              ("targeted_bim", 1.25 / 2), ("segpgd", 2.5 / 2), ("cospgd", 2.5 / 2),
                                              ("asma", 1 / 2)])
def test_default_step_follows_each_eps_explicit_step_stays_scalar(name: str, factor: float) -> None:
    attack = build(name, [4.0, 8.0])
    assert attack.params()["alpha"] == pytest.approx([4.0 * factor, 8.0 * factor])
    if name != "fgsm":
        assert build(name, [4.0, 8.0], alpha=0.5).params()["alpha"] == 0.5


def test_explicit_alpha_is_shared_by_every_sample(predictors: Any, inputs: Any) -> None:
    x, target = inputs(batch=2, seed=8)
    res = build("bim", [3.0, 9.0], alpha=2.0).run(predictors["regions"], x, target)
    for i, e in enumerate((3.0, 9.0)):
        alone = build("bim", e, alpha=2.0).run(predictors["regions"], x[i:i + 1], target[i:i + 1])
        assert torch.equal(res.x_adv[i:i + 1], alone.x_adv)
    # with alpha=2 and 2 steps sample 0 hits its 3/255 bound, sample 1 cannot pass 4/255 < 9/255
    linf = res.record["linf_255"]
    assert linf[0] == pytest.approx(3.0, abs=1e-4) and linf[1] == pytest.approx(4.0, abs=1e-4)


def test_noise_std_follows_each_sample() -> None:
    x = torch.zeros(2, 4, 24, 24, 24)
    noise = GaussianNoise(eps=[2, 6], seed=1).noise(x)
    for i, e in enumerate((2, 6)):
        torch.testing.assert_close(noise[i:i + 1], GaussianNoise(eps=e, seed=1).noise(x[:1]), atol=0, rtol=0)
        assert float(noise[i].std()) == pytest.approx(e / 255, rel=0.02)
    assert GaussianNoise(eps=[2, 6]).params()["sigma"] == [2.0, 6.0]


@pytest.mark.parametrize("eps", [[4, 8], (4.0, 8.0), torch.tensor([4.0, 8.0]), np.array([4, 8]),
                                 torch.tensor([4.0, 8.0], dtype=torch.float64)])
def test_sequences_are_converted_to_a_tuple_of_floats(eps: Any) -> None:
    t = ThreatModel(eps=eps)
    assert t.eps == (4.0, 8.0) and all(type(e) is float for e in t.eps) and t.per_sample
    assert hash(t) == hash(ThreatModel(eps=(4.0, 8.0)))
    assert t.to_dict()["eps"] == [4.0, 8.0]
    assert attacks.create("pgd", eps=eps).threat == t


@pytest.mark.parametrize("eps", [[1.0, -2.0], [float("nan"), 1.0], torch.tensor([[1.0, 2.0]]), [[1.0, 2.0]], [],
                                 torch.tensor([]), "8", [1.0, "2"], [True, 2.0], [1.0, None], np.ones((2, 2)),
                                 {"a": 1.0}])
def test_bad_per_sample_eps_is_a_one_line_config_error(eps: Any) -> None:
    for make in (lambda: ThreatModel(eps=eps), lambda: attacks.create("pgd", eps=eps)):
        with pytest.raises(ConfigError, match="eps") as err:
            make()
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", PIXEL)
def test_eps_length_must_match_the_batch(name: str, predictors: Any, inputs: Any) -> None:
    x, target = inputs(batch=2)
    for eps in ([4.0, 8.0, 2.0], [4.0]):
        with pytest.raises(ConfigError, match=rf"eps has {len(eps)} per-sample values but the batch has 2") as err:
            build(name, eps).run(predictors["regions"], x, target)
        assert "\n" not in str(err.value)
