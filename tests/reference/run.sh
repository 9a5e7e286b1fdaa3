#!/usr/bin/env bash
# The reference lane (not part of .ci/run): vadjax against the PyTorch libraries it mirrors.
#   bash tests/reference/run.sh [OUT]      (default OUT: runs/reference)
# Builds .venv-reference if missing: PyTorch's default build with torchvision, timm, zennit
# and safetensors (several GB; the test extras' CPU torch 2.13.0 cannot carry torchvision),
# plus vadjax. The two sides run as separate processes and exchange tensors only through
# files in OUT; the last step prints each check's measured error and writes OUT/report.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-runs/reference}
venv=.venv-reference
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import torchvision, timm, zennit, safetensors, vadjax' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q torch==2.14.1 torchvision==0.29.1 timm==1.0.29 zennit==0.5.1 safetensors
  "$venv/bin/pip" install -q -e .
fi
py="$venv/bin/python"
# float64 is judged: without vadjax's YNNPACK dot fusion, which returned garbage in some
# compiled float64 programs with jaxlib 0.10.2 (BUILD_NOTES.md, "Test suite")
export VADJAX_XLA_CPU_FLAGS=0
mkdir -p "$out"
echo "+ torch: torchvision's and timm's backbones"
"$py" -m tests.reference.torch_side loaders "$out"
for precision in float64 float32; do   # float64 is judged; float32 shows rounding's share
  echo "+ vadjax ($precision): DINO steps and ε-LRP maps"
  "$py" -m tests.reference.vadjax_side inputs "$out" $precision
  echo "+ torch ($precision): the DINO reference step, zennit"
  "$py" -m tests.reference.torch_side dino "$out/$precision"
  "$py" -m tests.reference.torch_side lrp "$out/$precision"
done
echo "+ compare"
"$py" -m tests.reference.vadjax_side check "$out"
