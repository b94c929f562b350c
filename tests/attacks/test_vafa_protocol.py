"""The published VAFA protocol as recorded options: per-slice min-max output rescale and the per-block SSIM term,
checked against oracles written here (explicit slice loops, the first iterate rebuilt from its definition)."""

from __future__ import annotations

import itertools

import pytest
import torch

from volrob.attacks.frequency.rescale import per_slice_minmax
from volrob.attacks.frequency.vafa import Vafa2D, Vafa3D, quantise
from volrob.attacks.losses import resolve_loss
from volrob.attacks.threat import ThreatModel
from volrob.errors import ConfigError
from volrob.signal.ssim import block_ssim, ssim

from .conftest import make_inputs

RESCALE = {"output_rescale": "per_slice_minmax"}


def _rescale_oracle(x: torch.Tensor, dim: int, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    """Loop over (sample, channel, slice index along tensor dimension ``dim``): map each non-constant slice onto
    [lo, hi] by its own extremes; leave constant slices."""
    out = x.clone()
    for b, c in itertools.product(range(x.shape[0]), range(x.shape[1])):
        for i in range(x.shape[dim]):
            sl = x[b, c].select(dim - 2, i)
            low, high = float(sl.min()), float(sl.max())
            if high > low:
                out[b, c].select(dim - 2, i).copy_((sl - low) / (high - low) * (hi - lo) + lo)
    return out


def _brain(x: torch.Tensor) -> torch.Tensor:
    return (x != 0).any(dim=1, keepdim=True).to(x.dtype)


def _first_iterate(x: torch.Tensor, attack: Vafa3D, clip: bool) -> torch.Tensor:
    """Step 0's soft-rounded input: tables at q_max, temperature alpha_start, blended into the brain mask."""
    q = torch.full_like(x, attack.q_max)
    xq = quantise(x, q, block=attack.block, dims=attack.dims, alpha=attack.alpha_start)
    y = x + (xq - x) * _brain(x)
    return y.clamp(0, 1) if clip else y


@pytest.mark.parametrize("dim", [2, 3, 4])
def test_rescale_matches_slice_loop(dim: int) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 5, 6, 7, generator=g, dtype=torch.float64) * 0.6 - 0.1
    x[0, 1].select(dim - 2, 2).fill_(0.37)  # a constant slice stays as it is
    x0 = x.clone()
    out = per_slice_minmax(x, axis=dim)
    assert torch.equal(x, x0)  # input untouched
    assert torch.allclose(out, _rescale_oracle(x, dim), atol=1e-14)
    assert torch.allclose(per_slice_minmax(x, axis=dim - 5), out)  # negative axes count from the end
    assert bool((out[0, 1].select(dim - 2, 2) == 0.37).all())
    others = [d for d in (1, 2, 3) if d != dim - 1]
    assert torch.allclose(out[1].amin(dim=others), torch.zeros(3, x.shape[dim], dtype=torch.float64))
    assert torch.allclose(out[1].amax(dim=others), torch.ones(3, x.shape[dim], dtype=torch.float64))
    ranged = per_slice_minmax(x, axis=dim, lo=0.2, hi=0.7)
    assert torch.allclose(ranged, _rescale_oracle(x, dim, 0.2, 0.7), atol=1e-14)


def test_rescale_gradient() -> None:
    x = torch.rand(1, 1, 3, 3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: per_slice_minmax(t, axis=4), (x.clone().requires_grad_(True),))
    x[0, 0, :, :, 1] = 0.5  # a constant slice passes its gradient through unchanged (the identity), never NaN
    x.requires_grad_(True)
    weights = torch.arange(27.0, dtype=torch.float64).view_as(x)
    (grad,) = torch.autograd.grad((per_slice_minmax(x, axis=4) * weights).sum(), x)
    assert bool(grad.isfinite().all()) and torch.equal(grad[0, 0, :, :, 1], weights[0, 0, :, :, 1])


