"""AA-CAE: BCAE1 whose encoder convs are attention-augmented (d_k = C/8, d_v = 1, one head; seed 001 §3.5.2).

  python -m experiments.main --config=experiments/configs/aa_cae.py:dataset=textures,image_size=64 --workdir=runs/aa_cae
Variants: any config key as key=value, and `quick`. Shared settings: experiments/configs/zoo.py.
"""

from experiments.configs import zoo


def get_config(arg=None):
  return zoo.make('aa_cae', arg)
