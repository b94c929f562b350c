"""Frequency-domain attacks: block DCT, differentiable rounding and VAFA (3D and 2D); SSIM is in
:mod:`volrob.evaluation.ssim`.

Importing :mod:`volrob.attacks.frequency.vafa` registers ``vafa3d`` and ``vafa2d``.
"""

from volrob.attacks.frequency.dct import block_dct, block_idct, dct_matrix, dct_nd, idct_nd
from volrob.attacks.frequency.soft_round import annealed_alpha, soft_round

__all__ = ["annealed_alpha", "block_dct", "block_idct", "dct_matrix", "dct_nd", "idct_nd", "soft_round"]
