"""ALPS training and scores (seed 002, 002_437da2b4a4748de8.txt §3.3.2–3.3.3; METHODS.md §3).

Eq. 3.2: min over Enc, Dec, max over AD of MSE(x, Dec(Enc(x) + AD(x))). One jitted step
updates both players from one backward pass: the autoencoder descends
    ae_weight · MSE_perturbed + clean_weight · MSE_clean
and the distorter ascends adversary_weight · MSE_perturbed (its gradient is the AE loss's,
times −adversary_weight / ae_weight). The thesis weighs the AE's reconstruction loss more
(ae_weight 1 > adversary_weight 0.5 here) and updates the distorter "every couple of
epochs": its Adam runs in epochs 0, k, 2k, … (`distorter_every`, k = 2) and is frozen in the
others (optax.conditionally_mask on the step's `epoch`). clean_weight = 0 is eq. 3.2 as
written; > 0 also trains the unperturbed reconstruction.

Scores (§3.3.3): `clean` = MSE(x, Dec(z)), `perturbed` = MSE(x, Dec(z + p)), `mean` = their
average before scaling; all three are reported (`auroc_clean`, ...); `alps.score` picks the
one the thresholds and plots use. The thesis reports the best of the three on test data; we
fix the choice in the config instead. Pixel map: that recon's squared error.
"""

import jax
import jax.numpy as jnp
import optax

from vadjax.methods import METHODS
from vadjax.methods.base import Method, settings as method_settings
from vadjax.registry import UserError
from vadjax.methods.reconstruction import weighted_mean

SCORES = ('clean', 'perturbed', 'mean')
DEFAULTS = dict(ae_weight=1.0, adversary_weight=0.5, clean_weight=0.0, distorter_every=2,
                score='mean')


def settings(config) -> dict:
  s = method_settings(config, 'alps', DEFAULTS)
  if s['score'] not in SCORES:
    raise UserError(f'alps.score must be one of {SCORES}, got {s["score"]!r}')
  if s['distorter_every'] < 1:
    raise UserError(f'alps.distorter_every must be >= 1, got {s["distorter_every"]}')
  return s


def _mse(recon, x):
  return jnp.mean(jnp.square(recon - x), axis=tuple(range(1, x.ndim)))


@METHODS.register('alps')
class ALPS(Method):
  group = 'alps'
  DEFAULTS = DEFAULTS

  def __init__(self, config=None):
    self.s = settings(config)

  def loss_fn(self, outputs, batch):
    x = batch['image']
    perturbed = weighted_mean(_mse(outputs['recon_perturbed'], x), batch)
    clean = weighted_mean(_mse(outputs['recon'], x), batch)
    loss = self.s['ae_weight'] * perturbed + self.s['clean_weight'] * clean
    return loss, {'mse_perturbed': perturbed, 'mse_clean': clean}

  def adjust_grads(self, grads):
    if 'distorter' not in grads:          # the vanilla and random-noise AEs
      return grads
    flip = -self.s['adversary_weight'] / self.s['ae_weight']
    return {**grads, 'distorter': jax.tree.map(lambda g: flip * g, grads['distorter'])}

  def optimizer(self, settings, make):
    every = self.s['distorter_every']
    labels = lambda params: {k: 'distorter' if k == 'distorter' else 'autoencoder'
                             for k in params}
    gated = optax.conditionally_mask(make(settings), lambda _, epoch: epoch % every == 0,
                                     forward_extra_args=True)
    return optax.multi_transform({'autoencoder': make(settings), 'distorter': gated}, labels)

  def score_fn(self, outputs, batch):
    x = batch['image']
    clean, perturbed = _mse(outputs['recon'], x), _mse(outputs['recon_perturbed'], x)
    scores = {'clean': clean, 'perturbed': perturbed, 'mean': (clean + perturbed) / 2}
    recon = outputs['recon'] if self.s['score'] == 'clean' else outputs['recon_perturbed']
    pixel = jnp.square(recon - x)
    if self.s['score'] == 'mean':
      pixel = (pixel + jnp.square(outputs['recon'] - x)) / 2
    return {'score': scores[self.s['score']], 'pixel': jnp.mean(pixel, axis=-1),
            **{f'score/{k}': v for k, v in scores.items()}}
