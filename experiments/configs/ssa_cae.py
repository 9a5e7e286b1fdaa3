"""SSA-CAE: BCAE1 behind the softmax input soft-attention block, scaled to [0.3, 1] per sample
(seed 001 eq. 3.12).

  python -m experiments.main --config=experiments/configs/ssa_cae.py:dataset=textures,image_size=64 --workdir=runs/ssa_cae
Variants: any config key as key=value, and `quick`. Shared settings: experiments/configs/zoo.py.
"""

from experiments.configs import zoo


def get_config(arg=None):
  return zoo.make('ssa_cae', arg)
