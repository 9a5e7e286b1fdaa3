"""The README's first command: BCAE1 on the embedded digits, one-class protocol over all 10
classes, then the results table. About 2-3 minutes on a 2-core CPU.

  python -m experiments.main    (same as --config=experiments/configs/quickstart.py)
"""

from experiments.configs.base import apply_variant, base_config, on_dataset, quick


def get_config(arg=None):
  c = base_config()
  c.model, c.dataset, c.image_size = 'bcae1', 'digits', 32
  c.num_epochs = 40
  return apply_variant(c, arg, quick, on_dataset=on_dataset)
