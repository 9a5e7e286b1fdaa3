"""BCAE2, the baseline of KS-CAE (seed 001 §4.5): 128×128 inputs, embedding 1×300.

  python -m experiments.main --config=experiments/configs/bcae2.py:dataset=textures --workdir=runs/bcae2
Variants: any config key as key=value, and `quick`. Shared settings: experiments/configs/zoo.py.
"""

from experiments.configs import zoo


def get_config(arg=None):
  return zoo.make('bcae2', arg)
