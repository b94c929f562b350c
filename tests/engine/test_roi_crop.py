"""The plain ROI-crop protocol: crop placement by hand, and a run that attacks and scores only the crop (clean
score checked against an independent computation on the crop)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from volrob.checkpoint import load_checkpoint
from volrob.cli.main import main
from volrob.data.cases import load_case
from volrob.data.labels import canonical_to_regions
from volrob.data.manifest import load_manifest
from volrob.data.preprocess import preprocess
from volrob.engine.roi_crop import crop_box
from volrob.errors import ConfigError
from volrob.evaluation.metrics import dice
from volrob.inference.segment import predict_regions, to_source_grid


def test_crop_box_by_hand() -> None:
    wt = np.zeros((20, 10, 6), dtype=bool)
    wt[15:18, 2:4, 1:2] = True  # centroid (16, 2.5, 1)
    assert crop_box((20, 10, 6), (8, 4, 4), "tumour", wt) == (slice(12, 20), slice(1, 5), slice(0, 4))
    assert crop_box((20, 10, 6), (8, 4, 4), "centre", wt) == (slice(6, 14), slice(3, 7), slice(1, 5))
    assert crop_box((20, 10, 6), (8, 16, 4), "tumour", np.zeros_like(wt)) == (slice(6, 14), slice(0, 10),
                                                                                slice(1, 5))
    assert crop_box((20, 10, 6), (8, 4, 4), "tumour", torch.from_numpy(wt)) == crop_box((20, 10, 6), (8, 4, 4),
                                                                                          "tumour", wt)
    with pytest.raises(ConfigError, match="roi_crop must be one of"):
        crop_box((4, 4, 4), (2, 2, 2), "middle")
    with pytest.raises(ConfigError, match="does not match"):
        crop_box((4, 4, 4), (2, 2), "centre")


@pytest.mark.usefixtures("one_thread")
def test_run_attacks_and_scores_the_crop(tiny_checkpoint: Path, synth_manifest: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "crop.yaml"
    cfg.write_text(yaml.safe_dump({
        "manifest": str(synth_manifest), "split": "val", "roi_crop": "tumour",
        "models": [{"name": "tiny", "checkpoint": str(tiny_checkpoint)}], "attacks": [{"attack": "fgsm", "eps": [8]}],
        "outputs": {"volumes": True, "perturbations": True}}))
    out = tmp_path / "out"
    assert main(["attack", str(cfg), "-o", str(out), "--threads", "1", "--quiet"]) == 0
    assert json.loads((out / "run.json").read_text())["config"]["roi_crop"] == "tumour"
    rows = pd.read_csv(out / "results.csv")
    assert len(rows) == 9 and (rows["linf_255"] <= 8 + 1e-3).all()
    ckpt = load_checkpoint(tiny_checkpoint)
    man = load_manifest(synth_manifest)
    case = man.split("val")[0]
    data = load_case(man, case)
    p = preprocess(data.image, data.label, data.affine, ckpt.preprocessing)
    regions = canonical_to_regions(p.label.as_tensor()[None])[0]
    box = crop_box(p.image.shape[1:], ckpt.inference.roi_size, "tumour", regions[1])
    assert any(s.stop - s.start < n for s, n in zip(box, p.image.shape[1:], strict=True))  # a real crop
    cell = rows["cell"].iloc[0]
    with np.load(out / "units" / cell / f"{case.id}.npz") as z:
        delta = torch.from_numpy(np.array(z["delta"]))
    assert tuple(delta.shape[2:]) == tuple(s.stop - s.start for s in box)  # only the crop was attacked
    # independent oracle: the clean and adversarial WT Dice of the crop, computed by hand
    predictor, cpu = ckpt.build_predictor().eval(), torch.device("cpu")
    x = p.image.as_tensor()[(slice(None), *box)]
    wt = rows[(rows.region == "WT") & (rows.metric == "dice")].iloc[0]
    assert wt["clean"] == pytest.approx(dice(predict_regions(predictor, x, cpu)[1].numpy(),
                                             regions[1][box].numpy()), abs=1e-6)
    x_adv = (x + delta[0]).clamp(0, 1)
    assert wt["adversarial"] == pytest.approx(dice(predict_regions(predictor, x_adv, cpu)[1].numpy(),
                                                   regions[1][box].numpy()), abs=1e-6)
    # the written volumes hold the attacked crop pasted into the clean volume: outside the crop nothing changed
    adv = np.stack([np.asarray(nib.load(out / "adversarial" / cell / case.id / f"{case.id}_{m}.nii.gz").dataobj)
                    for m in ckpt.modalities])
    changed = np.abs(adv - to_source_grid(p.image.as_tensor(), p, nearest=False)) > 1e-6
    inside = torch.zeros((1, *p.image.shape[1:]))
    inside[(slice(None), *box)] = 1.0
    inside_src = to_source_grid(inside, p, nearest=True)[0] > 0.5
    assert changed.any() and not changed[:, ~inside_src].any()
