"""Mamba layers (causality, direction symmetries, initialisation) and the registered U-Mamba-Bot segmenter."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from volrob.errors import ConfigError, DataError
from volrob.models import registry
from volrob.models.mamba import segmenter
from volrob.models.mamba.block import MambaLayer, ResidualMamba, grid_orders
from volrob.models.mamba.segmenter import UMambaBot, build_umamba


def rand(seed: int, *shape: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------------------------------- MambaLayer


def test_forward_layer_is_causal() -> None:
    layer = MambaLayer(12, d_state=4, directions="forward", chunk_size=5).double()
    x = rand(0, 2, 23, 12)
    t = 10
    x_changed = x.clone()
    x_changed[:, t + 1 :] += rand(1, 2, 23 - t - 1, 12)
    with torch.no_grad():
        y, y_changed = layer(x), layer(x_changed)
    torch.testing.assert_close(y[:, : t + 1], y_changed[:, : t + 1], rtol=0, atol=1e-13)
    assert (y[:, t + 1 :] - y_changed[:, t + 1 :]).abs().amax() > 1e-3


@pytest.mark.parametrize("directions", ["bidirectional", "tri"])
def test_multi_direction_layer_sees_the_future(directions: str) -> None:
    """Token (0, 1, 0) (index 3) sees the later token (1, 0, 0) (index 9): reversed, or in the H-major scan."""
    layer = MambaLayer(8, d_state=4, directions=directions).double()
    x = rand(2, 1, 27, 8)
    x_changed = x.clone()
    x_changed[:, 9] += 1.0
    with torch.no_grad():
        change = (layer(x, (3, 3, 3)) - layer(x_changed, (3, 3, 3)))[:, 3].abs().amax()
    assert change > 1e-8


def test_bidirectional_reversal_symmetry() -> None:
    """Reversing the sequence and swapping the two scans' parameters reverses the output."""
    layer = MambaLayer(8, d_state=4, directions="bidirectional", chunk_size=4).double()
    swapped = MambaLayer(8, d_state=4, directions="bidirectional", chunk_size=4).double()
    swapped.load_state_dict(layer.state_dict())
    swapped.ssms = torch.nn.ModuleList([swapped.ssms[1], swapped.ssms[0]])
    x = rand(3, 2, 19, 8)
    with torch.no_grad():
        torch.testing.assert_close(swapped(x.flip(1)), layer(x).flip(1), rtol=1e-10, atol=1e-12)


def test_tri_axis_rotation_symmetry() -> None:
    """Rotating the token grid (D, H, W) -> (H, W, D) and the three scans' parameters rotates the output."""
    d, h, w, c = 2, 3, 4, 8
    layer = MambaLayer(c, d_state=4, directions="tri", chunk_size=7).double()
    rotated = MambaLayer(c, d_state=4, directions="tri", chunk_size=7).double()
    rotated.load_state_dict(layer.state_dict())
    rotated.ssms = torch.nn.ModuleList([rotated.ssms[1], rotated.ssms[2], rotated.ssms[0]])
    x = rand(4, 1, d * h * w, c)

    def rotate(tokens: torch.Tensor) -> torch.Tensor:
        return tokens.reshape(1, d, h, w, c).permute(0, 2, 3, 1, 4).reshape(1, -1, c)

    with torch.no_grad():
        torch.testing.assert_close(rotated(rotate(x), (h, w, d)), rotate(layer(x, (d, h, w))), rtol=1e-10, atol=1e-12)


def test_grid_orders_visit_every_token_with_the_named_axis_slowest() -> None:
    d, h, w = 2, 3, 5
    orders = grid_orders("tri", d * h * w, (d, h, w), torch.device("cpu"))
    assert orders[0] is None
    coords = np.stack(np.unravel_index(np.arange(d * h * w), (d, h, w)), axis=1)  # token index -> (d, h, w)
    for order, (slow, mid, fast) in zip(orders[1:], [(1, 2, 0), (2, 0, 1)], strict=True):
        visited = coords[order.numpy()]
        assert sorted(order.tolist()) == list(range(d * h * w))
        assert list(map(tuple, visited)) == sorted(map(tuple, visited), key=lambda p: (p[slow], p[mid], p[fast]))
    reverse = grid_orders("bidirectional", 6, None, torch.device("cpu"))[1]
    assert reverse.tolist() == [5, 4, 3, 2, 1, 0]


@pytest.mark.parametrize("grid", [None, (3, 3, 2), (9, 3)])
def test_tri_needs_a_matching_grid(grid: tuple[int, ...] | None) -> None:
    layer = MambaLayer(8, d_state=2, directions="tri")
    with pytest.raises(DataError, match="grid"):
        layer(torch.zeros(1, 27, 8), grid)


def test_layer_rejects_wrong_input_shape() -> None:
    with pytest.raises(DataError, match=r"input must be \(batch, L, 8\)"):
        MambaLayer(8)(torch.zeros(1, 5, 7))


def test_standard_initialisation() -> None:
    layer = MambaLayer(40, d_state=6, expand=2, directions="bidirectional", dt_min=1e-3, dt_max=1e-1)
    assert layer.in_proj.out_features == 2 * 80
    for ssm in layer.ssms:
        assert ssm.dt_rank == math.ceil(40 / 16)
        dt = F.softplus(ssm.dt_proj.bias.detach())
        assert dt.min() >= 1e-3 * (1 - 1e-4) and dt.max() <= 1e-1 * (1 + 1e-4)
        torch.testing.assert_close(ssm.A_log.detach().exp(), torch.arange(1.0, 7.0).repeat(80, 1))
        assert torch.equal(ssm.D.detach(), torch.ones(80))
        assert ssm.dt_proj.weight.abs().max() <= ssm.dt_rank**-0.5


