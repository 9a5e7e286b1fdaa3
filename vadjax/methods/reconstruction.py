"""Reconstruction: MSE training, score = per-sample mean squared error, pixel map = the
squared error averaged over channels (seed 000 §3.3, seed 001 §3.9). A model's `regularizer`
output (B,) (SA-CAE's λ‖x_AM‖) is added to the training loss, not to the score.

`reconstruction.score_window` = k > 0 scores a frame by its worst k×k window (the max over windows of
the mean squared error, as the patch protocol's max over patches, METHODS.md §0) instead of
the mean over the whole frame: then the score no longer grows with how many people are in
view, only with how wrong the worst of them is. A clip's score is the mean over its frames.

Works on images (B, H, W, C) and clips (B, T, H, W, C). A clip's pixel map is that of the
frame its score is assigned to: `batch['offset']`, else the centre frame (METHODS.md §0).
A model that predicts (Seq2Seq) outputs `target`, the frames its `recon` stands for; the
error is taken against those.
"""

import jax
import jax.numpy as jnp

from vadjax.methods import METHODS
from vadjax.methods.base import Method, settings
from vadjax.methods.svdd import SVDD
from vadjax.registry import UserError


def weighted_mean(per_sample, batch):
  w = batch.get('weight')
  return jnp.mean(per_sample) if w is None else jnp.sum(per_sample * w) / jnp.sum(w)


def target(outputs, batch):
  """What `recon` is compared with: the input, or a model's `target` (Seq2Seq: the future
  frames it predicts)."""
  return outputs.get('target', batch['image'])


def per_sample_mse(outputs, batch):
  err = jnp.square(outputs['recon'] - target(outputs, batch))
  return jnp.mean(err, axis=tuple(range(1, err.ndim)))


@METHODS.register('reconstruction')
class Reconstruction(Method):
  """Any reconstruction-trained AE; `svdd.epochs` > 0 adds the SVDD stage (seed 001 §3.6)."""
  group = 'reconstruction'
  DEFAULTS = {'score_window': 0}
  SCORE_ONLY = ('score_window',)

  def __init__(self, config=None):
    self.s = settings(config, self.group, self.DEFAULTS)
    self.window = int(self.s.get('score_window', 0))
    if self.window < 0:
      raise UserError(f'{self.group}.score_window must be 0 (mean over the frame) or a '
                      f'window size > 0; got {self.window}')
    self.svdd = settings(config, 'svdd', SVDD.DEFAULTS)

  @property
  def groups(self):
    return (self.group, 'svdd')

  def stages(self):
    return (SVDD(**self.svdd),) if self.svdd['epochs'] > 0 else ()

  def loss_fn(self, outputs, batch):
    mse = per_sample_mse(outputs, batch)
    if 'regularizer' not in outputs:
      loss = weighted_mean(mse, batch)
      return loss, {'mse': loss}
    mse, reg = weighted_mean(mse, batch), weighted_mean(outputs['regularizer'], batch)
    return mse + reg, {'mse': mse, 'regularizer': reg}

  def score_fn(self, outputs, batch):
    err = jnp.square(outputs['recon'] - target(outputs, batch))
    pixel = jnp.mean(err, axis=-1)
    if pixel.ndim == 4:                       # clips: the map of the frame scored
      t = batch['image'].shape[1]
      offset = batch['offset'] if 'offset' in batch else jnp.full(pixel.shape[:1], t // 2)
      # a prediction covers the clip's last frames: the nearest predicted one
      offset = jnp.clip(offset - (t - pixel.shape[1]), 0, pixel.shape[1] - 1)
      pixel = frame_at(pixel, offset)
    return {'score': self._score(err), 'pixel': pixel}

  def _score(self, err):
    if not self.window:
      return jnp.mean(err, axis=tuple(range(1, err.ndim)))
    return window_max(jnp.mean(err, axis=-1), self.window)


def frame_at(clips, offset):
  """(B, T, ...) → (B, ...): each clip's frame `offset` (a gather without an arange over
  the batch, so that it exports with a symbolic batch size)."""
  index = offset.reshape((-1,) + (1,) * (clips.ndim - 1))
  return jnp.take_along_axis(clips, index, axis=1)[:, 0]


def window_max(maps, k: int):
  """(B, [T,] H, W) error maps → (B,): the largest mean over a k×k window, averaged over T."""
  h, w = maps.shape[-2:]
  if not 0 < k <= min(h, w):
    raise UserError(f'score_window must be 0 (mean over the frame) or in 1..{min(h, w)} for '
                    f'{h}×{w} frames; got {k}')
  lead = (1,) * (maps.ndim - 2)
  sums = jax.lax.reduce_window(maps, 0.0, jax.lax.add, lead + (k, k), (1,) * maps.ndim, 'VALID')
  worst = jnp.max(sums, axis=(-2, -1)) / (k * k)
  return jnp.mean(worst.reshape(worst.shape[0], -1), axis=1)
