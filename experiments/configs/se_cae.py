"""SE-CAE: BCAE1 with squeeze-excitation after encoder and decoder layers 1-4 (seed 001 §3.5.2, §4.7).

  python -m experiments.main --config=experiments/configs/se_cae.py:dataset=textures,image_size=64 --workdir=runs/se_cae
Variants: any config key as key=value, and `quick`. Shared settings: experiments/configs/zoo.py.
"""

from experiments.configs import zoo


def get_config(arg=None):
  return zoo.make('se_cae', arg)
