#!/usr/bin/env bash
# Run here, no GPU needed: compiles the benchmark's train steps for an H200 and lists the
# cuDNN calls XLA:GPU makes of them (experiments/gpu_compile.py). JAX's CUDA plugin, of the
# same version as the jaxlib of requirements.txt, goes into its own virtual environment
# (.venv-gpu-compile, ~1.5 GB with the test extras; the plugin itself ~130 MB), so the
# project's venvs stay CPU-only. Arguments go to the script, e.g.
#   bash tests/device/gpu_compile.sh --models=memae_3d --forms=xla,auto --size=256
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=.venv-gpu-compile
jaxlib=$(grep -E '^jaxlib==' requirements.txt | cut -d= -f3)
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r requirements-test.txt -e . \
    "jax-cuda13-plugin==$jaxlib" "jax-cuda13-pjrt==$jaxlib"
fi
JAX_PLATFORMS=cpu "$venv/bin/python" -m experiments.gpu_compile "$@"
