"""Model registry: every model builds, runs forward on tiny inputs, and rejects bad configurations clearly."""

from __future__ import annotations

import pytest
import torch

from volrob import models
from volrob.errors import ConfigError
from volrob.models.registry import MODELS, register_model

# Smallest ROI each architecture accepts (SwinUNETR: multiples of 32 and >= 64).
ROI = {"unet": 32, "unetr": 32, "swinunetr": 64, "segresnet": 32, "umamba": 32}


def test_expected_models_registered() -> None:
    assert {"unet", "unetr", "swinunetr", "segresnet", "umamba"} <= set(models.available())
    assert models.available() == sorted(models.available())


@pytest.mark.parametrize("name", sorted(ROI))
@pytest.mark.parametrize("out_channels", [3, 4])
def test_forward_shape_and_gradient(name: str, out_channels: int) -> None:
    side = ROI[name]
    net = models.create(name, in_channels=4, out_channels=out_channels, roi_size=(side,) * 3, preset="tiny")
    x = torch.randn(2, 4, side, side, side, generator=torch.Generator().manual_seed(0), requires_grad=True)
    y = net(x)
    assert y.shape == (2, out_channels, side, side, side)
    assert torch.isfinite(y).all()
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(ROI))
def test_paper_preset_is_larger(name: str) -> None:
    tiny = models.create(name, roi_size=(96, 96, 96), preset="tiny")
    paper = models.create(name, roi_size=(96, 96, 96), preset="paper")
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(paper) > n(tiny)


def test_unetr_paper_matches_published_size() -> None:
    net = models.create("unetr", roi_size=(96, 96, 96), preset="paper")
    assert net.vit.patch_embedding.position_embeddings.shape[-1] == 768
    assert net.vit.blocks[0].mlp.linear1.out_features == 3072
    assert net.vit.blocks[0].attn.num_heads == 12


@pytest.mark.parametrize(
    ("name", "cfg", "fragment"),
    [
        ("unetr", {"roi_size": (40, 40, 40)}, "divisible by 16"),
        ("swinunetr", {"roi_size": (48, 48, 48)}, "divisible by 32"),
        ("swinunetr", {"roi_size": (32, 32, 32)}, "at least 64"),
        ("unet", {"roi_size": (36, 36, 36)}, "divisible by 8"),
        ("segresnet", {"roi_size": (20, 20, 20)}, "divisible by 8"),
        ("unet", {"in_channels": 0}, "in_channels"),
        ("unet", {"out_channels": -1}, "out_channels"),
        ("unet", {"preset": "huge"}, "preset"),
        ("unet", {"roi_size": (32, 32)}, "roi_size"),
        ("unet", {"bogus": 1}, "bogus"),
        ("unetr", {"num_heads": 5}, "num_heads"),
        ("swinunetr", {"feature_size": 16}, "feature_size"),
    ],
)
def test_bad_configuration(name: str, cfg: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as info:
        models.create(name, **cfg)
    assert "\n" not in str(info.value)


def test_unknown_model_lists_choices() -> None:
    with pytest.raises(ConfigError, match="available: .*unet"):
        models.create("resnet9000")


def test_duplicate_registration_refused() -> None:
    with pytest.raises(ConfigError, match="registered twice"):
        register_model("unet", family="cnn")(lambda **cfg: torch.nn.Identity())
    assert MODELS.entry("unet").builder is not None


def test_unetr_is_fixed_input() -> None:
    assert models.model_info("unetr").fixed_input
    assert not models.model_info("unet").fixed_input


def test_registry_rejects_unknown_options_of_strict_builders() -> None:
    from volrob.utils.registry import Registry

    reg: Registry[int] = Registry("widget")
    reg.register("w")(lambda *, size=1: size)
    assert reg.create("w", size=3) == 3
    with pytest.raises(ConfigError, match=r"widget w: unknown option\(s\) \['colour'\]; allowed: \['size'\]"):
        reg.create("w", colour="red")
