#!/usr/bin/env bash
# Where the PGD eps=8 drop on the demo data comes from (docs/pgd_bar_experiments.md). Needs README command 1
# (runs/demo/data, runs/demo/unet). Trains a 4x wider UNet on the same data (skipped when it exists), then
# attacks the first three test cases of both models with PGD eps 8 (10 steps), and the first two cases of the
# demo UNet with VAFA at q_max 20 / 40 / 80 (10 steps), and the first three test cases of the demo UNet at eps 8
# (10 steps) with other objectives: PGD on plain BCE, SegPGD and CosPGD. One JSON per model/objective and case in
# ${1:-runs/demo}/pgd_bar; a JSON that already exists is kept (delete the folder to recompute everything). Each
# sweep is one engine run on one case (scripts/pgd_budget_sweep.py), kept in pgd_bar/runs/NAME, where an
# interrupted sweep resumes.
set -euo pipefail
out="${1:-runs/demo}"
mkdir -p "$out/pgd_bar"
if [ ! -f "$out/unet_wide/best.pt" ]; then
  volrob train configs/unet.yaml --set "data.manifest=$out/data/manifest.json" --set "output_dir=$out/unet_wide" \
    --set seed=0 --set 'model.options.channels=[32,64,128,256]' --set model.options.num_res_units=2 --force
fi
# sweep NAME ARGS...: writes $out/pgd_bar/NAME.json unless it exists (through a temporary file, so an
# interrupted sweep leaves nothing behind)
sweep() {
  local name="$1" dest="$out/pgd_bar/$1.json"
  shift
  [ -s "$dest" ] && return 0
  python scripts/pgd_budget_sweep.py --manifest "$out/data/manifest.json" --split test --steps 10 \
    -o "$out/pgd_bar/runs/$name" "$@" > "$dest.tmp"
  mv "$dest.tmp" "$dest"
}
for i in 0 1 2; do
  sweep "unet_$i" --checkpoint "$out/unet/best.pt" --case "$i" --eps 8
  sweep "unet_wide_$i" --checkpoint "$out/unet_wide/best.pt" --case "$i" --eps 8
done
for i in 0 1; do
  sweep "vafa_$i" --checkpoint "$out/unet/best.pt" --case "$i" --attack vafa3d --q-max 20 40 80
done
for i in 0 1 2; do
  sweep "pgd_bce_$i" --checkpoint "$out/unet/best.pt" --case "$i" --eps 8 --loss bce
  sweep "segpgd_$i" --checkpoint "$out/unet/best.pt" --case "$i" --eps 8 --attack segpgd
  sweep "cospgd_$i" --checkpoint "$out/unet/best.pt" --case "$i" --eps 8 --attack cospgd
done
