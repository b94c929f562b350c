"""The plain ROI-crop protocol: crop placement by hand, and an attack run scored on the crop."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from volrob.checkpoint import load_checkpoint
from volrob.data.cases import load_case
from volrob.data.labels import canonical_to_regions
from volrob.data.manifest import load_manifest
from volrob.data.preprocess import preprocess
from volrob.errors import ConfigError
from volrob.evaluation.metrics import dice
from volrob.inference.segment import predict_regions
from volrob.robustness.attack_run import attack_manifest
from volrob.robustness.roi_crop import crop_box


def test_crop_box_by_hand() -> None:
    wt = np.zeros((20, 10, 6), dtype=bool)
    wt[15:18, 2:4, 1:2] = True  # centroid (16, 2.5, 1)
    assert crop_box((20, 10, 6), (8, 4, 4), "tumour", wt) == (slice(12, 20), slice(1, 5), slice(0, 4))
    assert crop_box((20, 10, 6), (8, 4, 4), "centre", wt) == (slice(6, 14), slice(3, 7), slice(1, 5))
    assert crop_box((20, 10, 6), (8, 16, 4), "tumour", np.zeros_like(wt)) == (slice(6, 14), slice(0, 10),
                                                                                slice(1, 5))
    with pytest.raises(ConfigError, match="roi_crop must be one of"):
        crop_box((4, 4, 4), (2, 2, 2), "middle")
    with pytest.raises(ConfigError, match="does not match"):
        crop_box((4, 4, 4), (2, 2), "centre")


def test_attack_run_scores_the_crop(tiny_checkpoint: Path, synth_manifest: Path, tmp_path: Path) -> None:
    res = attack_manifest(tiny_checkpoint, synth_manifest, tmp_path / "out", attack="fgsm",
                          attack_options={"eps": 8}, split="val", save_volumes=False, progress=False,
                          roi_crop="tumour")
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["protocol"] == "roi_crop:tumour"
    rows = pd.read_csv(tmp_path / "out" / "results.csv")
    assert len(rows) == res.rows["case"].nunique() * 9 and (rows["linf_255"] <= 8 + 1e-3).all()
    # independent oracle: the clean WT Dice of the crop, computed by hand
    ckpt = load_checkpoint(tiny_checkpoint)
    man = load_manifest(synth_manifest)
    case = man.split("val")[0]
    data = load_case(man, case)
    p = preprocess(data.image, data.label, data.affine, ckpt.preprocessing)
    regions = canonical_to_regions(p.label.as_tensor()[None])[0]
    box = crop_box(p.image.shape[1:], ckpt.inference.roi_size, "tumour", regions[1])
    pred = predict_regions(ckpt.build_predictor().eval(), p.image.as_tensor()[(slice(None), *box)],
                           torch.device("cpu"))
    want = dice(pred[1].numpy(), regions[1][box].numpy())
    got = rows[(rows.case == case.id) & (rows.region == "WT") & (rows.metric == "dice")]["clean"].iloc[0]
    assert got == pytest.approx(want, abs=1e-6)
    with pytest.raises(ConfigError, match="roi_crop must be one of"):
        attack_manifest(tiny_checkpoint, synth_manifest, tmp_path / "bad", attack="fgsm", split="val",
                        roi_crop="middle", progress=False)
