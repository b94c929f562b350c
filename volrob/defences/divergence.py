"""Per-voxel KL divergence between two predictions given as logits, for both output modes."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from volrob.errors import ConfigError


def output_kl(p_logits: torch.Tensor, q_logits: torch.Tensor, output_mode: str) -> torch.Tensor:
    """``KL(p || q)`` averaged over samples and voxels.

    ``regions`` (sigmoid channels): the Bernoulli KL of each channel, summed over the channels (the KL of the
    factorised per-voxel distribution); ``labels`` (softmax): the categorical KL over the classes.
    """
    p_logits, q_logits = p_logits.float(), q_logits.float()  # full precision under AMP
    if output_mode == "regions":
        lp, lq = F.logsigmoid(p_logits), F.logsigmoid(q_logits)
        lp0, lq0 = F.logsigmoid(-p_logits), F.logsigmoid(-q_logits)
        per_voxel = (lp.exp() * (lp - lq) + lp0.exp() * (lp0 - lq0)).sum(1)
    elif output_mode == "labels":
        lp, lq = F.log_softmax(p_logits, dim=1), F.log_softmax(q_logits, dim=1)
        per_voxel = (lp.exp() * (lp - lq)).sum(1)
    else:
        raise ConfigError(f"output mode must be 'regions' or 'labels', got {output_mode!r}")
    return per_voxel.mean()
