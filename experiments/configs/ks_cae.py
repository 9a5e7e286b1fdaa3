"""KS-CAE (seed 001 §3.3, §4.5): BCAE2 with ACB/ADB blocks and half the kernels, 128×128.
After training, vadjax.models.ks_cae.fuse_ks_cae folds a model's blocks into plain layers
(same outputs, a plain layer's cost: tests/test_zoo.py, `experiments.bench --models=ks_cae_fused`).

  python -m experiments.main --config=experiments/configs/ks_cae.py:dataset=textures --workdir=runs/ks_cae
Variants: any config key as key=value, and `quick`. Shared settings: experiments/configs/zoo.py.
"""

from experiments.configs import zoo


def get_config(arg=None):
  return zoo.make('ks_cae', arg)
