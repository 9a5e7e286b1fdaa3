"""BCAE1 + SVDD: BCAE1 training, then 10 epochs of SVDD encoder fine-tuning at lr 5e-7
(seed 001 §3.6, §4.8; `svdd.*` keys). The lr × epochs study:
`python -m experiments.sweep --study=svdd`.

  python -m experiments.main --config=experiments/configs/svdd_cae.py:dataset=textures,image_size=64 --workdir=runs/svdd_cae
Variants: any config key as key=value, and `quick`. Shared settings: experiments/configs/zoo.py.
"""

from experiments.configs import zoo


def get_config(arg=None):
  return zoo.make('svdd_cae', arg)