def test_residual_wrapper_is_prenorm_plus_identity() -> None:
    block = ResidualMamba(8, d_state=4).double()
    x = rand(5, 2, 9, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x), x + block.mamba(block.norm(x)))
        block.mamba.out_proj.weight.zero_()
        assert torch.equal(block(x), x)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [({"directions": "diagonal"}, "directions"), ({"d_state": 0}, "d_state"), ({"expand": 1.5}, "expand"),
     ({"dt_rank": 0}, "dt_rank"), ({"dt_min": 0.2, "dt_max": 0.1}, "dt_min"), ({"d_conv": True}, "d_conv"),
     ({"chunk_size": 0}, "chunk_size")],
)
def test_layer_bad_config(kwargs: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        MambaLayer(8, **kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------------ UMambaBot


def test_registered_in_model_registry() -> None:
    assert "umamba" in registry.available()
    info = registry.model_info("umamba")
    assert info.family == "mamba" and "U-Mamba-Bot" in info.description
    assert isinstance(registry.create("umamba", roi_size=(32, 32, 32)), UMambaBot)


def test_tiny_preset_shapes_and_input_gradient() -> None:
    model = build_umamba(in_channels=4, out_channels=3, roi_size=(32, 32, 32), preset="tiny")
    assert model.features == (8, 16, 32, 64) and model.bottleneck[0].mamba.directions == "bidirectional"
    x = rand(6, 1, 4, 32, 32, 32, dtype=torch.float32).requires_grad_()
    y = model(x)
    assert y.shape == (1, 3, 32, 32, 32)
    (grad,) = torch.autograd.grad(y.square().mean(), x)
    assert torch.isfinite(grad).all() and grad.abs().amax() > 0


@pytest.mark.parametrize("directions", ["forward", "bidirectional", "tri"])
def test_every_direction_runs_and_backpropagates(directions: str) -> None:
    model = build_umamba(roi_size=(16, 16, 16), in_channels=2, out_channels=4, features=(4, 8, 8), depth=2,
                         d_state=4, directions=directions)
    assert all(layer.mamba.directions == directions for layer in model.bottleneck)
    x = rand(7, 2, 2, 16, 8, 12, dtype=torch.float32).requires_grad_()
    y = model(x)
    assert y.shape == (2, 4, 16, 8, 12)
    (grad,) = torch.autograd.grad(y.sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().amax() > 0


def test_bottleneck_tokens_matter() -> None:
    """Zeroing the Mamba output projection changes the logits: the bottleneck is wired in."""
    model = build_umamba(roi_size=(16, 16, 16), features=(4, 8), d_state=4).eval()
    x = rand(8, 1, 4, 8, 8, 8, dtype=torch.float32)
    with torch.no_grad():
        before = model(x)
        model.bottleneck[0].mamba.out_proj.weight.zero_()
        assert (model(x) - before).abs().amax() > 1e-6


def test_paper_preset_is_larger(record_property: pytest.RecordProperty) -> None:
    paper = build_umamba(preset="paper", roi_size=(96, 96, 96))
    tiny = build_umamba(preset="tiny", roi_size=(96, 96, 96))
    assert paper.features == (32, 64, 128, 256, 320) and len(paper.bottleneck) == 2
    assert paper.bottleneck[0].mamba.directions == "tri" and len(paper.bottleneck[0].mamba.ssms) == 3
    count, tiny_count = n_params(paper), n_params(tiny)
    record_property("umamba_paper_parameters", count)
    print(f"umamba parameters: paper {count:,}, tiny {tiny_count:,}")
    assert count > 10 * tiny_count


@pytest.mark.parametrize(
    ("cfg", "pattern"),
    [({"widths": (8, 16)}, r"unknown option\(s\) \['widths'\]"), ({"roi_size": (96, 96, 90)}, "divisible by 8"),
     ({"preset": "huge"}, "preset"), ({"features": (8,)}, "features"), ({"features": "abc"}, "features"),
     ({"features": (8, 0)}, "features"), ({"depth": -1}, "depth"), ({"directions": "up"}, "directions"),
     ({"d_state": 0}, "d_state"), ({"expand": 0}, "expand"), ({"in_channels": 0}, "in_channels"),
     ({"roi_size": (32, 32)}, "roi_size"), ({"preset": "paper", "roi_size": (32, 32, 40)}, "divisible by 16")],
)
def test_bad_config(cfg: dict[str, object], pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern) as err:
        build_umamba(**cfg)  # type: ignore[arg-type]
    assert "\n" not in str(err.value) and "umamba" in str(err.value)


@pytest.mark.parametrize("shape", [(1, 3, 16, 16, 16), (1, 4, 16, 16, 14), (4, 16, 16, 16)])
def test_bad_input_shape(shape: tuple[int, ...]) -> None:
    model = build_umamba(roi_size=(16, 16, 16), features=(4, 8, 8), d_state=4)
    with pytest.raises(DataError, match="divisible by 4"):
        model(torch.zeros(shape))


def test_presets_are_not_mutated_by_overrides() -> None:
    build_umamba(roi_size=(16, 16, 16), features=(4, 8), depth=0)
    assert segmenter.UMAMBA_PRESETS["tiny"]["features"] == (8, 16, 32, 64)
    assert segmenter.UMAMBA_PRESETS["tiny"]["depth"] == 1
