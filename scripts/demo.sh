#!/usr/bin/env bash
# The single-model demo on embedded synthetic data, the base of the transfer and black-box demos: synthesise
# BraTS-like cases, train the default small UNet, evaluate it on the held-out test cases and print the table.
# Everything goes into ${1:-runs/demo} (replaced on each run); the evaluation writes $out/eval/results.csv (one row
# per case x region x metric, the score in column `clean`), summary.csv, run.json and the predicted label maps, and
# its report (volrob report) goes to ${DOCS:-docs}/demo/report.md (set DOCS to render a trial run elsewhere).
set -euo pipefail
out="${1:-runs/demo}"
seed="${SEED:-0}"
docs="${DOCS:-docs}"
start=$(date +%s)
volrob synth -o "$out/data" --cases 30 --shape 96 96 96 --seed "$seed" --val-fraction 0.1 --test-fraction 0.2 --force
volrob train configs/unet.yaml --set "data.manifest=$out/data/manifest.json" --set "output_dir=$out/unet" \
  --set "seed=$seed" --force
volrob evaluate --checkpoint "$out/unet/best.pt" --manifest "$out/data/manifest.json" --split test \
  -o "$out/eval" --force --quiet
[ -f "$out/eval/results.csv" ] || { echo "demo: $out/eval/results.csv was not written" >&2; exit 1; }
volrob report "$out/eval" -o "$docs/demo/report.md" --title "Single-model demo: a UNet on synthetic data"
echo "main job finished in $(( $(date +%s) - start )) s; results in $out/eval/results.csv"