def test_output_only_rescale_is_the_rescaled_unclipped_result(predictors) -> None:  # type: ignore[no-untyped-def]
    """rescale_in_loop=False optimises exactly as the default attack; its output is the default's final tables,
    hard-rounded, blended into the mask, not clipped, then rescaled per slice: the recorded norms follow it."""
    pred = predictors["regions"]
    x, target = make_inputs(1, seed=3)
    x = x * 0.4  # slices far from spanning [0, 1]: the rescale alone moves voxels a long way
    base_adv, base_q, _ = Vafa3D(steps=2, block=8).optimise(pred, x, target)
    adv, q, record = Vafa3D(steps=2, block=8, rescale_in_loop=False, **RESCALE).optimise(pred, x, target)
    assert torch.equal(q, base_q)
    blend = x + (quantise(x, q, block=[8, 8, 8], dims=(2, 3, 4), alpha=None, hard=True) - x) * _brain(x)
    expected = _rescale_oracle(blend, 4)
    assert float((adv - expected).abs().max()) <= 1e-5
    assert float((adv - _rescale_oracle(base_adv, 4)).abs().max()) > 0  # the clip is not applied before it
    linf = float((adv - x).abs().max()) * 255
    assert record["linf_255"][0] == pytest.approx(linf, rel=1e-6) and linf > 100  # far beyond any q step
    assert record["l2_255"][0] == pytest.approx(float((adv - x).double().norm()) * 255, rel=1e-6)
    assert record["ssim"][0] == pytest.approx(float(ssim(adv, x)), abs=1e-5)
    assert record["ssim_per_block"][0] == pytest.approx(float(block_ssim(adv, x, block=8)), abs=1e-5)
    p = record["params"]
    assert (p["output_rescale"], p["rescale_axis"], p["rescale_in_loop"]) == ("per_slice_minmax", 4, False)
    assert "per_slice_minmax along axis 4" in record["threat"]["budget"] and record["threat"]["eps"] is None


def test_in_loop_rescale_model_sees_rescaled_iterate(predictors) -> None:  # type: ignore[no-untyped-def]
    pred = predictors["regions"]
    x, target = make_inputs(2, seed=4)
    x0 = x.clone()
    attack = Vafa3D(steps=2, block=8, ssim="per_block", **RESCALE)
    adv, _, record = attack.optimise(pred, x, target)
    assert torch.equal(x, x0)
    # the returned volume: every non-constant slice along W spans exactly [0, 1]
    lo, hi = adv.amin(dim=(2, 3)), adv.amax(dim=(2, 3))
    assert float(lo.abs().max()) <= 1e-6 and float((hi - 1).abs().max()) <= 1e-6
    # step 0 as the published code does it: rescaled unclipped iterate into the model and the per-block SSIM term
    first = _rescale_oracle(_first_iterate(x[:1], attack, clip=False), 4)
    with torch.no_grad():
        seg = resolve_loss("auto", pred.output_mode)(pred(first), target[:1])
    single = attack.optimise(pred, x[:1], target[:1])
    assert single[2]["loss"][0] == pytest.approx(float(seg), abs=1e-5)
    s0 = float(block_ssim(first, x[:1], block=8, size=3))
    assert single[2]["objective"][0] == pytest.approx(float(seg) - (1 - s0), abs=1e-5)
    assert torch.equal(single[0][0], adv[0])  # batch consistency
    assert torch.equal(attack.optimise(pred, x, target)[0], adv)  # determinism
    assert record["linf_255"] == pytest.approx([float((adv[i] - x[i]).abs().max()) * 255 for i in range(2)],
                                               rel=1e-6)


