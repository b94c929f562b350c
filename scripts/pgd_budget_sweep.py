"""WT Dice of one case under an attack at several budgets (a quick strength curve); prints one JSON object.

    python scripts/pgd_budget_sweep.py --checkpoint runs/demo/unet/best.pt \
        --manifest runs/demo/data/manifest.json --split val --eps 8 16 32 --steps 10 --loss bce

With ``--attack vafa3d --q-max 20 40 80`` the budgets are VAFA's quantisation bounds instead of ε.
Scores are on the preprocessed grid (no mapping back to the source grid); use ``volrob attack`` for full tables.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from volrob import attacks
from volrob.checkpoint import load_checkpoint
from volrob.data.cases import load_case
from volrob.data.labels import REGIONS, canonical_to_regions, logits_to_regions
from volrob.data.manifest import load_manifest
from volrob.data.preprocess import preprocess
from volrob.evaluation.metrics import dice
from volrob.evaluation.ssim import ssim


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--case", type=int, default=0, help="index of the case within the split")
    ap.add_argument("--attack", default="pgd")
    ap.add_argument("--eps", type=float, nargs="+", default=[4, 8, 16, 32])
    ap.add_argument("--q-max", type=float, nargs="+", help="budgets are q_max values (VAFA) instead of --eps")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--loss", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    ckpt = load_checkpoint(args.checkpoint)
    predictor = ckpt.build_predictor().eval()
    man = load_manifest(args.manifest)
    case = man.split(args.split)[args.case]
    data = load_case(man, case)
    pre = preprocess(data.image, data.label, data.affine, ckpt.preprocessing)
    x = pre.image.as_tensor()[None]
    lab = pre.label.as_tensor()[None]  # type: ignore[union-attr]
    target = canonical_to_regions(lab).float() if ckpt.output_mode == "regions" else lab.long()
    gt = canonical_to_regions(lab)[0].numpy()

    def scores(inp: torch.Tensor) -> dict[str, float]:
        with torch.no_grad():
            regions = logits_to_regions(predictor(inp), ckpt.output_mode)[0].numpy()
        return {r: round(dice(regions[i], gt[i]), 4) for i, r in enumerate(REGIONS)}

    opts = {"steps": args.steps}
    if args.attack in ("pgd", "bim", "fgsm", "targeted_bim"):
        opts["loss"] = args.loss
    if args.attack == "fgsm":
        opts.pop("steps")
    out = {"case": case.id, "shape": list(x.shape), "attack": args.attack, "options": opts, "clean": scores(x),
           "budgets": []}
    key = "eps" if args.q_max is None else "q_max"
    for value in args.eps if args.q_max is None else args.q_max:
        tic = time.perf_counter()
        res = attacks.create(args.attack, **{key: value}, seed=args.seed, **opts)(predictor, x, target)
        out["budgets"].append({key: value, "dice": scores(res.x_adv), "ssim": round(float(ssim(res.x_adv, x)[0]), 4),
                               "seconds": round(time.perf_counter() - tic, 1),
                               "loss_first_last": [res.record["loss"][0], res.record["loss"][-1]]})
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
