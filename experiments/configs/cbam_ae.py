"""CBAM-AE (seed 000 §3.3.2): the deep AE with CBAM after encoder blocks 2 and 4, on seed 000's
protocol (experiments/configs/seed000.py: digits class "1", buffered threshold).

  python -m experiments.main --config=experiments/configs/cbam_ae.py --workdir=runs/cbam_ae
Variants: any config key as key=value, and `quick`. Shared settings: experiments/configs/zoo.py.
"""

from experiments.configs import zoo


def get_config(arg=None):
  return zoo.make('cbam_ae', arg)
