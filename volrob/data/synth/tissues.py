"""Tissue codes of the synthetic anatomy (a uint8 map per case; contrast.py gives each code its intensities)."""

from __future__ import annotations

BACKGROUND = 0
CSF = 1
GM = 2
WM = 3
DEEP_GM = 4
SKULL = 5
SCALP = 6
NCR = 7
"""Necrotic core (BraTS label 1)."""
NET = 8
"""Non-enhancing solid tumour (also BraTS label 1)."""
ET = 9
"""Enhancing tumour (BraTS label 4)."""

NAMES: dict[int, str] = {
    BACKGROUND: "background", CSF: "csf", GM: "gm", WM: "wm", DEEP_GM: "deep_gm", SKULL: "skull",
    SCALP: "scalp", NCR: "ncr", NET: "net", ET: "et",
}
COUNT = len(NAMES)
NORMAL_BRAIN: tuple[int, ...] = (CSF, GM, WM, DEEP_GM)
