"""Signal-processing building blocks shared by attacks, analysis and evaluation: the orthonormal (block) DCT and a
differentiable SSIM. This package depends on nothing in volrob but :mod:`volrob.errors`."""

from volrob.signal.dct import BACKENDS, block_dct, block_idct, dct_matrix, dct_nd, idct_nd
from volrob.signal.ssim import SSIMReference, ssim, ssim_map, window_1d

__all__ = ["BACKENDS", "SSIMReference", "block_dct", "block_idct", "dct_matrix", "dct_nd", "idct_nd", "ssim",
           "ssim_map", "window_1d"]
