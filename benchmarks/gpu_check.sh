#!/usr/bin/env bash
# One prepared run on a GPU machine (issue 13), at most ~8 minutes: installs the wheels that machine
# lacks, runs the CUDA test module, bench_attribution with resnet18, bench_analyze at per-class 1500,
# bench_analyze at per-class 6000 and, with the time left, a short t-SNE thread probe on the 16
# cores (fft vs bh, 2 vs 15 threads), printing every figure (and keeping a copy in $OUT/gpu_check.log when $OUT is set).
#
# Prepare here (the GPU machine reaches no network):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       --platform any -d .gpu-wheels captum==0.9.0 polars==2.1.0 polars-runtime-32==2.1.0 \
#       openTSNE==1.0.4 param==2.4.2                     # ~57 MB; .gpu-wheels/ is git-ignored
# Run there from the repository root, carrying .gpu-wheels:
#   bash benchmarks/gpu_check.sh            (device tool: carry [".gpu-wheels"], timeout_s 540)
# Each step has its own time limit and the last one gets what is left of BUDGET_S, so a slow step
# costs the later figures, not the whole output.
set -uo pipefail
cd "$(dirname "$0")/.."
BUDGET_S=${BUDGET_S:-480}
START=$(date +%s)
LOG=${OUT:-/tmp}/gpu_check.log
PY=${PYTHON:-python3}
exec > >(tee "$LOG") 2>&1
export PYTHONUNBUFFERED=1

left() { echo $(( BUDGET_S - ($(date +%s) - START) )); }
step() {  # step NAME LIMIT_S COMMAND...: run with a time limit, never longer than what is left
  local name=$1 limit=$2; shift 2
  local remaining; remaining=$(left)
  (( limit > remaining )) && limit=$remaining
  if (( limit < 20 )); then echo "== $name: skipped, ${remaining} s left of ${BUDGET_S}"; return; fi
  echo "== $name (limit ${limit} s, $(date -u +%T), load $(cut -d' ' -f1 /proc/loadavg))"
  local t0; t0=$(date +%s)
  timeout --signal=INT --kill-after=10 "$limit" "$@"
  echo "== $name: exit $?, $(( $(date +%s) - t0 )) s"
}

$PY -c 'import sys; assert sys.version_info[:2] == (3, 12), f"wheels are for Python 3.12, this is {sys.version}"' || exit 1
ls .gpu-wheels/*.whl >/dev/null 2>&1 || { echo "no .gpu-wheels/*.whl: download them first (see the top of this script)"; exit 1; }
SITE=$PWD/.gpu-site
$PY -m pip install --quiet --no-deps --no-index --target "$SITE" .gpu-wheels/*.whl || exit 1
export PYTHONPATH=$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}
$PY - <<'EOF'
import torch, captum, polars, openTSNE, param, tlexplorer
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
print("captum", captum.__version__, "polars", polars.__version__, "openTSNE", openTSNE.__version__,
      "param", param.__version__, "tlexplorer from", tlexplorer.__file__)
EOF
nproc; free -g | head -2

step "CUDA tests" 90 $PY -m pytest tests/analysis/test_cuda.py -m cuda -q -p no:cacheprovider
step "bench_attribution on the GPU (digits-alexnet 256, alexnet 32, resnet18 32 images)" 150 \
    $PY benchmarks/bench_attribution.py --device cuda --models digits-alexnet,alexnet,resnet18 \
        --digits-images 256 --alexnet-images 32 --resnet-images 32 --repeats 3
step "bench_analyze per-class 1500 (the paper's size)" 150 \
    $PY benchmarks/bench_analyze.py --work /tmp/tlx-gpu --per-class 1500 --device cuda
step "bench_analyze per-class 6000 (4x the paper)" 400 \
    $PY benchmarks/bench_analyze.py --work /tmp/tlx-gpu --per-class 6000 --device cuda
step "t-SNE threads and gradient method on this machine's CPUs (150 iterations each)" 90 \
    $PY benchmarks/bench_tsne_settings.py --embedding /tmp/tlx-gpu/bundle-1500/arrays/embedding.npy \
        --labels /tmp/tlx-gpu/bundle-1500/arrays/predictions/target.npy --threads 2 15 --methods fft bh \
        --iterations 50 100
echo "== done in $(( $(date +%s) - START )) s"
