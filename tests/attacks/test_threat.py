"""The threat model: budgets in 1/255 units, projection onto the threat set, brain mask, validation."""

from __future__ import annotations

import pytest
import torch

from volrob.attacks.threat import ThreatModel
from volrob.errors import ConfigError


def sample(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 4, 6, 6, 6, generator=g)
    x[:, :, :2] = 0.0  # background slab, zero in every channel
    return x


def test_radius_is_eps_over_255() -> None:
    assert ThreatModel(eps=8).radius == pytest.approx(8 / 255)


def test_linf_projection() -> None:
    x = sample()
    t = ThreatModel(eps=4)
    wild = x + torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    out = t.project(x, wild, t.region(x))
    assert (out - x).abs().max() <= 4 / 255 + 1e-7
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out[:, :, :2], x[:, :, :2])  # background untouched
    inside = x + 0.5 * (4 / 255) * torch.sign(wild - x) * t.region(x)
    assert torch.allclose(t.project(x, inside.clamp(0, 1), t.region(x)), inside.clamp(0, 1))


def test_l2_projection_per_sample() -> None:
    x = sample()
    t = ThreatModel(eps=100, norm="l2", mask="none")
    wild = x + torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    out = t.project(x, wild, t.region(x))
    norms = (out - x).flatten(1).norm(dim=1)
    assert (norms <= 100 / 255 + 1e-6).all()
    small = x.clone()
    small[0, 0, 3, 3, 3] = (small[0, 0, 3, 3, 3] + 0.01).clamp(max=1)
    assert torch.equal(t.project(x, small, t.region(x)), small)  # inside the ball: unchanged


def test_mask_none_allows_background() -> None:
    x = sample()
    assert ThreatModel(mask="none").region(x).min() == 1
    region = ThreatModel().region(x)
    assert region.shape == (2, 1, 6, 6, 6) and region[:, :, :2].sum() == 0 and region[:, :, 2:].min() == 1


@pytest.mark.parametrize(("kw", "frag"), [({"eps": -1}, "eps"), ({"norm": "l1"}, "norm"), ({"mask": "tumour"}, "mask"),
                                         ({"clip_min": 1.0, "clip_max": 0.0}, "clip_min")])
def test_bad_threat_model(kw: dict, frag: str) -> None:
    with pytest.raises(ConfigError, match=frag):
        ThreatModel(**kw)


def test_record_is_explicit() -> None:
    rec = ThreatModel(eps=8).to_dict()
    assert rec["eps"] == 8 and rec["eps_units"] == "1/255" and rec["norm"] == "linf" and rec["mask"] == "brain"


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_per_sample_projection_uses_each_radius(norm: str) -> None:
    x = sample(3)
    eps = (2.0, 50.0) if norm == "linf" else (20.0, 500.0)
    t = ThreatModel(eps=eps, norm=norm, mask="none")
    wild = x + torch.randn(x.shape, generator=torch.Generator().manual_seed(4))
    out = t.project(x, wild, t.region(x))
    for i, e in enumerate(eps):  # hand oracle: clamp to the cube, or rescale onto the ball, then the valid range
        d = (wild[i] - x[i]).double()
        r = e / 255
        d = d.clamp(-r, r) if norm == "linf" else d * min(1.0, r / float(d.norm()))
        torch.testing.assert_close(out[i].double(), (x[i].double() + d).clamp(0, 1), atol=1e-6, rtol=0)
        alone = ThreatModel(eps=e, norm=norm, mask="none")
        assert torch.equal(out[i:i + 1], alone.project(x[i:i + 1], wild[i:i + 1], alone.region(x[i:i + 1])))
    same = ThreatModel(eps=(eps[0], eps[0]), norm=norm, mask="none")
    scalar = ThreatModel(eps=eps[0], norm=norm, mask="none")
    assert torch.equal(same.project(x, wild, same.region(x)), scalar.project(x, wild, scalar.region(x)))


def test_for_sample_radii_and_batch_check() -> None:
    t = ThreatModel(eps=[2, 4, 8], norm="l2", mask="none")
    assert t.per_sample and not ThreatModel(eps=2).per_sample
    assert t.for_sample(1) == ThreatModel(eps=4.0, norm="l2", mask="none") and t.for_sample(-1).eps == 8.0
    assert t.for_sample(2).radius == pytest.approx(8 / 255)
    scalar = ThreatModel(eps=3)
    assert scalar.for_sample(5) is scalar
    radii = t.radii(torch.zeros(3, 1, 2, 2, 2, dtype=torch.float64))
    assert radii.shape == (3, 1, 1, 1, 1) and radii.flatten().tolist() == [2 / 255, 4 / 255, 8 / 255]
    assert scalar.radii(torch.zeros(2, 1, 2, 2, 2)).flatten().tolist() == pytest.approx([3 / 255] * 2)
    t.check_batch(3)
    scalar.check_batch(7)
    for call, frag in [(lambda: t.radius, "radius needs one"), (lambda: t.for_sample(3), "out of range"),
                       (lambda: t.check_batch(2), "eps has 3 per-sample values but the batch has 2"),
                       (lambda: t.radii(torch.zeros(4, 1, 2, 2, 2)), "eps has 3"),
                       (lambda: t.project(sample(), sample(), t.region(sample())), "the batch has 2")]:
        with pytest.raises(ConfigError, match=frag) as err:
            call()
        assert "\n" not in str(err.value)


def test_per_sample_record_lists_eps() -> None:
    rec = ThreatModel(eps=torch.tensor([1.0, 2.0])).to_dict()
    assert rec["eps"] == [1.0, 2.0] and rec["eps_units"] == "1/255"
    assert ThreatModel(eps=torch.tensor(3.0)).eps == 3.0  # a 0-D tensor is a scalar budget


@pytest.mark.parametrize(("eps", "frag"), [([1.0, -1.0], r"eps\[1\] must be >= 0"), ([float("nan")], r"eps\[0\]"),
                                           (torch.ones(2, 2), "1-D"), ([], "empty"), ([[1.0]], r"eps\[0\] must be a"),
                                           (float("nan"), "eps must be >= 0"), ("8", "eps must be a number")])
def test_bad_eps_is_a_one_line_config_error(eps: object, frag: str) -> None:
    with pytest.raises(ConfigError, match=frag) as err:
        ThreatModel(eps=eps)
    assert "\n" not in str(err.value)
