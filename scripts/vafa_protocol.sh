#!/usr/bin/env bash
# docs/vafa_protocol.md: volrob's default VAFA beside the published code's protocol (per-block SSIM term, per-slice
# min-max output rescale) on the synthetic single-model demo. Trains that model first when $out/unet/best.pt is
# missing (`bash scripts/demo.sh "$out"`: synthetic data, seed 0, small UNet), then runs the grid of
# configs/robustness/vafa_protocol.yaml into $out/vafa_protocol (an engine run folder: a rerun resumes) and renders
# ${DOCS:-docs}/vafa_protocol.md (set DOCS to render a trial run elsewhere). Everything goes under ${1:-runs/demo}.
set -euo pipefail
out="${1:-runs/demo}"
docs="${DOCS:-docs}"
start=$(date +%s)
[ -f "$out/unet/best.pt" ] || bash scripts/demo.sh "$out"
config=configs/robustness/vafa_protocol.yaml
if [ "$out" != runs/demo ]; then  # the config names runs/demo/...: point it at $out instead
  mkdir -p "$out"
  sed "s#runs/demo/#$out/#g" "$config" > "$out/vafa_protocol.yaml"
  config="$out/vafa_protocol.yaml"
fi
python scripts/vafa_protocol.py --config "$config" -o "$out/vafa_protocol" --doc "$docs/vafa_protocol.md" \
  --command "bash scripts/vafa_protocol.sh${1:+ $1}" --quiet
echo "vafa protocol finished in $(( $(date +%s) - start )) s; table in $docs/vafa_protocol.md"
