#!/usr/bin/env bash
# Transfer matrices on the synthetic demo data (docs/transfer_demo/report.md). Needs README command 1 first
# (`bash scripts/demo.sh`: data in runs/demo/data and the UNet in runs/demo/unet). Trains the UNETR and the
# Mamba-style model on the same data with the foundation's configs (skipped when their best.pt exists), with
# shorter schedules than the UNet's 30 epochs because both are several times slower per epoch on a CPU (UNETR 15
# epochs, Mamba-style 8), runs `volrob transfer configs/transfer/demo.yaml` (resumable; writes results.csv,
# matrices.csv, heatmaps/, bands.csv, bands_summary.csv, views/ and sanity.json in $out/transfer) and writes its
# report (volrob report) to ${DOCS:-docs}/transfer_demo/report.md (set DOCS to render a trial run elsewhere).
set -euo pipefail
out="${1:-runs/demo}"
seed="${SEED:-0}"
docs="${DOCS:-docs}"
start=$(date +%s)
train() {  # model epochs
  if [ ! -f "$out/$1/best.pt" ]; then
    volrob train "configs/$1.yaml" --set "data.manifest=$out/data/manifest.json" --set "output_dir=$out/$1" \
      --set "seed=$seed" --set "train.epochs=$2" --set "train.val_every=$(( $2 < 10 ? 4 : 5 ))" --force
  fi
}
train unetr 15
train umamba 8
volrob transfer configs/transfer/demo.yaml -o "$out/transfer" --set "seed=$seed" \
  --set "manifest=$out/data/manifest.json" --set "models=[{name: unet, checkpoint: $out/unet/best.pt},
  {name: unetr, checkpoint: $out/unetr/best.pt}, {name: umamba, checkpoint: $out/umamba/best.pt}]"
[ -f "$out/transfer/matrices.csv" ] || { echo "transfer demo: $out/transfer/matrices.csv was not written" >&2; exit 1; }
volrob report "$out/transfer" -o "$docs/transfer_demo/report.md" \
  --title "Transfer attacks between a UNet, a UNETR and a Mamba-style model (synthetic demo)"
echo "transfer demo finished in $(( $(date +%s) - start )) s"
