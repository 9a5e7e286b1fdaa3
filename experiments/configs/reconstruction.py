"""Reconstruction autoencoders (BCAE1 of seed 001, the deep AE of seed 000): MSE training,
score = mean squared error.

Launch (variants: any config key as key=value, plus `quick`):
  python -m experiments.main --config=experiments/configs/reconstruction.py:model=bcae1,dataset=digits --workdir=runs/bcae1_digits
  python -m experiments.main --config=experiments/configs/reconstruction.py:dataset=textures,image_size=64 --workdir=runs/bcae1_textures
  python -m experiments.main --config=experiments/configs/reconstruction.py:dataset=folder,image_size=64 \
      --config.data.folder_root=/path/to/my_data --workdir=runs/my_data    # your own images
Expected runtime on a 2-core CPU (measured 2026-11-22): digits, all 10 classes, 1 seed
~2.5 min; textures at 64×64, all 3 textures, 1 seed ~2-3 min. On a video dataset the model
runs per frame (as the zoo configs: experiments/configs/base.py, `on_dataset`).
"""

from experiments.configs.base import apply_variant, base_config, on_dataset, quick


def get_config(arg=None):
  return apply_variant(base_config(), arg, quick, on_dataset=on_dataset)
