"""SA-CAE: BCAE1 behind the input soft-attention block with the λ‖x_AM‖ penalty (seed 001 eq. 3.11).
The code's form: model_kwargs.sa_form=code.

  python -m experiments.main --config=experiments/configs/sa_cae.py:dataset=textures,image_size=64 --workdir=runs/sa_cae
Variants: any config key as key=value, and `quick`. Shared settings: experiments/configs/zoo.py.
"""

from experiments.configs import zoo


def get_config(arg=None):
  return zoo.make('sa_cae', arg)
