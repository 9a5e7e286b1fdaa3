"""Reconstruction: MSE training, score = per-sample mean squared error, pixel map = the
squared error averaged over channels (seed 000 §3.3, seed 001 §3.9)."""

import jax.numpy as jnp

from vadjax.methods import METHODS


@METHODS.register('reconstruction')
class Reconstruction:

  def __init__(self, config=None):
    del config

  def loss_fn(self, outputs, batch):
    per_sample = jnp.mean(jnp.square(outputs['recon'] - batch['image']), axis=(1, 2, 3))
    w = batch.get('weight')
    loss = jnp.mean(per_sample) if w is None else jnp.sum(per_sample * w) / jnp.sum(w)
    return loss, {'mse': loss}

  def score_fn(self, outputs, batch):
    err = jnp.square(outputs['recon'] - batch['image'])
    return {'score': jnp.mean(err, axis=(1, 2, 3)), 'pixel': jnp.mean(err, axis=-1)}
