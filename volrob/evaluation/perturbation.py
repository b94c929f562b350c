"""How large and how visible a perturbation is: L∞ / L2 (in 1/255 units of the [0, 1] attack space), SSIM and
PSNR of the adversarial input against the clean one."""

from __future__ import annotations

import math

import torch

from volrob.signal.ssim import ssim


def perturbation_stats(x: torch.Tensor, x_adv: torch.Tensor) -> list[dict[str, float]]:
    """Per sample of ``(B, C, *spatial)`` inputs: ``linf_255``, ``l2_255``, ``ssim`` (3D, gaussian window of 7, or the
    smallest side if shorter,
    mean over channels), ``psnr`` (dB, data range 1, mean squared error over the brain voxels: those non-zero in
    any channel of ``x``; ``inf`` is reported as 100 dB so tables stay finite)."""
    x, x_adv = x.detach().float().cpu(), x_adv.detach().float().cpu()
    delta = (x_adv - x).flatten(1)
    s = ssim(x_adv, x, data_range=1.0, size=min(7, *x.shape[2:]))
    brain = (x != 0).any(1, keepdim=True).expand_as(x).flatten(1)
    out = []
    for i in range(x.shape[0]):
        d = delta[i][brain[i]] if brain[i].any() else delta[i]
        mse = float((d**2).mean()) if d.numel() else 0.0
        psnr = 100.0 if mse == 0 else min(100.0, 10 * math.log10(1.0 / mse))
        out.append({"linf_255": float(delta[i].abs().max()) * 255, "l2_255": float(delta[i].norm()) * 255,
                    "ssim": float(s[i]), "psnr": psnr})
    return out
