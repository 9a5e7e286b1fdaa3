"""Seed 000's protocol (000_a976e3abf5973a77.txt §4.1.2, Tab. 4-4/4-5) on embedded digits.

The baseline deep AE trained on normal class "1" at 32×32 with Adam lr 2e-4, MSE, up to 50
epochs with early stopping; accuracy / precision / recall / F1 at the buffered threshold
and at the plain mean threshold, with the normal class "1" as the positive class as in the
seed's tables. Differences from the seed: digits (8×8 scans, ~109 training images of "1")
instead of MNIST; batch 16 and up to 200 epochs instead of 256 and 50, which keeps the
seed's number of updates (~1300: 6742 MNIST "1"s / 256 × 50) on our ~109 training images;
early-stopping patience 20 epochs; the anomalous class means α_i of the buffer come from the
labelled validation split.

  python -m experiments.main --config=experiments/configs/seed000.py --workdir=runs/seed000
Expected runtime on a 2-core CPU: about 1-2 minutes (3 seeds).
"""

from experiments.configs.base import apply_variant, base_config, on_dataset, quick


def get_config(arg=None):
  c = base_config()
  c.model, c.dataset, c.categories, c.image_size = 'deep_ae', 'digits', '1', 32
  c.seeds = (0, 1, 2)
  c.optimizer.learning_rate, c.optimizer.weight_decay = 2e-4, 0.0
  c.batch_size, c.num_epochs = 16, 200
  c.optimizer.plateau_patience = 1000    # the seed uses a fixed learning rate
  c.early_stopping_patience = 20
  c.positive = 'normal'
  return apply_variant(c, arg, quick, on_dataset=on_dataset)
