#!/usr/bin/env bash
# The first GPU run (issue 34), prepared to work at once on the device machine (Python
# 3.12, jax 0.11.2 with the CUDA 13 plugin, torch 2.11, no network): after
# `bash tests/device/fetch_wheels.sh` here, run from the repo root there, carrying .whl:
#   bash tests/device/gpu_bench.sh          (≈ 4 min; writes to $OUT, else runs/gpu)
# It installs the carried wheels into /tmp/site, prints the devices, then runs the fast
# benchmark (one model per family, 32², batch 4) against torch eager and torch.compile in
# float32 and bfloat16, and an eager float32 pass at the paper sizes of the models that
# trail PyTorch on CPU. Each pass has its own time limit (270 s together) and the bench
# writes its JSON after every model, so a pass cut short keeps the models it finished. Here, on CPU (this Python has its packages; the cp312 wheels are not
# for it): `PY=.venv/bin/python WHEELS= bash tests/device/gpu_bench.sh`.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-runs/gpu}
py=${PY:-python3}
mkdir -p "$out"
wheels=${WHEELS-.whl}
if [ -n "$wheels" ]; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$wheels"/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
{ nvidia-smi -L 2>/dev/null || echo 'no nvidia-smi'
  "$py" -c 'import jax, torch, vadjax; print("jax", jax.__version__, jax.devices()); print("torch", torch.__version__, "cuda", torch.cuda.is_available())'
} 2>&1 | tee "$out/env.txt"
bench() {   # name, time limit (s), flags...
  local name=$1 limit=$2; shift 2
  timeout "$limit" "$py" -m experiments.bench --out="$out/$name.json" "$@" 2>&1 |
    grep -v '^[IW][0-9]' | tee "$out/$name.md"
  echo "$name: exit ${PIPESTATUS[0]}" | tee -a "$out/env.txt"
}
bench fast_float32 110 --fast --torch_compile=true --dtype=float32 --paired=8
bench fast_bfloat16 110 --fast --torch_compile=true --dtype=bfloat16 --paired=8
bench paper_float32 50 --models=bcae1,ks_cae_fused,alps,adacl_cnn,memae_3d,deep_ae \
  --torch_compile=false --isolated_memory=false --repeats=10 --paired=8
