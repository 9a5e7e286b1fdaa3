"""DINO self-supervised pretraining of a ViT on a dataset's training frames (seed 004's
backbone; Caron et al. 2021; vadjax/methods/dino.py).

Default: `vit_mini` on the most varied images vadjax has offline, together (2,807 at
64×64: digits, the scikit-image texture photos, walkway's grey frames), global crops 64²,
4 local crops 32², batch 32, 1000 steps: ~8 min on a 2-core CPU. The setting is the one
that left the uniform collapse in the trials of docs/features.md: lr 8e-3 per 256, teacher
momentum from 0.99, a fixed teacher temperature 0.04, KoLeo weight 1. A k-NN probe on
digits' classes runs every 250 steps; step 0 is the random ViT. The teacher's backbone is
written to <workdir>/backbone.npz in the DINO release's names, for `features.weights` of
experiments/configs/feature_prediction.py. Any image or video dataset of vadjax works, or
several joined by '+' (`dataset=walkway,categories=gray`,
`dataset=ucsd_ped2,data.manual_dir=...`).

  python -m experiments.dino --config=experiments/configs/dino.py --workdir=runs/dino
  python -m experiments.dino --config=experiments/configs/dino.py:quick --workdir=/tmp/dino
"""

import ml_collections

from experiments.configs.base import apply_variant, base_config
from vadjax.methods.dino import Settings

VARIED = 'digits:all+textures:all+walkway:gray'   # the default pretraining images


def quick(c):
  """Seconds: a few steps on short walkway videos (unless a dataset is given), small crops
  and head."""
  if c.dataset == VARIED:
    c.dataset, c.categories = 'walkway', 'gray'
  c.image_size, c.batch_size, c.steps, c.log_every_steps = 32, 8, 6, 2
  c.checkpoint_every_steps, c.probe_every_steps = 4, 3
  c.data.video.update(length=24, num_train=1, num_val=1, num_test=1)
  c.dino.update(global_size=32, local_size=16, local_crops=2, out_dim=64, hidden=32,
                bottleneck=16, warmup_steps=2, teacher_temp_warmup_steps=3,
                freeze_last_layer_steps=1)


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.backbone = 'vit_mini'
  c.dataset, c.categories = VARIED, 'all'
  c.image_size = 64
  c.data = base_config().data          # the datasets' settings, as every config has them
  c.seed = 0
  c.batch_size = 32
  c.steps = 1000
  c.log_every_steps = 50
  c.checkpoint_every_steps = 100
  c.probe_every_steps = 250       # k-NN accuracy on digits' classes (0: no probe)
  c.dino = ml_collections.ConfigDict(
      {k: v for k, v in Settings().__dict__.items()})
  # what left the uniform collapse (docs/features.md); Settings keeps the release's values
  c.dino.update(base_lr=0.008, momentum=(0.99, 1.0), teacher_temp=(0.04, 0.04),
                koleo_weight=1.0)
  return apply_variant(c, arg, quick)
