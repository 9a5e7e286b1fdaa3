#!/usr/bin/env bash
# Run here (PyPI reachable), before a GPU session: the cp312 wheels of what vadjax's
# benchmark imports and the device image lacks (the image has jax 0.11.2 + CUDA 13, torch
# 2.11, flax, optax, orbax, chex, absl, etils, numpy, protobuf, pyarrow, ...: the device
# entry's KINDS.md). Into .whl/ (excluded from git), then `bash tests/device/gpu_bench.sh`
# there, carrying .whl. promise has no wheel on PyPI: it is built here (pure Python).
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${platforms[@]}" -d .whl \
  grain==0.2.18 array-record==0.8.6 tensorflow-datasets==4.9.10 importlib_resources==7.1.0 \
  ml-collections==1.1.0 tensorboardX==2.6.5 portpicker==1.6.0 dm-tree==0.1.10 \
  immutabledict==4.3.1 simple-parsing==0.1.9 docstring-parser==0.18.0 \
  tensorflow-metadata==1.21.0 googleapis-common-protos==1.76.0 termcolor==3.3.0 toml==0.10.2
python3 -m pip wheel -q --no-deps -w .whl promise==2.3
ls -1 .whl
du -sh .whl
