"""Channel orders between volrob and a bundle's network: inputs fed in volrob's standard modality order when the
bundle takes the same four modalities in another order, outputs reordered to volrob's regions or classes. Both are
permutations, exact; the per-channel normalisation in front of the network commutes with them."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from volrob.data.manifest import MODALITIES


class ChannelOrder(nn.Module):
    """``network(x[:, inputs])[:, outputs]`` (either index may be None: that side as is)."""

    def __init__(self, network: nn.Module, *, inputs: Sequence[int] | None = None,
                 outputs: Sequence[int] | None = None) -> None:
        super().__init__()
        self.network = network
        self.inputs = None if inputs is None else list(inputs)
        self.outputs = None if outputs is None else list(outputs)
        if self.inputs is not None:
            self.register_buffer("_in", torch.tensor(self.inputs, dtype=torch.long), persistent=False)
        if self.outputs is not None:
            self.register_buffer("_out", torch.tensor(self.outputs, dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inputs is not None:
            x = x.index_select(1, self._in)
        y = self.network(x)
        return y if self.outputs is None else y.index_select(1, self._out)


def fed_modalities(bundle: list[str]) -> tuple[list[str], list[int] | None]:
    """The order volrob feeds the inputs in (its standard t1, t1ce, t2, flair when the bundle takes exactly those),
    and for each network input channel the fed channel it reads (None when the orders agree)."""
    if sorted(bundle) != sorted(MODALITIES) or bundle == list(MODALITIES):
        return list(bundle), None
    return list(MODALITIES), [MODALITIES.index(m) for m in bundle]


def wrap(network: nn.Module, inputs: list[int] | None, outputs: list[int]) -> nn.Module:
    """``network`` behind :class:`ChannelOrder` when either order is not the identity."""
    outs = None if outputs == list(range(len(outputs))) else outputs
    return network if inputs is None and outs is None else ChannelOrder(network, inputs=inputs, outputs=outs)
