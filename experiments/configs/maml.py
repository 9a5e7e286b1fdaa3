"""Few-shot scene adaptation on walkway cameras (seed 000 §2.2): MAML over scenes, and the
protocol's baselines (experiments/maml.py, docs/maml.md).

  python -m experiments.maml --config=experiments/configs/maml.py --workdir=runs/maml
  python -m experiments.maml --config=experiments/configs/maml.py:quick --workdir=/tmp/m

Training scenes are walkway cameras 1..train_scenes, held-out scenes 1000.. (never trained
on). Variants: `key=value` (`maml.order=first`, `shots=1;5;10`), `quick` (seconds).
"""

import ml_collections

from experiments.configs.base import apply_variant


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seeds = (0, 1)
  c.image_size = 32
  c.category = 'gray'
  c.train_scenes = 8               # cameras 1..8
  c.held_out_scenes = 4            # cameras 1000..1003
  c.video = ml_collections.ConfigDict(dict(length=80, num_train=1, num_test=2))
  c.frames_in = 4                  # t: frames in, the next one predicted
  c.model = ml_collections.ConfigDict(dict(features=(16, 32, 64), groups=4))
  c.maml = ml_collections.ConfigDict(dict(
      order='second',              # 'second' (MAML) or 'first' (FOMAML)
      inner_steps=1, inner_lr=0.5,  # α per mean squared error
      learn_inner_lr=False,        # Meta-SGD: α learned per parameter
      meta_batch=4,                # scenes per outer update
      k=5,                         # pairs in D^tr and in D^val while meta-training
      outer_lr=1e-3, meta_steps=400,
      task_map='auto'))            # tasks: 'vmap', 'loop' (unrolled), 'auto' (loop on CPU)
  c.shots = (1, 5, 10)             # K at meta-test
  c.fit_steps = 100                # Adam steps (outer_lr) of the fine-tuned and
                                   # from-scratch baselines on the K pairs
  c.eval_batch_size = 32
  return apply_variant(c, arg, quick)


def quick(c):
  """Seconds: 2 training scenes, 1 held-out, short videos, a few steps, K = 1 and 2."""
  c.seeds, c.image_size, c.train_scenes, c.held_out_scenes = (0,), 16, 2, 1
  c.video.update(length=24, num_train=1, num_test=1)
  c.model.features = (8, 16)
  c.maml.update(meta_batch=2, k=2, meta_steps=3)
  c.shots, c.fit_steps = (1, 2), 3
