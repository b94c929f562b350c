#!/usr/bin/env bash
# The GPU check: one command on a machine with one CUDA GPU, at most about 8 minutes, one JSON report on stdout
# (also written to $OUT/gpu_check.json when OUT is set, else to gpu_check.json). See docs/BENCHMARKS.md.
#
# The stack: a Python whose torch already sees the GPU is used as it is; otherwise the CUDA build of torch is
# installed from PyTorch's index (VOLROB_TORCH_INDEX, default CUDA 12.8). volrob's other dependencies come from
# wheels in .whl/ when that folder exists (scripts/gpu_wheels.sh fills it, for machines without a package index),
# else from the package index; volrob itself runs from this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    "$PY" -m pip install -q torch --index-url "${VOLROB_TORCH_INDEX:-https://download.pytorch.org/whl/cu128}"
fi
if [ -d .whl ]; then
    site=$(mktemp -d)
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$site" .whl/*.whl
    export PYTHONPATH="$site"
elif ! "$PY" -c "import monai, nibabel, torch_dct" 2>/dev/null; then
    torch_version=$("$PY" -c "import torch; print(torch.__version__.split('+')[0])")
    "$PY" -m pip install -q "monai>=1.5,<2" "nibabel>=5.0" "torch-dct>=0.1.6" "torch==$torch_version"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PY" scripts/gpu_check.py --budget "${VOLROB_GPU_BUDGET:-420}" --out "${OUT:-.}/gpu_check.json" "$@"
