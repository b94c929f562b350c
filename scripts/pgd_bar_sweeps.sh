#!/usr/bin/env bash
# Where the PGD eps=8 drop on the demo data comes from (docs/pgd_bar_experiments.md). Needs README command 1
# (runs/demo/data, runs/demo/unet). Trains a 4x wider UNet on the same data (skipped when it exists), then
# attacks the first three test cases of both models with PGD eps 8 (10 steps), and the first two cases of the
# demo UNet with VAFA at q_max 20 / 40 / 80 (10 steps). One JSON per model and case in ${1:-runs/demo}/pgd_bar.
set -euo pipefail
out="${1:-runs/demo}"
mkdir -p "$out/pgd_bar"
if [ ! -f "$out/unet_wide/best.pt" ]; then
  volrob train configs/unet.yaml --set "data.manifest=$out/data/manifest.json" --set "output_dir=$out/unet_wide" \
    --set seed=0 --set 'model.options.channels=[32,64,128,256]' --set model.options.num_res_units=2 --force
fi
sweep() { python scripts/pgd_budget_sweep.py --manifest "$out/data/manifest.json" --split test --steps 10 "$@"; }
for i in 0 1 2; do
  sweep --checkpoint "$out/unet/best.pt" --case "$i" --eps 8 > "$out/pgd_bar/unet_$i.json"
  sweep --checkpoint "$out/unet_wide/best.pt" --case "$i" --eps 8 > "$out/pgd_bar/unet_wide_$i.json"
done
for i in 0 1; do
  sweep --checkpoint "$out/unet/best.pt" --case "$i" --attack vafa3d --q-max 20 40 80 > "$out/pgd_bar/vafa_$i.json"
done
