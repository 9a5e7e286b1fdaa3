"""BCAE1 trained and scored with the compound SSIM loss η·MSE + (1 − η)(1 − SSIM), η = 0.5
(seed 001 §3.4, §4.6; `ssim.weight`).

  python -m experiments.main --config=experiments/configs/ssim_cae.py:dataset=textures,image_size=64 --workdir=runs/ssim_cae
Variants: any config key as key=value, and `quick`. Shared settings: experiments/configs/zoo.py.
"""

from experiments.configs import zoo


def get_config(arg=None):
  return zoo.make('ssim_cae', arg)
