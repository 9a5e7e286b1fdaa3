"""The memory module against an independent numpy implementation (float64, query by query)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vadjax.nn.memory import Memory, address, entropy, sparsemax
from vadjax.registry import UserError


def np_sparsemax(z):
  """Projection onto the simplex by bisection on τ: Σ max(z − τ, 0) = 1."""
  lo, hi = z.max() - 1.0, z.max()
  for _ in range(200):
    tau = (lo + hi) / 2
    lo, hi = (tau, hi) if np.maximum(z - tau, 0).sum() > 1 else (lo, tau)
  return np.maximum(z - (lo + hi) / 2, 0)


def np_address(q, m, similarity, normalize, lam):
  q, m = q.astype(np.float64), m.astype(np.float64)
  out = np.zeros((len(q), len(m)))
  for i, z in enumerate(q):
    if similarity == 'cosine':
      s = np.array([z @ mi / (max(np.linalg.norm(z), 1e-12) * max(np.linalg.norm(mi), 1e-12))
                    for mi in m])
    else:
      s = m @ z
    if normalize == 'softmax':
      w = np.exp(s - s.max())
      w /= w.sum()
    else:
      w = np_sparsemax(s)
    if lam > 0:
      w = np.maximum(w - lam, 0) * w / (np.abs(w - lam) + 1e-12)
      w = w / max(np.abs(w).sum(), 1e-12)
    out[i] = w
  return out


def np_entropy(w):
  return -(w * np.log(w + 1e-12)).sum(-1)


def _data(q=37, n=50, c=16, seed=0, scale=1.0):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(q, c)).astype(np.float32) * scale,
          rng.normal(size=(n, c)).astype(np.float32) * scale)


@pytest.mark.parametrize('similarity,normalize,lam', list(itertools.product(
    ('cosine', 'dot'), ('softmax', 'sparsemax'), (0.0, 0.0025, 0.03))))
def test_address_matches_numpy(similarity, normalize, lam):
  q, m = _data(scale=0.5)
  w = np.asarray(address(jnp.asarray(q), jnp.asarray(m), similarity, normalize, lam))
  ref = np_address(q, m, similarity, normalize, lam)
  np.testing.assert_allclose(w, ref, atol=2e-6, rtol=1e-4)
  sums = w.sum(-1)                # 1, or 0 where shrinkage removed every weight
  np.testing.assert_allclose(np.minimum(np.abs(sums - 1), sums), 0, atol=1e-5)
  np.testing.assert_allclose(sums, ref.sum(-1), atol=1e-5)
  assert (w == 0).sum() == (ref == 0).sum()
  if lam == 0.03:                 # shrinkage really zeroes the small weights
    assert (w == 0).sum() > 0
  np.testing.assert_allclose(np.asarray(entropy(jnp.asarray(w))), np_entropy(ref),
                             atol=2e-4, rtol=1e-4)


def test_no_shrink_is_plain_softmax():
  q, m = _data()
  w = address(jnp.asarray(q), jnp.asarray(m), 'dot', 'softmax', 0.0)
  np.testing.assert_array_equal(np.asarray(w), np.asarray(jax.nn.softmax(q @ m.T, axis=-1)))


def test_query_equal_to_memory_item():
  _, m = _data(n=20, c=32, scale=1.0)
  m = m / np.linalg.norm(m, axis=1, keepdims=True) * 6.0   # items far apart in dot product
  q = m[[3, 11]]
  for similarity in ('cosine', 'dot'):
    w = np.asarray(address(jnp.asarray(q), jnp.asarray(m), similarity, 'softmax', 0.0025))
    assert list(w.argmax(-1)) == [3, 11]
    np.testing.assert_allclose(w, np_address(q, m, similarity, 'softmax', 0.0025),
                               atol=2e-6, rtol=1e-4)
  w = np.asarray(address(jnp.asarray(q), jnp.asarray(m), 'dot', 'softmax', 0.0025))
  np.testing.assert_allclose(w @ m, q, atol=1e-3)           # the item is retrieved


def test_all_weights_shrunk_reads_zero():
  # cosine over many items: every softmax weight < λ, so ŵ = 0 and the read is 0, not NaN
  q, m = _data(q=4, n=2000, c=8)
  w = np.asarray(address(jnp.asarray(q), jnp.asarray(m), 'cosine', 'softmax', 0.01))
  assert np.all(w == 0) and np.all(np.isfinite(w))
  assert np.all(np.asarray(entropy(jnp.asarray(w))) == 0)


def test_sparsemax_matches_bisection_and_grad():
  z = np.random.default_rng(1).normal(size=(9, 30)).astype(np.float32)
  p = np.asarray(sparsemax(jnp.asarray(z)))
  np.testing.assert_allclose(p, np.stack([np_sparsemax(r.astype(np.float64)) for r in z]),
                             atol=1e-6)
  # Jacobian of sparsemax: diag(s) − s sᵀ/|s| on the support s
  j = np.asarray(jax.jacobian(lambda v: sparsemax(v))(jnp.asarray(z[0])))
  s = (p[0] > 0).astype(np.float64)
  np.testing.assert_allclose(j, np.diag(s) - np.outer(s, s) / s.sum(), atol=1e-6)


@pytest.mark.parametrize('similarity,normalize', [('cosine', 'softmax'), ('dot', 'softmax'),
                                                  ('dot', 'sparsemax')])
def test_gradients_by_finite_differences(similarity, normalize):
  q, m = _data(q=6, n=12, c=5, seed=3, scale=1.5)
  lam = 0.02
  # the loss is smooth where no weight sits on the shrinkage kink
  assert np.abs(np_address(q, m, similarity, normalize, 0.0) - lam).min() > 1e-3
  coef = np.random.default_rng(4).normal(size=(6, 5))

  def np_loss(q, m):
    w = np_address(q, m, similarity, normalize, lam)
    return float((coef * (w @ m.astype(np.float64))).sum() + 0.3 * np_entropy(w).sum())

  def jax_loss(q, m):
    w = address(q, m, similarity, normalize, lam)
    return jnp.sum(coef * (w @ m)) + 0.3 * jnp.sum(entropy(w))

  gq, gm = jax.grad(jax_loss, argnums=(0, 1))(jnp.asarray(q), jnp.asarray(m))
  h = 1e-6
  for arr, grad in ((q, gq), (m, gm)):
    fd = np.zeros(arr.shape)
    for idx in np.ndindex(arr.shape):
      up, down = arr.astype(np.float64), arr.astype(np.float64)
      up[idx] += h
      down[idx] -= h
      args_up = (up, m) if arr is q else (q, up)
      args_down = (down, m) if arr is q else (q, down)
      fd[idx] = (np_loss(*args_up) - np_loss(*args_down)) / (2 * h)
    np.testing.assert_allclose(np.asarray(grad), fd, atol=2e-4 * np.abs(fd).max(), rtol=2e-3)


def test_memory_module_reads_every_position():
  z = np.random.default_rng(5).normal(size=(2, 3, 4, 8)).astype(np.float32)
  mod = Memory(num_items=10, similarity='dot', shrink_threshold=0.05)
  v = mod.init(jax.random.PRNGKey(0), jnp.asarray(z))
  m = np.asarray(v['params']['memory'])
  assert m.shape == (10, 8) and np.abs(m).max() <= 1 / np.sqrt(8)
  z_hat, w = mod.apply(v, jnp.asarray(z))
  assert z_hat.shape == z.shape and w.shape == (2, 3, 4, 10)
  ref = np_address(z.reshape(-1, 8), m, 'dot', 'softmax', 0.05)
  np.testing.assert_allclose(np.asarray(w).reshape(-1, 10), ref, atol=2e-6, rtol=1e-4)
  np.testing.assert_allclose(np.asarray(z_hat).reshape(-1, 8), ref @ m, atol=1e-5)


def test_bad_names_are_clear_errors():
  q, m = _data(q=2, n=3, c=4)
  with pytest.raises(UserError, match='similarity'):
    address(q, m, 'euclid')
  with pytest.raises(UserError, match='normalize'):
    address(q, m, 'dot', 'softmin')