def test_per_block_ssim_term_and_record(predictors) -> None:  # type: ignore[no-untyped-def]
    pred = predictors["regions"]
    x, target = make_inputs(1, seed=5)
    attack = Vafa3D(steps=1, block=8, ssim="per_block", ssim_weight=2.0)
    adv, _, record = attack.optimise(pred, x, target)
    p = record["params"]
    assert (p["ssim"], p["ssim_window"], p["ssim_block"], p["output_rescale"]) == ("per_block", 3, [8, 8, 8], "none")
    first = _first_iterate(x, attack, clip=True)
    s0 = float(block_ssim(first, x, block=8, size=3))
    assert record["objective"][0] == pytest.approx(record["loss"][0] - 2.0 * (1 - s0), abs=1e-5)
    assert record["ssim"] == pytest.approx(record["ssim_per_block"], abs=1e-7)
    assert record["ssim"][0] == pytest.approx(float(block_ssim(adv, x, block=8)), abs=1e-5)
    # the default keeps the volume SSIM (gaussian window 7) in the objective and still records per-block SSIM
    default = Vafa3D(steps=1, block=8).optimise(pred, x, target)[2]
    s0 = float(ssim(first, x, size=7))
    assert default["objective"][0] == pytest.approx(default["loss"][0] - (1 - s0), abs=1e-5)
    d = default["params"]
    assert (d["ssim"], d["ssim_window"], d["output_rescale"], d["rescale_axis"]) == ("volume", 7, "none", 4)
    bigger = Vafa3D(steps=1, block=8, ssim_block=16, ssim_window=5, ssim="per_block").params()
    assert bigger["ssim_block"] == [16, 16, 16] and bigger["ssim_window"] == 5


def test_2d_variant_options(predictors) -> None:  # type: ignore[no-untyped-def]
    pred = predictors["regions"]
    x, target = make_inputs(1, seed=6)
    adv, _, record = Vafa2D(steps=1, ssim="per_block", rescale_axis=2, **RESCALE).optimise(pred, x, target)
    assert record["params"]["ssim_block"] == [8, 8] and record["params"]["rescale_axis"] == 2
    assert record["ssim"][0] == pytest.approx(float(block_ssim(adv, x, block=8, spatial_dims=2)), abs=1e-5)
    hi = adv.amax(dim=(3, 4))
    varies = x.amax(dim=(3, 4)) > x.amin(dim=(3, 4))
    assert float((hi[varies] - 1).abs().max()) <= 1e-6  # every slice with content spans the range
    assert bool((adv[:, :, :3] == 0).all())  # all-zero slices are constant: left as they are


def test_rescale_follows_the_threat_models_valid_range(predictors) -> None:  # type: ignore[no-untyped-def]
    x, target = make_inputs(1, seed=7)
    threat = ThreatModel(clip_min=0.1, clip_max=0.9)
    adv = Vafa3D(steps=1, block=8, threat=threat, rescale_in_loop=False, **RESCALE).run(
        predictors["regions"], x, target).x_adv
    assert float(adv.amax(dim=(2, 3)).max()) == pytest.approx(0.9, abs=1e-6)
    assert float(adv.amin(dim=(2, 3)).min()) == pytest.approx(0.1, abs=1e-6)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"ssim": "global"}, "ssim"), ({"ssim_window": 4}, "ssim_window"), ({"ssim_window": True}, "ssim_window"),
    ({"ssim_window": 0}, "ssim_window"), ({"ssim_block": (8, 8)}, "ssim_block"), ({"ssim_block": 0}, "ssim_block"),
    ({"ssim_block": "8"}, "ssim_block"), ({"ssim": "per_block", "ssim_block": 2}, "ssim_block"),
    ({"ssim": "per_block", "ssim_window": 9, "block": 8}, "ssim_block"),
    ({"output_rescale": "minmax"}, "output_rescale"), ({"rescale_axis": 1}, "rescale_axis"),
    ({"rescale_axis": 5}, "rescale_axis"), ({"rescale_axis": -4}, "rescale_axis"),
    ({"rescale_axis": True}, "rescale_axis"), ({"rescale_in_loop": "yes"}, "rescale_in_loop"),
])
def test_bad_options(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as err:
        Vafa3D(**kwargs)
    assert "\n" not in str(err.value)
