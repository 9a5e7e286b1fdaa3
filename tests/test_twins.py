"""PyTorch twins: same weights and input → same outputs (eval and train mode)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from conftest import compiled
from vadjax.bench.twins import TWINS, Memory as TorchMemory, port
from vadjax.models import MODELS
from vadjax.nn.memory import Memory

SMALL_3D = {'filters': (8, 16, 16, 16), 'memory_items': 64}
CASES = [('bcae1', (128, 128), {}), ('bcae1', (40, 33), {'embedding_activation': 'tanh'}),
         ('deep_ae', (32, 32), {}),
         ('memae_2d', (32, 32), {}),
         ('memae_2d', (16, 24), {'similarity': 'dot', 'normalize': 'sparsemax',
                                 'shrink_ratio': 3.0}),
         ('memae_2d', (32, 32), {'use_memory': False, 'output_activation': 'none'}),
         ('memae_3d', (16, 32, 16), SMALL_3D),
         ('memae_3d', (8, 16, 32), {**SMALL_3D, 'similarity': 'dot', 'shrink_ratio': 0.0})]


def _rel(a, b):
  return float(np.abs(a - b).max() / (np.abs(b).max() + 1e-12))


def _last(t):
  return t.movedim(1, -1).numpy()        # channels-first → channels-last


@pytest.mark.parametrize('name,size,kw', CASES)
def test_twin_parity(name, size, kw):
  x = np.random.default_rng(0).random((4, *size, 1), np.float32)
  model = MODELS.get(name)(channels=1, **kw)
  init, apply = compiled(model)
  v = init(jax.random.PRNGKey(1), jnp.asarray(x))
  # non-trivial batch statistics, so eval mode exercises them
  _, upd = apply(v, jnp.asarray(x), train=True, mutable=('batch_stats',))
  v = {'params': v['params'], **upd}
  twin = port(TWINS[name](channels=1, input_size=size, **kw), v)
  xt = torch.from_numpy(x).movedim(-1, 1)
  for train in (False, True):
    twin.train(train)
    with torch.no_grad():
      t = twin(xt)
    j = apply(v, jnp.asarray(x), train=train, mutable=('batch_stats',) if train else False)
    j = j[0] if train else j
    assert _rel(np.asarray(j['recon']), _last(t['recon'])) < 1e-4
    assert _rel(np.asarray(j['latent']), t['latent'].numpy()) < 1e-4
    assert ('memory_weights' in j) == ('memory_weights' in t)
    if 'memory_weights' in j:
      np.testing.assert_allclose(np.asarray(j['memory_weights']),
                                 t['memory_weights'].numpy(), atol=1e-5)


@pytest.mark.parametrize('normalize', ['softmax', 'sparsemax'])
def test_memory_twin_parity_and_grads(normalize):
  z = np.random.default_rng(2).normal(size=(3, 8, 8, 32)).astype(np.float32)
  mod = Memory(num_items=200, similarity='cosine', normalize=normalize, shrink_threshold=0.004)
  v = mod.init(jax.random.PRNGKey(0), jnp.asarray(z))
  twin = TorchMemory(200, 32, 'cosine', normalize, 0.004)
  twin.memory.data = torch.from_numpy(np.array(v['params']['memory']))
  zt = torch.from_numpy(z).requires_grad_(True)
  zh_t, w_t = twin(zt)
  (zh_t.square().sum() + w_t.sum()).backward()

  def f(params, z):
    zh, w = mod.apply({'params': params}, z)
    return jnp.sum(jnp.square(zh)) + jnp.sum(w)
  (zh, w) = mod.apply(v, jnp.asarray(z))
  gp, gz = jax.grad(f, argnums=(0, 1))(v['params'], jnp.asarray(z))
  np.testing.assert_allclose(np.asarray(w), w_t.detach().numpy(), atol=1e-6)
  assert _rel(np.asarray(zh), zh_t.detach().numpy()) < 1e-5
  assert _rel(np.asarray(gz), zt.grad.numpy()) < 1e-4
  assert _rel(np.asarray(gp['memory']), twin.memory.grad.numpy()) < 1e-4


def _seed002_parity(name, kwargs, train=False):
  model = MODELS.get(name)(channels=1, **kwargs)
  x = np.random.default_rng(1).random((6, 32, 32, 1), np.float32)
  init, apply = compiled(model)
  v = init(jax.random.PRNGKey(2), jnp.asarray(x))
  twin = port(TWINS[name](channels=1, input_size=(32, 32), **kwargs), v)
  twin.train(train)
  with torch.no_grad():
    t = twin(torch.from_numpy(x).permute(0, 3, 1, 2))
  out = apply(v, x, train=train, mutable=('batch_stats',))[0] if train else apply(v, x)
  for k, a in out.items():
    b = t[k].numpy()
    if b.ndim == 4:
      b = b.transpose(0, 2, 3, 1)
    np.testing.assert_allclose(np.asarray(a), b, atol=2e-5, rtol=1e-4, err_msg=k)


def test_seed002_twins_parity():
  _seed002_parity('alps', {'latent_dim': 16, 'epsilon': 0.7})
  _seed002_parity('adacl_cnn', {}, train=True)
