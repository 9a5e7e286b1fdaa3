"""PyTorch twins: same weights and input → same outputs (eval and train mode)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from vadjax.bench.twins import TWINS, port
from vadjax.models import MODELS

CASES = [('bcae1', (128, 128), {}), ('bcae1', (40, 33), {'embedding_activation': 'tanh'}),
         ('deep_ae', (32, 32), {})]


def _rel(a, b):
  return float(np.abs(a - b).max() / (np.abs(b).max() + 1e-12))


@pytest.mark.parametrize('name,size,kw', CASES)
def test_twin_parity(name, size, kw):
  x = np.random.default_rng(0).random((4, *size, 1), np.float32)
  model = MODELS.get(name)(channels=1, **kw)
  v = model.init(jax.random.PRNGKey(1), jnp.asarray(x))
  # non-trivial batch statistics, so eval mode exercises them
  _, upd = model.apply(v, jnp.asarray(x), train=True, mutable=['batch_stats'])
  v = {'params': v['params'], **upd}
  twin = port(TWINS[name](channels=1, input_size=size, **kw), v)
  xt = torch.from_numpy(x).permute(0, 3, 1, 2)
  for train in (False, True):
    twin.train(train)
    with torch.no_grad():
      t = twin(xt)
    j = model.apply(v, jnp.asarray(x), train=train, mutable=['batch_stats'] if train else False)
    j = j[0] if train else j
    assert _rel(np.asarray(j['recon']), t['recon'].permute(0, 2, 3, 1).numpy()) < 1e-4
    assert _rel(np.asarray(j['latent']), t['latent'].numpy()) < 1e-4
