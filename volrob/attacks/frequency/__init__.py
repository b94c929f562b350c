"""Frequency-domain attacks: differentiable rounding and VAFA (3D and 2D); the block DCT and SSIM they use are in
:mod:`volrob.signal`.

Importing :mod:`volrob.attacks.frequency.vafa` registers ``vafa3d`` and ``vafa2d``.
"""

from volrob.attacks.frequency.soft_round import annealed_alpha, soft_round

__all__ = ["annealed_alpha", "soft_round"]
