"""DINO self-supervised pretraining of a ViT on a dataset's training frames (seed 004's
backbone; Caron et al. 2021; vadjax/methods/dino.py).

Default: `vit_mini` on the grey walkway's training videos (960 frames of 128×128), global
crops 64², 4 local crops 32², batch 32, 600 steps: ~10 min on a 2-core CPU. The
teacher's backbone is written to <workdir>/backbone.npz in the DINO release's names, for
`features.weights` of experiments/configs/feature_prediction.py. Any image or video dataset
of vadjax works (`dataset=digits`, `dataset=ucsd_ped2,data.manual_dir=...`).

  python -m experiments.dino --config=experiments/configs/dino.py --workdir=runs/dino
  python -m experiments.dino --config=experiments/configs/dino.py:quick --workdir=/tmp/dino
"""

import ml_collections

from experiments.configs.base import apply_variant, base_config
from vadjax.methods.dino import Settings


def quick(c):
  """Seconds: a few steps on short videos, small crops and head."""
  c.image_size, c.batch_size, c.steps, c.log_every_steps = 32, 8, 6, 2
  c.checkpoint_every_steps, c.probe_every_steps = 4, 3
  c.data.video.update(length=24, num_train=1, num_val=1, num_test=1)
  c.dino.update(global_size=32, local_size=16, local_crops=2, out_dim=64, hidden=32,
                bottleneck=16, warmup_steps=2, teacher_temp_warmup_steps=3,
                freeze_last_layer_steps=1)


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.backbone = 'vit_mini'
  c.dataset, c.categories, c.image_size = 'walkway', 'gray', 128
  c.data = base_config().data          # the datasets' settings, as every config has them
  c.seed = 0
  c.batch_size = 32
  c.steps = 600
  c.log_every_steps = 20
  c.checkpoint_every_steps = 100
  c.probe_every_steps = 100       # k-NN accuracy on digits' classes (0: no probe)
  c.dino = ml_collections.ConfigDict(
      {k: v for k, v in Settings().__dict__.items()})
  return apply_variant(c, arg, quick)
