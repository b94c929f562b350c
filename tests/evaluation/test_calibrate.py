"""Noise calibrated to a target SSIM: reaches it, reproduces it through the attack itself, monotone, bad input."""

from __future__ import annotations

import itertools

import pytest
import torch

from volrob import attacks
from volrob.errors import ConfigError
from volrob.evaluation.calibrate import noise_ssim, sigma_for_ssim
from volrob.evaluation.perturbation import perturbation_stats


def _volumes() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    out = []
    for size in (12, 14):
        x = 0.2 + 0.6 * torch.rand((1, 2, size, size, size), generator=g)
        x[..., :3, :, :] = 0.0  # background the brain mask keeps untouched
        out.append(x)
    return out


class _Zero(torch.nn.Module):
    output_mode = "regions"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros((x.shape[0], 3, *x.shape[2:]))


def test_sigma_reaches_the_target_and_the_attack_reproduces_it() -> None:
    vols, seeds = _volumes(), [3, 11]
    sigma = sigma_for_ssim(vols, seeds, 0.9, tolerance=1e-5)
    assert noise_ssim(vols, seeds, sigma) == pytest.approx(0.9, abs=1e-5)
    achieved = []
    for x, seed in zip(vols, seeds, strict=True):  # the registered attack's own run gives the same SSIM
        target = torch.zeros((1, 3, *x.shape[2:]))
        x_adv = attacks.create("gaussian_noise", eps=sigma, seed=seed).run(_Zero(), x, target).x_adv
        achieved.append(perturbation_stats(x, x_adv)[0]["ssim"])
    assert sum(achieved) / len(achieved) == pytest.approx(0.9, abs=1e-5)


def test_ssim_falls_as_sigma_grows_and_inputs_are_untouched() -> None:
    vols = _volumes()
    before = [v.clone() for v in vols]
    values = [noise_ssim(vols, [0, 1], s) for s in (1, 4, 16, 64)]
    assert all(a > b for a, b in itertools.pairwise(values))
    assert all(torch.equal(a, b) for a, b in zip(vols, before, strict=True))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"target": 1.0}, r"target SSIM must be in \(0, 1\)"),
    ({"target": float("nan")}, r"target SSIM must be in \(0, 1\)"),
    ({"target": 0.999999, "low": 20.0}, "outside"),
    ({"target": 0.9, "low": 5.0, "high": 1.0}, "need 0 < low < high"),
    ({"target": 0.9, "seeds": [0]}, "one seed per volume"),
])
def test_bad_calibration_requests(kwargs: dict, match: str) -> None:
    seeds = kwargs.pop("seeds", [0, 1])
    with pytest.raises(ConfigError, match=match) as info:
        sigma_for_ssim(_volumes(), seeds, **kwargs)
    assert "\n" not in str(info.value)
