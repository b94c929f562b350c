"""Tissue intensities per MRI sequence, and rendering a tissue map to a clean (noise-free) image.

Mean intensities in arbitrary scanner-like units, chosen to reproduce the relative contrasts of clinical 1.5/3 T
glioma protocols (as in BraTS):

========  =====  ====  ====  =======  =====  =====  ====  ====  ====  ======
sequence  CSF    GM    WM    deep GM  skull  scalp  NCR   NET   ET    oedema
========  =====  ====  ====  =======  =====  =====  ====  ====  ====  ======
T1        260    560   800   640      70     900    300   560   600   660
T1ce      280    590   820   670      70     950    290   580   1250  680
T2        1800   950   620   860      60     700    1700  1000  1000  1150
FLAIR     160    720   560   660      50     600    520   850   820   950
========  =====  ====  ====  =======  =====  =====  ====  ====  ====  ======

T1: WM > GM > CSF, tumour core hypo-intense, oedema slightly hypo-intense. T1ce: as T1 but the enhancing rim is
strongly hyper-intense and necrosis dark. T2: CSF brightest, GM > WM, oedema and tumour bright, necrosis very
bright. FLAIR: CSF suppressed, oedema bright, GM slightly above WM. Lesion-to-white-matter ratios stay moderate
(FLAIR oedema about 1.7×, T2 about 1.9×, enhancing rim in T1ce about 1.5×), as in clinical scans rather than
idealised phantoms. Oedema is blended over the underlying tissue with the weight from
:class:`~volrob.data.synth.tumour.Tumour`: strongest next to the core and fading towards its labelled edge, so
the whole-tumour boundary is ill-defined as in real FLAIR.

Per case, every tissue's contrast is jittered by a few per cent and tissues get a smooth texture; tumour tissues
are more heterogeneous than normal brain.
"""

from __future__ import annotations

import numpy as np

from volrob.data.synth import tissues as T

MODALITIES: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")
OEDEMA = -1
"""Key of the oedema signal in :data:`INTENSITY`."""

INTENSITY: dict[str, dict[int, float]] = {
    "t1": {T.CSF: 260, T.GM: 560, T.WM: 800, T.DEEP_GM: 640, T.SKULL: 70, T.SCALP: 900,
           T.NCR: 300, T.NET: 560, T.ET: 600, OEDEMA: 660},
    "t1ce": {T.CSF: 280, T.GM: 590, T.WM: 820, T.DEEP_GM: 670, T.SKULL: 70, T.SCALP: 950,
             T.NCR: 290, T.NET: 580, T.ET: 1250, OEDEMA: 680},
    "t2": {T.CSF: 1800, T.GM: 950, T.WM: 620, T.DEEP_GM: 860, T.SKULL: 60, T.SCALP: 700,
           T.NCR: 1700, T.NET: 1000, T.ET: 1000, OEDEMA: 1150},
    "flair": {T.CSF: 160, T.GM: 720, T.WM: 560, T.DEEP_GM: 660, T.SKULL: 50, T.SCALP: 600,
              T.NCR: 520, T.NET: 850, T.ET: 820, OEDEMA: 950},
}
TEXTURE: dict[int, float] = {T.CSF: 0.02, T.GM: 0.04, T.WM: 0.03, T.DEEP_GM: 0.04, T.SKULL: 0.1, T.SCALP: 0.08,
                             T.NCR: 0.12, T.NET: 0.1, T.ET: 0.12}
"""Relative amplitude of the smooth texture inside each tissue."""
TUMOUR_CODES: tuple[int, ...] = (T.NCR, T.NET, T.ET)


def jittered_table(rng: np.random.Generator, modality: str, spread: float = 0.06) -> dict[int, float]:
    """This case's tissue means for ``modality``: the table above, each entry scaled by ``N(1, spread)``."""
    base = INTENSITY[modality]
    factors = np.clip(rng.normal(1.0, spread, len(base)), 1.0 - 3 * spread, 1.0 + 3 * spread)
    return {k: float(v * f) for (k, v), f in zip(base.items(), factors, strict=True)}


def render(tissue: np.ndarray, oedema: np.ndarray, table: dict[int, float], texture: np.ndarray,
           tumour_texture: np.ndarray) -> np.ndarray:
    """Clean image of ``tissue`` (float32): tissue means modulated by texture, oedema blended in.

    ``texture`` and ``tumour_texture`` are unit-std smooth fields of the image's shape.
    """
    lut = np.zeros(T.COUNT, dtype=np.float32)
    amp = np.zeros(T.COUNT, dtype=np.float32)
    for code, value in table.items():
        if code >= 0:
            lut[code] = value
            amp[code] = TEXTURE.get(code, 0.0)
    is_tumour = np.isin(tissue, TUMOUR_CODES)
    tex = np.where(is_tumour, tumour_texture, texture)
    img = lut[tissue] * (1.0 + amp[tissue] * tex)
    ed = oedema > 0
    w = oedema[ed]
    img[ed] = (1.0 - w) * img[ed] + w * table[OEDEMA] * (1.0 + 0.08 * tumour_texture[ed])
    return img.astype(np.float32)
