#!/usr/bin/env bash
# The GPU run (issue 34), prepared to work at once on the device machine (Python
# 3.12, jax 0.11.2 with the CUDA 13 plugin, torch 2.11, no network): after
# `bash tests/device/fetch_wheels.sh` here, run from the repo root there, carrying .whl:
#   bash tests/device/gpu_bench.sh          (≈ 9 min; writes to $OUT, else runs/gpu)
# It installs the carried wheels into /tmp/site, prints the devices, then times JAX on the
# GPU against torch on the GPU: a layer breakdown and five passes, each with its own time
# limit (the bench writes its JSON after every model, so a pass cut short keeps the models
# it finished):
#   layers    MemAE-3D's conv layers at 16×256×256 alone (experiments.bench_layers): forward
#             and both gradients, JAX in the adjoint and the autodiff form against torch, and
#             the cuDNN calls in each compiled gradient;
#   memae3d, memae3d_xla   MemAE-3D at the official 16×256×256 clips, native 3D convolutions:
#             with the transposed convs' adjoint gradients (GPU 'auto', since 2026-12-04
#             evening) and with autodiff's (--conv_impl=xla), which trained at 0.08× torch
#             (234 ms vs 18 ms, second GPU run, docs/gpu/2026-12-04-run2_*.json; the folded
#             2D form, 247 ms, is no longer run);
#   paper     the table's models at their paper sizes and batches, float32, eager torch
#             (TF32 matmuls and convolutions on both sides), the rows the second run did not
#             reach first;
#   paper_bf16   the same in bfloat16 (torch under autocast);
#   compiled  the table's main rows against torch.compile, float32.
# Sized from the first two runs (2026-12-04): 40 s to start and carry, JAX's first calls
# 2–18 s a model, torch.compile 10–17 s; the second run's passes took 461 s in all.
# Here, on CPU (this Python has its packages; the cp312 wheels are not for it):
#   PY=.venv/bin/python WHEELS= SCALE=0.3 bash tests/device/gpu_bench.sh
# (SCALE multiplies every limit; the passes are sized for the GPU). ONLY='layers memae3d
# memae3d_xla' runs just those steps (≈ 3.5 min: for a short device budget).
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-runs/gpu}
py=${PY:-python3}
scale=${SCALE:-1}
mkdir -p "$out"
wheels=${WHEELS-.whl}
if [ -n "$wheels" ]; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$wheels"/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false   # torch shares the GPU
{ nvidia-smi -L 2>/dev/null || echo 'no nvidia-smi'
  "$py" -c 'import jax, flax, torch, vadjax; print("jax", jax.__version__, "flax", flax.__version__, jax.devices()); print("torch", torch.__version__, "cuda", torch.cuda.is_available())'
} 2>&1 | tee "$out/env.txt"
want() { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]; }
bench() {   # name, time limit (s), flags...
  want "$1" || return 0
  local name=$1 limit; limit=$(awk "BEGIN{print int($2 * $scale)}"); shift 2
  echo "## $name: $*" >> "$out/log.md"
  timeout "$limit" "$py" -m experiments.bench --out="$out/$name.json" "$@" 2>&1 |
    grep -v '^[IW][0-9]' > "$out/$name.log"
  echo "$name: exit ${PIPESTATUS[0]} (limit ${limit} s)" | tee -a "$out/env.txt"
  grep -E '^\| |failed|Error' "$out/$name.log" | grep -v -- '---' | tail -n 30
  cat "$out/$name.log" >> "$out/log.md" && rm "$out/$name.log"
}   # $OUT comes back as at most 8 files: env.txt, log.md and one JSON per pass
table=seq2seq_clstm,memae_3d,ks_cae_fused,feature_predictor,vit_s16,resnet50,memory,bcae1,ssa_cae,alps,memae_2d,cgru_ae,deep_ae,adacl_cnn
bf16=memae_2d,ssa_cae,cgru_ae,seq2seq_clstm,memae_3d,resnet50,vit_s16,bcae1,ks_cae_fused
m3d='--models=memae_3d --size=256 --torch_compile=false --isolated_memory=false --repeats=10 --warmup=2 --paired=4'
if want layers; then
  echo "## layers" >> "$out/log.md"
  timeout "$(awk "BEGIN{print int(60 * $scale)}")" "$py" -m experiments.bench_layers \
    --model=memae_3d --size=256 --batch=4 --forms=adjoint,xla 2>&1 | grep -v '^[IW][0-9]' |
    tee -a "$out/log.md" | grep -E '^\| |Error'
fi
bench memae3d 70 $m3d
bench memae3d_xla 60 $m3d --conv_impl=xla
bench paper 140 --models=$table --torch_compile=false --isolated_memory=false \
  --repeats=20 --warmup=3 --paired=8
bench paper_bf16 100 --models=$bf16 --dtype=bfloat16 --torch_compile=false \
  --isolated_memory=false --repeats=20 --warmup=3 --paired=8
bench compiled 90 --models=memae_3d,cgru_ae,ks_cae_fused,bcae1,deep_ae --torch_compile=true \
  --isolated_memory=false --repeats=20 --warmup=3
