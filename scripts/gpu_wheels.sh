#!/usr/bin/env bash
# Wheels of volrob's dependencies that a GPU machine without a package index lacks (its image already has a CUDA
# torch, numpy, scipy, pandas, matplotlib, pyyaml, tqdm, einops, pytest and hypothesis), for Python 3.12 on
# x86-64 Linux, saved in .whl/ (ignored by git). scripts/gpu_check.sh installs them from there when .whl/ exists.
# SimpleITK (about 50 MB) is left out: the check reads NIfTI through nibabel only.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d .whl "monai==1.6.1" "nibabel>=5.0" "torch-dct==0.1.6"
ls -1 .whl
