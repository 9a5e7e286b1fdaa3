"""MemAE's objective (seed 003, 003_5d307d41a5bbbd0c.txt, "Training"; METHODS.md §4):
L = mean_t [ R(x, x̂) + α·E(ŵ) ], R the squared error, E the entropy of the memory weights
averaged over query positions, α = 2e-4 (`memae.entropy_weight`). Scores: the reconstruction
error, as `reconstruction`; the per-video normality p_u is computed at evaluation
(vadjax.eval.video). A model without memory (the AE ablation) trains on R alone.
"""

import jax.numpy as jnp

from vadjax.methods import METHODS
from vadjax.methods.reconstruction import Reconstruction, per_sample_mse, weighted_mean
from vadjax.nn.memory import entropy


@METHODS.register('memae')
class MemAE(Reconstruction):
  group = 'memae'
  DEFAULTS = {**Reconstruction.DEFAULTS, 'entropy_weight': 2e-4}

  def __init__(self, config=None):
    super().__init__(config)
    self.entropy_weight = self.s['entropy_weight']

  def loss_fn(self, outputs, batch):
    mse = weighted_mean(per_sample_mse(outputs, batch), batch)
    w = outputs.get('memory_weights')
    if w is None:
      return mse, {'mse': mse}
    ent = weighted_mean(jnp.mean(entropy(w).reshape(w.shape[0], -1), axis=1), batch)
    return mse + self.entropy_weight * ent, {'mse': mse, 'entropy': ent}
