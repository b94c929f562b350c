"""The per-window network of an nnU-Net model: its folds and mirrored copies averaged, in volrob's axis order and
canonical output channels.

For one window ``x`` (voxel order): permute to nnU-Net's order, then the mean over folds ``f`` and mirror sets ``m``
(every non-empty subset of the allowed axes, plus no mirroring) of ``flip_m(net_f(flip_m(x)))``, permute back and
reorder the output channels. nnU-Net averages the mirrored logits within each fold and then the folds' stitched
logits; both means are linear, so averaging per window before stitching gives the same numbers.

Memory: with a graph to the input, the terms would keep ``folds x mirror sets`` networks' graphs alive at once
(40 for five folds mirrored over three axes). Like the windowed gradient one level up, the sum is instead formed
without a graph and each term is recomputed with its graph in the backward pass, one at a time: the same gradient
with the memory of one network's graph. Only the input gradient flows that way; in training mode (not used for
nnU-Net models) plain autograd is used.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from volrob.sources.nnunet.axes import AxisOrder

Term = tuple[int, tuple[int, ...]]  # (fold index, flipped tensor dims)


def mirror_sets(axes: Sequence[int] | None) -> list[tuple[int, ...]]:
    """No mirroring, then every non-empty combination of ``axes`` (nnU-Net's axis numbers), as tensor dims."""
    dims = [a + 2 for a in (axes or ())]
    return [(), *(c for k in range(1, len(dims) + 1) for c in itertools.combinations(dims, k))]


class FoldMirrorEnsemble(nn.Module):
    """``x (B, C, *voxel order)`` -> averaged logits ``(B, K, *voxel order)``, channels in ``channel_order``."""

    def __init__(self, networks: Sequence[nn.Module], mirror_axes: Sequence[int] | None, axes: AxisOrder,
                 channel_order: Sequence[int]) -> None:
        super().__init__()
        self.folds = nn.ModuleList(networks)
        self.mirror_axes = tuple(mirror_axes) if mirror_axes else None
        self.axes = axes
        self.channel_order = tuple(int(c) for c in channel_order)
        self.terms: list[Term] = [(f, m) for f in range(len(self.folds)) for m in mirror_sets(self.mirror_axes)]

    def term(self, xn: torch.Tensor, term: Term) -> torch.Tensor:
        """One fold on one mirrored copy of ``xn`` (nnU-Net order), flipped back."""
        fold, dims = term
        net = self.folds[fold]
        return net(xn.flip(dims)).flip(dims) if dims else net(xn)

    def mean_of_terms(self, xn: torch.Tensor) -> torch.Tensor:
        out = self.term(xn, self.terms[0])
        for t in self.terms[1:]:
            out = out + self.term(xn, t)
        return out / len(self.terms)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xn = self.axes.tensor_to_nnunet(x)
        if len(self.terms) > 1 and torch.is_grad_enabled() and x.requires_grad and not self.training:
            y = _TermwiseMean.apply(xn, self)
        else:
            y = self.mean_of_terms(xn)
        return self.axes.tensor_to_voxel(y)[:, list(self.channel_order)]


class _TermwiseMean(torch.autograd.Function):
    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda")
    def forward(ctx: Any, xn: torch.Tensor, ens: FoldMirrorEnsemble) -> torch.Tensor:
        ctx.save_for_backward(xn)
        ctx.ens = ens
        with torch.no_grad():
            return ens.mean_of_terms(xn.detach())

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")  # the recomputed terms run under the forward's autocast state
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, None]:
        (xn,) = ctx.saved_tensors
        ens: FoldMirrorEnsemble = ctx.ens
        g = grad_out / len(ens.terms)
        dx = torch.zeros_like(xn)
        for t in ens.terms:
            with torch.enable_grad():
                inp = xn.detach().requires_grad_(True)
                (grad,) = torch.autograd.grad(ens.term(inp, t), inp, g)
            dx += grad
        return dx, None
