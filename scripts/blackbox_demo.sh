#!/usr/bin/env bash
# Query-based and universal black-box attacks on the synthetic demo models (docs/blackbox_demo/). Needs README
# command 1 and `bash scripts/transfer_demo.sh` first (the UNet, UNETR and Mamba-style checkpoints in runs/demo).
#   square3d on the UNet: L-inf 8/255, 200 queries per test case, scored after 25, 50, 100 and 200 queries
#   universal: one ROI-sized delta (8/255) learned on the UNet's training crops, tiled over the test cases and
#   scored on all three models beside a random-sign control of the same budget (attack sign_noise)
# A finished command is skipped (its queries.csv / results.csv exists); an interrupted one resumes in its folder.
# Each run's report (volrob report) goes to ${DOCS:-docs}/blackbox_demo/{query,universal}.md (set DOCS to render a
# trial run elsewhere).
set -euo pipefail
out="${1:-runs/demo}"
seed="${SEED:-0}"
docs="${DOCS:-docs}"
start=$(date +%s)
man="$out/data/manifest.json"
if [ ! -f "$out/query/queries.csv" ]; then
  volrob query --checkpoint "$out/unet/best.pt" --manifest "$man" --eps 8 --queries 200 \
    --checkpoints 25 50 100 --seed "$seed" -o "$out/query" --quiet
fi
if [ ! -f "$out/universal/results.csv" ]; then
  volrob universal --source "$out/unet/best.pt" --source-name unet --target "unetr=$out/unetr/best.pt" \
    --target "umamba=$out/umamba/best.pt" --manifest "$man" --eps 8 --epochs 5 --seed "$seed" \
    -o "$out/universal" --quiet
fi
volrob report "$out/query" -o "$docs/blackbox_demo/query.md" \
  --title "Square attack by queries on the demo UNet (synthetic)"
volrob report "$out/universal" -o "$docs/blackbox_demo/universal.md" \
  --title "A universal perturbation learned on the demo UNet, scored on three models (synthetic)"
echo "black-box demo finished in $(( $(date +%s) - start )) s"
