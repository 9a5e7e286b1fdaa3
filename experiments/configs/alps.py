"""ALPS (seed 002 ch. 3): an autoencoder trained against an Adversarial Distorter of its
latent; scores: clean, perturbed and mean reconstruction error (all three reported).

Presets (Tab. 3.3's ablation, same data and seeds): `vanilla` (no perturbation), `noise`
(random latent noise of the same scale); `textures` (the embedded textures at 64×64, 20 epochs);
`walkway` (the patch protocol on the embedded
video: 32×32 patches of 128×128 frames, stride 16 for training, 32 for scoring, moving
patches only); `quick`. Any key as key=value, e.g. alps.distorter_every=3, alps.score=clean,
model_kwargs.epsilon=1.0.

Launch:
  python -m experiments.main --config=experiments/configs/alps.py --workdir=runs/alps_digits
  python -m experiments.main --config=experiments/configs/alps.py:vanilla --workdir=runs/ae_digits
  python -m experiments.main --config=experiments/configs/alps.py:walkway --workdir=runs/alps_walkway
Expected runtime on a 2-core CPU (measured 2026-11-22): see BUILD_NOTES.md, issue 7.
"""

import ml_collections

from experiments.configs import base
from experiments.configs.base import apply_variant, base_config, patch_presets


def quick(c):
  base.quick(c)
  if c.dataset == 'walkway':
    c.image_size = 64
    c.data.patches.update(stride=32, test_stride=32)


def patches(c):
  """The UCSD patch protocol (seed 002 §3.4.2) on any video dataset: one-frame clips cut
  into patches; a frame scores the max over its patches."""
  c.image_size = 128
  c.data.patches.update(size=32, stride=16, test_stride=32, min_change=0.01)
  c.batch_size, c.eval_batch_size = 64, 16


walkway, on_dataset = patch_presets(patches)


def textures(c):
  # 20 epochs of ~8 steps: as many steps as the 60 epochs of digits' ~3
  c.dataset, c.image_size, c.num_epochs = 'textures', 64, 20


PRESETS = {
    'textures': textures,
    'vanilla': lambda c: setattr(c.model_kwargs, 'perturbation', 'none'),
    'noise': lambda c: setattr(c.model_kwargs, 'perturbation', 'noise'),
    'walkway': walkway,
}


def get_config(arg=None):
  c = base_config()
  c.model, c.method, c.dataset, c.image_size = 'alps', 'alps', 'digits', 32
  c.model_kwargs = ml_collections.ConfigDict(dict(
      latent_dim=32, perturbation='adversarial', epsilon=0.5))
  # a fixed number of epochs: the validation loss moves with the distorter, so neither
  # ReduceLROnPlateau nor early stopping on it is meaningful
  c.early_stopping_patience = 0
  c.optimizer.plateau_factor = 1.0
  c.num_epochs = 60               # ~3 steps per epoch on digits: ~180 steps
  return apply_variant(c, arg, quick, PRESETS, on_dataset)
