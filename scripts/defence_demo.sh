#!/usr/bin/env bash
# Robust checkpoints on the synthetic demo data and their comparison (docs/defence_table.md). Needs README
# command 1 first (`bash scripts/demo.sh`: data in runs/demo/data, the clean UNet in runs/demo/unet). Fine-tunes
# the clean UNet with the defences below (skipped when their best.pt exists), for 10 epochs (EPOCHS) unless a model
# says 20, all at the same learning rate, plus the same fine-tunings without a defence as controls (unet_ft,
# unet_ft20; each check is also measured against the control of its own schedule), then runs the comparison grid
# (resumable: the engine's run folder $out/defence_table, which `volrob robustness` can also continue) and renders
# the document into ${DOCS:-docs}/defence_table.md (set DOCS to render a trial run elsewhere).
#   unet_pgd:  PGD adversarial training, eps 4/255, 3 steps, half clean / half adversarial loss
#   unet_pgd20: unet_pgd's defence for 20 epochs instead of 10
#   unet_pgd8: the same at eps 8/255 (twice the budget it is judged at), loss 0.3 clean + 0.7 adversarial
#   unet_fgsm: fast adversarial training (FGSM with random start), eps 4/255, same mix
#   unet_vaft: VAFA adversarial training (q_max 20, 5 steps) with the frequency-consistency loss
#   unet_vaft20: unet_vaft's defence for 20 epochs instead of 10
#   unet_vaft_fw01: unet_vaft20 with the frequency-consistency weight 0.1 instead of 1
#   unet_ft20: the control of the 20-epoch models (unet_ft for 20 epochs)
set -euo pipefail
out="${1:-runs/demo}"
seed="${SEED:-0}"
epochs="${EPOCHS:-10}"
docs="${DOCS:-docs}"
start=$(date +%s)
finetune() {  # name defence [--set options...] (a later --set train.epochs=N overrides $epochs)
  local name="$1" defence="$2"
  shift 2
  if [ ! -f "$out/$name/best.pt" ]; then
    volrob train configs/unet.yaml --set "data.manifest=$out/data/manifest.json" --set "output_dir=$out/$name" \
      --set "seed=$seed" --set "train.init_from=$out/unet/best.pt" --set "train.epochs=$epochs" \
      --set train.lr=0.001 --set train.warmup_epochs=0 --set "defence.name=$defence" "$@" --force
  fi
}
finetune unet_ft none
finetune unet_ft20 none --set train.epochs=20
finetune unet_pgd pgd_at --set defence.options.eps=4 --set defence.options.steps=3 \
  --set defence.options.clean_weight=0.5
finetune unet_pgd20 pgd_at --set defence.options.eps=4 --set defence.options.steps=3 \
  --set defence.options.clean_weight=0.5 --set train.epochs=20
finetune unet_pgd8 pgd_at --set defence.options.eps=8 --set defence.options.steps=3 \
  --set defence.options.clean_weight=0.3
finetune unet_fgsm fgsm_rs --set defence.options.eps=4 --set defence.options.clean_weight=0.5
finetune unet_vaft vaft --set defence.options.q_max=20 --set defence.options.steps=5 \
  --set defence.options.clean_weight=0.5
finetune unet_vaft20 vaft --set defence.options.q_max=20 --set defence.options.steps=5 \
  --set defence.options.clean_weight=0.5 --set train.epochs=20
finetune unet_vaft_fw01 vaft --set defence.options.q_max=20 --set defence.options.steps=5 \
  --set defence.options.clean_weight=0.5 --set defence.options.freq_weight=0.1 --set train.epochs=20
config=configs/robustness/defence_table.yaml
if [ "$out" != runs/demo ]; then  # the config names runs/demo/...: point it at $out instead
  sed "s#runs/demo/#$out/#g" "$config" > "$out/defence_table.yaml"
  config="$out/defence_table.yaml"
fi
python scripts/defence_table.py --config "$config" -o "$out/defence_table" \
  --doc "$docs/defence_table.md" --control unet_ft --control unet_ft20
[ -f "$out/defence_table/comparison.csv" ] || { echo "defence demo: no comparison.csv" >&2; exit 1; }
echo "defence demo finished in $(( $(date +%s) - start )) s"
