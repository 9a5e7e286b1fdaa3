"""LTPA-AE (seed 000 §3.3.3): the deep AE with "learn to pay attention" on encoder blocks 2
and 4, on seed 000's protocol. Dot-product compatibility: model_kwargs.compatibility=dp.

  python -m experiments.main --config=experiments/configs/ltpa_ae.py --workdir=runs/ltpa_ae
Variants: any config key as key=value, and `quick`. Shared settings: experiments/configs/zoo.py.
"""

from experiments.configs import zoo


def get_config(arg=None):
  return zoo.make('ltpa_ae', arg)
