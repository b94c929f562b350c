"""VAFA 3D/2D on a tiny real UNet: range, mask, determinism, batch consistency, budget, sanity, bad options."""

from __future__ import annotations

import copy

import pytest
import torch

from volrob import models
from volrob.attacks import available, create
from volrob.attacks.frequency.soft_round import annealed_alpha, soft_round
from volrob.attacks.frequency.vafa import Vafa2D, Vafa3D, quantise
from volrob.attacks.losses import resolve_loss
from volrob.attacks.threat import ThreatModel
from volrob.errors import ConfigError
from volrob.inference.predictor import Predictor, SlidingWindowConfig
from volrob.signal.dct import block_dct
from volrob.signal.ssim import ssim


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    torch.manual_seed(0)  # only the test network's initial weights
    net = models.create("unet", in_channels=4, out_channels=3, roi_size=(32, 32, 32), preset="tiny").eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return Predictor(net, mean=[0.5] * 4, std=[0.25] * 4, window=SlidingWindowConfig(roi_size=(32, 32, 32)))


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    x = torch.rand(2, 4, 32, 32, 32, generator=g)
    x[:, :, :6] = 0  # background slab
    target = (torch.rand(2, 3, 32, 32, 32, generator=g) > 0.7).float()
    return x, target


@pytest.fixture(scope="module")
def result3d(predictor: Predictor, batch: tuple[torch.Tensor, torch.Tensor]):  # type: ignore[no-untyped-def]
    x, target = batch
    x_copy = x.clone()
    out = Vafa3D(steps=6, block=16).optimise(predictor, x, target)
    assert torch.equal(x, x_copy)  # input untouched
    return out


def test_registered() -> None:
    assert {"vafa3d", "vafa2d"} <= set(available())
    assert isinstance(create("vafa3d"), Vafa3D) and isinstance(create("vafa2d"), Vafa2D)


def test_range_mask_and_q_bounds(result3d, batch) -> None:  # type: ignore[no-untyped-def]
    x_adv, q, _ = result3d
    x, _ = batch
    assert x_adv.shape == x.shape and float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
    assert bool((x_adv[:, :, :6] == 0).all())
    assert float((x_adv - x).abs().max()) > 0
    assert float(q.min()) >= 5 and float(q.max()) <= 20 and float(q.min()) < 20


def test_record(result3d) -> None:  # type: ignore[no-untyped-def]
    _, _, record = result3d
    assert record["attack"] == "vafa3d" and record["threat"]["eps"] is None and "q_max" not in record["threat"]
    assert "quantisation" in record["threat"]["budget"] and record["params"]["block"] == [16, 16, 16]
    assert len(record["loss"]) == 6 and record["seconds"] > 0 and len(record["ssim"]) == 2
    assert all(0 < s < 1 for s in record["ssim"]) and all(v > 0 for v in record["linf_255"] + record["l2_255"])


def test_loss_increases(result3d) -> None:  # type: ignore[no-untyped-def]
    losses = result3d[2]["loss"]
    assert sum(losses[3:]) / 3 > sum(losses[:3]) / 3


def test_deterministic_and_batch_consistent(predictor, batch, result3d) -> None:  # type: ignore[no-untyped-def]
    x, target = batch
    again = Vafa3D(steps=6, block=16).optimise(predictor, x, target)[0]
    assert torch.equal(again, result3d[0])
    single = Vafa3D(steps=6, block=16).optimise(predictor, x[1:], target[1:])[0]
    assert torch.equal(single[0], result3d[0][1])


