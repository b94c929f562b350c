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
