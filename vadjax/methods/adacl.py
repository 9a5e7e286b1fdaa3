"""ADACL: anomaly detection as regression on created anomalies (seed 002,
002_437da2b4a4748de8.txt §4.3–4.4; METHODS.md §3).

Every training batch of B normal images becomes 2B on device: the images and one created
anomaly of each (`vadjax.data.augment`, a transform drawn per sample). Labels: continuous,
normal ~ U[normal_interval], anomaly ~ U[anomaly_interval] ([0, 0.3] and [0.7, 1], §4.3.3),
or discrete 0 / 1 (`labels='discrete'`). Loss: MSE between the raw output and the label
(`loss='mse'`; the raw output keeps its gradient outside [0, 1], where the clipped one has
none), or binary cross-entropy on the output as a logit (`loss='bce'`, Fig. 4.7).
Score: the output clipped to [0, 1] (the thesis; sigmoid for BCE); `score/raw` (the
unclipped output, no ties at 0 and 1) is reported as `auroc_raw`.
Early stopping watches the AUROC of a fixed validation set: up to `num_val` (150) normal
validation images (patches, under the patch protocol) and one created anomaly of each,
drawn once from the run's seed.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vadjax.data import augment
from vadjax.data.sources import ArraySource
from vadjax.eval import plots
from vadjax.methods import METHODS
from vadjax.methods.base import Method, settings as method_settings
from vadjax.registry import UserError

DEFAULTS = dict(augmentations=augment.AUGMENTATIONS, normal_interval=(0.0, 0.3),
                anomaly_interval=(0.7, 1.0), labels='continuous', loss='mse', num_val=150)


def settings(config) -> dict:
  s = method_settings(config, 'adacl', DEFAULTS)
  s['augmentations'] = tuple(s['augmentations'])
  if s['labels'] not in ('continuous', 'discrete'):
    raise UserError(f"adacl.labels must be 'continuous' or 'discrete', got {s['labels']!r}")
  if s['loss'] not in ('mse', 'bce'):
    raise UserError(f"adacl.loss must be 'mse' or 'bce', got {s['loss']!r}")
  for name in ('normal_interval', 'anomaly_interval'):
    lo, hi = s[name]
    if not 0 <= lo <= hi <= 1:
      raise UserError(f'adacl.{name} must be 0 <= low <= high <= 1, got {s[name]}')
  if s['normal_interval'][1] >= s['anomaly_interval'][0]:
    raise UserError(f'adacl intervals overlap: normal {s["normal_interval"]}, anomaly '
                     f'{s["anomaly_interval"]}')
  return s


@METHODS.register('adacl')
class ADACL(Method):
  group = 'adacl'
  DEFAULTS = DEFAULTS
  validation = 'auroc'

  def __init__(self, config=None):
    self.s = settings(config)

  def labels(self, key, n):
    """(2n,) training labels: n normal, then n anomalous."""
    if self.s['labels'] == 'discrete':
      return jnp.concatenate([jnp.zeros(n), jnp.ones(n)])
    k1, k2 = jax.random.split(key)
    (a, b), (c, d) = self.s['normal_interval'], self.s['anomaly_interval']
    return jnp.concatenate([jax.random.uniform(k1, (n,), minval=a, maxval=b),
                            jax.random.uniform(k2, (n,), minval=c, maxval=d)])

  def augment(self, batch, rng):
    x = batch['image']
    k_aug, k_lab = jax.random.split(rng)
    anomalies, _ = augment.create_anomalies(k_aug, x, self.s['augmentations'])
    return {'image': jnp.concatenate([x, anomalies]),
            'target': self.labels(k_lab, x.shape[0])}

  def loss_fn(self, outputs, batch):
    raw = outputs['prediction']
    target = batch.get('target', jnp.zeros_like(raw))   # plain batches hold normals only
    if self.s['loss'] == 'mse':
      per = jnp.square(raw - target)
    else:
      per = optax.sigmoid_binary_cross_entropy(raw, target)
    w = batch.get('weight')
    loss = jnp.mean(per) if w is None else jnp.sum(per * w) / jnp.sum(w)
    return loss, {self.s['loss']: loss}

  def score_fn(self, outputs, batch):
    del batch
    raw = outputs['prediction']
    score = jnp.clip(raw, 0, 1) if self.s['loss'] == 'mse' else jax.nn.sigmoid(raw)
    return {'score': score, 'score/raw': raw}

  def validation_set(self, val_normals, seed: int) -> ArraySource:
    """`num_val` normal validation images (patches, under the patch protocol) drawn with
    `seed`, and one created anomaly of each; only the drawn records are read."""
    per = val_normals[0]['image']
    per = len(per) if per.ndim == 4 else 1        # patch stacks: patches per record
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.permutation(len(val_normals) * per)[:self.s['num_val']])
    records = {int(r): val_normals[int(r)]['image'] for r in np.unique(chosen // per)}
    images = np.stack([records[int(c // per)][c % per] if per > 1 else records[int(c)]
                       for c in chosen])
    created, _ = jax.jit(augment.create_anomalies, static_argnums=2)(
        jax.random.PRNGKey(seed), jnp.asarray(images), self.s['augmentations'])
    n = len(images)
    return ArraySource(image=np.concatenate([images, np.asarray(created)]),
                       label=np.r_[np.zeros(n, np.int32), np.ones(n, np.int32)])

  def figures(self, run_dir, images, score) -> dict:
    """Fig. 4.4/4.5: test images, one created anomaly per transform, each with the model's
    score."""
    x = jnp.asarray(images)
    rows, names = [np.asarray(images)], ['test image']
    create = jax.jit(augment.create_anomalies, static_argnums=2)   # one program per name
    for i, name in enumerate(self.s['augmentations']):
      created, _ = create(jax.random.PRNGKey(i), x, (name,))
      rows.append(np.asarray(created))
      names.append(name)
    grid = np.concatenate(rows)
    captions = [f'{n}\n{s:.2f}' for n, s in zip(np.repeat(names, len(images)), score(grid))]
    return {'created_anomalies': plots.image_grid(
        f'{run_dir}/created_anomalies.png', grid, 'ADACL: test images and created anomalies '
        '(score under each)', columns=len(images), captions=captions)}
