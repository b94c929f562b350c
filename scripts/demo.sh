#!/usr/bin/env bash
# The single-model demo on embedded synthetic data (docs/demo.md): synthesise BraTS-like cases, train the default
# small UNet, evaluate it on the held-out test cases and print the table. Everything goes into ${1:-runs/demo}
# (replaced on each run); the evaluation writes $out/eval/results.csv (one row per case x region x metric, the
# score in column `clean`), summary.csv (statistics per region and metric), run.json and the predicted label maps.
set -euo pipefail
out="${1:-runs/demo}"
seed="${SEED:-0}"
start=$(date +%s)
volrob synth -o "$out/data" --cases 30 --shape 96 96 96 --seed "$seed" --val-fraction 0.1 --test-fraction 0.2 --force
volrob train configs/unet.yaml --set "data.manifest=$out/data/manifest.json" --set "output_dir=$out/unet" \
  --set "seed=$seed" --force
volrob evaluate --checkpoint "$out/unet/best.pt" --manifest "$out/data/manifest.json" --split test \
  -o "$out/eval" --force --quiet
[ -f "$out/eval/results.csv" ] || { echo "demo: $out/eval/results.csv was not written" >&2; exit 1; }
echo "main job finished in $(( $(date +%s) - start )) s; results in $out/eval/results.csv"
