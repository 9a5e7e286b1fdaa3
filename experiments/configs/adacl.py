"""ADACL (seed 002 ch. 4): a small CNN regressor trained on normal images (labels in
[0, 0.3]) and anomalies created from them on device (labels in [0.7, 1]); Adam with a
cyclic learning rate; early stopping on the AUROC of a validation set of normal images and
their created anomalies.

Ablations as presets (Tab. 4.4, Figs. 4.7–4.10): `bce` (binary cross-entropy on a sigmoid),
`discrete` (labels 0 / 1), `cutpaste` / `puzzle` / `rotate` / `mixup` (that augmentation
alone), `narrow` ([0, 0.1] – [0.9, 1]) and `mid` ([0, 0.2] – [0.8, 1]) label intervals;
`textures` (the embedded MVTec-like textures: drawn defects at test time, never the training
augmentations), `walkway` (the patch protocol on the embedded video: 30×30 patches of
120×120 frames, moving patches only), `quick`. Any key as key=value, e.g.
adacl.augmentations=cutpaste;puzzle, adacl.normal_interval=0;0.25.

Launch:
  python -m experiments.main --config=experiments/configs/adacl.py --workdir=runs/adacl_digits
  python -m experiments.main --config=experiments/configs/adacl.py:textures --workdir=runs/adacl_textures
  python -m experiments.main --config=experiments/configs/adacl.py:bce --workdir=runs/adacl_bce
Expected runtime on a 2-core CPU (measured 2026-11-22): see BUILD_NOTES.md, issue 7.
"""

from experiments.configs import base
from experiments.configs.base import apply_variant, base_config, patch_presets


def quick(c):
  base.quick(c)
  if c.dataset == 'walkway':
    c.image_size = 60


def only(name):
  return lambda c: setattr(c.adacl, 'augmentations', (name,))


def intervals(normal, anomaly):
  def apply(c):
    c.adacl.normal_interval, c.adacl.anomaly_interval = normal, anomaly
  return apply


def textures(c):
  c.dataset, c.image_size = 'textures', 64


def patches(c):
  """The UCSD patch protocol (seed 002 §3.4.2) on any video dataset: one-frame clips cut
  into patches; a frame scores the max over its patches."""
  c.image_size = 120
  c.data.patches.update(size=30, stride=15, test_stride=30, min_change=0.01)
  c.batch_size, c.eval_batch_size = 64, 16


walkway, on_dataset = patch_presets(patches)


PRESETS = {
    'bce': lambda c: setattr(c.adacl, 'loss', 'bce'),
    'discrete': lambda c: setattr(c.adacl, 'labels', 'discrete'),
    **{n: only(n) for n in ('cutpaste', 'puzzle', 'rotate', 'mixup')},
    'narrow': intervals((0.0, 0.1), (0.9, 1.0)),
    'mid': intervals((0.0, 0.2), (0.8, 1.0)),
    'textures': textures,
    'walkway': walkway,
}


def get_config(arg=None):
  c = base_config()
  c.model, c.method, c.dataset, c.image_size = 'adacl_cnn', 'adacl', 'digits', 32
  c.optimizer.update(lr_schedule='cyclic', learning_rate=1e-4, max_learning_rate=1e-3,
                     lr_cycle_steps=20,
                     plateau_factor=1.0)   # the cyclic schedule sets the learning rate
  c.early_stopping_patience = 10   # epochs without a better validation AUROC
  c.num_epochs = 60
  return apply_variant(c, arg, quick, PRESETS, on_dataset)