def test_identity_sanity() -> None:
    x = torch.rand(1, 2, 12, 10, 9, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    q = torch.ones_like(x)
    assert torch.allclose(quantise(x, q, block=[4, 4, 4], dims=(2, 3, 4), alpha=None), x, atol=1e-12)
    x255 = torch.round(x * 255) / 255  # integer images survive q = 1 with hard rounding
    assert torch.allclose(quantise(x255, q, block=[4, 4], dims=(3, 4), alpha=None, hard=False), x255, atol=1e-12)


def test_larger_q_max_distorts_more(predictor, batch) -> None:  # type: ignore[no-untyped-def]
    x, target = batch
    low = Vafa3D(steps=2, block=16, q_min=2, q_max=5, ssim_weight=0).run(predictor, x[:1], target[:1])
    high = Vafa3D(steps=2, block=16, q_min=2, q_max=60, ssim_weight=0).run(predictor, x[:1], target[:1])
    assert high.record["ssim"][0] < low.record["ssim"][0] and high.record["l2_255"][0] > low.record["l2_255"][0]


def test_2d_variant(predictor, batch) -> None:  # type: ignore[no-untyped-def]
    x, target = batch
    res = create("vafa2d", steps=3, threat=None).run(predictor, x[:1], target[:1])
    assert res.record["params"]["block"] == [8, 8] and res.record["params"]["dct_dims"] == [3, 4]
    assert float(res.x_adv.min()) >= 0 and float(res.x_adv.max()) <= 1 and bool((res.x_adv[:, :, :6] == 0).all())
    assert float((res.x_adv - x[:1]).abs().max()) > 0


def test_soft_round_properties() -> None:
    z = torch.linspace(-3, 3, 601, dtype=torch.float64)
    for alpha in (0.5, 0.1, 1e-3):
        r = soft_round(z, alpha)
        assert bool((r.diff() >= -1e-12).all()) and float((r - torch.round(z)).abs().max()) <= 0.5 + 1e-9
    assert torch.allclose(soft_round(torch.tensor([0.3, 1.7]), 1e-20), torch.tensor([0.0, 2.0]))
    assert annealed_alpha(0, 10, 0.1) == 0.1 and annealed_alpha(9, 10, 0.1) < 0.02
    with pytest.raises(ConfigError, match="alpha"):
        soft_round(z, 1.0)
    with pytest.raises(ConfigError, match="step"):
        annealed_alpha(5, 5, 0.1)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"steps": 0}, "steps"), ({"steps": 2.5}, "steps"), ({"block": 0}, "block"), ({"block": (8, 8)}, "block"),
    ({"q_min": 0}, "q_min"), ({"q_min": 30, "q_max": 20}, "q_min"), ({"step_size": 0}, "step_size"),
    ({"alpha_start": 1.0}, "alpha_start"), ({"ssim_weight": -1}, "ssim_weight"), ({"backend": "fft"}, "backend"),
    ({"loss": 3}, "loss"),
])
def test_bad_parameters(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as err:
        Vafa3D(**kwargs)
    assert "\n" not in str(err.value)


def test_bad_inputs(predictor, batch) -> None:  # type: ignore[no-untyped-def]
    x, target = batch
    with pytest.raises(ConfigError, match="input"):
        Vafa3D(steps=1).run(predictor, x[0], target)
    with pytest.raises(ConfigError, match="batch"):
        Vafa3D(steps=1).run(predictor, x, target[:1])
    with pytest.raises(ConfigError, match="needs"):
        Vafa3D(steps=1, loss="ce").run(predictor, x, target)


def _old_compress(attack: Vafa3D | Vafa2D, x: torch.Tensor, q: torch.Tensor, region: torch.Tensor,
                  alpha: float | None, hard: bool) -> torch.Tensor:
    """The straightforward composition (autograd through every step), the oracle for the fused path."""
    xq = quantise(x, q, block=attack.block, dims=attack.dims, alpha=alpha, hard=hard, backend=attack.backend)
    return (x + (xq - x) * region).clamp(attack.threat.clip_min, attack.threat.clip_max)


def _old_optimise(attack: Vafa3D | Vafa2D, predictor, x: torch.Tensor, target: torch.Tensor):  # type: ignore[no-untyped-def]
    """The attack as first written: per-sample steps with autograd through quantisation and ``ssim``."""
    loss_fn = resolve_loss(attack.loss, predictor.output_mode)
    outs, tables, losses = [], [], []
    for i in range(x.shape[0]):
        xi, ti = x[i:i + 1], target[i:i + 1]
        region = attack.threat.region(xi)
        q = torch.full_like(xi, attack.q_max)
        for t in range(attack.steps):
            q.requires_grad_(True)
            x_adv = _old_compress(attack, xi, q, region, annealed_alpha(t, attack.steps, attack.alpha_start), False)
            seg = loss_fn(predictor(x_adv), ti)
            objective = seg - attack.ssim_weight * (1.0 - ssim(x_adv, xi))
            (grad,) = torch.autograd.grad(objective.sum(), q)
            q = (q.detach() + attack.step_size * grad.sign()).clamp(attack.q_min, attack.q_max)
            losses.append(float(seg.detach()))
        outs.append(_old_compress(attack, xi, q, region, None, True))
        tables.append(q)
    x_adv = torch.cat(outs)
    return x_adv, torch.cat(tables), losses, ssim(x_adv, x).tolist()


@pytest.mark.parametrize(("cls", "block", "shape", "mask", "clip"), [
    (Vafa3D, 4, (2, 2, 8, 9, 7), "none", (0.0, 1.0)),  # ragged blocks on two axes
    (Vafa3D, 5, (1, 3, 7, 6, 8), "brain", (0.2, 0.8)),  # region mask and clipping active
    (Vafa2D, 3, (1, 2, 4, 7, 5), "brain", (0.1, 0.9)),
    (Vafa3D, 2, (2, 1, 37, 2, 3), "brain", (0.0, 1.0)),  # two tiles along D, the second with a ragged block
    (Vafa2D, 2, (1, 2, 35, 2, 3), "none", (0.0, 1.0)),  # D not transformed: tiles of 32 slices and 3
])
def test_fused_compress_matches_autograd(cls, block: int, shape: tuple[int, ...], mask: str,  # type: ignore[no-untyped-def]
                                         clip: tuple[float, float]) -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.rand(*shape, generator=g, dtype=torch.float64)
    x[:, :, :1] = 0
    attack = cls(block=block, threat=ThreatModel(mask=mask, clip_min=clip[0], clip_max=clip[1]))
    region = attack.threat.region(x)
    z = block_dct(x * 255.0, attack.block, attack.dims)
    q = (5 + 15 * torch.rand(*shape, generator=g, dtype=torch.float64)).requires_grad_(True)
    weights = torch.randn(*shape, generator=g, dtype=torch.float64)
    for alpha in (0.3, 0.05):
        new = attack._compress(x, z, q, region, alpha=alpha, hard=False)
        old = _old_compress(attack, x, q, region, alpha, False)
        assert float((new - old).detach().abs().max()) <= 1e-10
        assert float((old - x).detach().abs().max()) > 0  # the case is not trivial
        g_new = torch.autograd.grad((new * weights).sum(), q)[0]
        g_old = torch.autograd.grad((old * weights).sum(), q)[0]
        assert float((g_new - g_old).abs().max()) <= 1e-10 * max(1.0, float(g_old.abs().max()))
        assert float(g_old.abs().max()) > 0
        assert torch.autograd.gradcheck(lambda t, a=alpha: attack._compress(x, z, t, region, alpha=a, hard=False),
                                        (q,))
    for alpha, hard in ((None, True), (None, False)):
        with torch.no_grad():
            assert float((attack._compress(x, z, q, region, alpha=alpha, hard=hard)
                          - _old_compress(attack, x, q, region, alpha, hard)).abs().max()) <= 1e-10


def test_matches_straightforward_attack(predictor, batch) -> None:  # type: ignore[no-untyped-def]
    x, target = (t.double() for t in batch)
    pred = Predictor(copy.deepcopy(predictor.network).double(), mean=[0.5] * 4, std=[0.25] * 4,
                     window=SlidingWindowConfig(roi_size=(32, 32, 32)))
    attack = Vafa3D(steps=3, block=16)
    x_adv, q, record = attack.optimise(pred, x, target)
    old_adv, old_q, old_losses, old_ssim = _old_optimise(attack, pred, x, target)
    assert torch.equal(q, old_q) and float((x_adv - old_adv).abs().max()) <= 1e-10
    per_step = [sum(old_losses[i::3]) / 2 for i in range(3)]
    assert record["loss"] == pytest.approx(per_step, abs=1e-10)
    assert record["ssim"] == pytest.approx(old_ssim, abs=1e-10)
