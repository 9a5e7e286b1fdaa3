"""Reconstruction: MSE training, score = per-sample mean squared error, pixel map = the
squared error averaged over channels (seed 000 §3.3, seed 001 §3.9). A model's `regularizer`
output (B,) (SA-CAE's λ‖x_AM‖) is added to the training loss, not to the score.

Works on images (B, H, W, C) and clips (B, T, H, W, C). A clip's pixel map is that of the
frame its score is assigned to: `batch['offset']`, else the centre frame (METHODS.md §0).
A model that predicts (Seq2Seq) outputs `target`, the frames its `recon` stands for; the
error is taken against those.
"""

import jax.numpy as jnp

from vadjax.methods import METHODS


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
class Reconstruction:

  def __init__(self, config=None):
    del config

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
      offset = batch.get('offset', jnp.full(pixel.shape[:1], t // 2))
      # a prediction covers the clip's last frames: the nearest predicted one
      offset = jnp.clip(offset - (t - pixel.shape[1]), 0, pixel.shape[1] - 1)
      pixel = pixel[jnp.arange(pixel.shape[0]), offset]
    return {'score': jnp.mean(err, axis=tuple(range(1, err.ndim))), 'pixel': pixel}
