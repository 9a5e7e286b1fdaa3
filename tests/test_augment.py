"""ADACL's anomaly creation on device (vadjax/data/augment.py; seed 002 §4.3.2): each
transform against a numpy reference, per sample under jit and vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vadjax.data import augment
from vadjax.registry import UserError

KEYS = [jax.random.PRNGKey(i) for i in range(12)]


def _image(h=16, w=16, c=2, seed=0):
  return np.random.default_rng(seed).random((h, w, c), np.float32)


@pytest.mark.parametrize('key', KEYS)
def test_cutpaste_moves_one_patch_exactly(key):
  x = _image(20, 16)
  sy, sx, dy, dx, ph, pw = (int(v) for v in augment.sample_cutpaste(key, x.shape))
  assert (sy, sx) != (dy, dx)
  assert 2 <= ph <= 6 and 2 <= pw <= 5            # 10–30 % of 20 and 16
  assert 0 <= min(sy, sx, dy, dx) and max(sy, dy) + ph <= 20 and max(sx, dx) + pw <= 16
  expected = x.copy()
  expected[dy:dy + ph, dx:dx + pw] = x[sy:sy + ph, sx:sx + pw]
  out = np.asarray(augment.cutpaste(jnp.asarray(x), jnp.array([sy, sx, dy, dx, ph, pw])))
  np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize('key', KEYS[:6])
def test_puzzle_permutes_quarters(key):
  x = _image(12, 8)
  perm = np.asarray(augment.sample_puzzle(key, x.shape))
  assert sorted(perm) == [0, 1, 2, 3] and list(perm) != [0, 1, 2, 3]
  q = [x[:6, :4], x[:6, 4:], x[6:, :4], x[6:, 4:]]
  expected = np.concatenate([np.concatenate([q[perm[0]], q[perm[1]]], 1),
                             np.concatenate([q[perm[2]], q[perm[3]]], 1)], 0)
  np.testing.assert_array_equal(np.asarray(augment.puzzle(jnp.asarray(x), perm)), expected)
  assert len(augment.PERMUTATIONS) == 23


@pytest.mark.parametrize('key', KEYS[:6])
def test_rotate_and_mixup_match_numpy(key):
  x = _image(10, 10, 3)
  k = int(augment.sample_rotate(key, x.shape))
  assert k in (1, 3)
  np.testing.assert_array_equal(np.asarray(augment.rot90(jnp.asarray(x), k)), np.rot90(x, k))
  lam, km = (float(v) for v in augment.sample_mixup(key, x.shape))
  assert 0.5 <= lam <= 0.7 and km in (1.0, 2.0, 3.0)
  out = np.asarray(augment.mixup(jnp.asarray(x), jnp.array([lam, km])))
  np.testing.assert_allclose(out, lam * x + (1 - lam) * np.rot90(x, int(km)), atol=1e-6)


def test_create_anomalies_per_sample_under_jit_and_vmap():
  x = jnp.asarray(np.repeat(_image(16, 16, 1)[None], 32, axis=0))   # 32 identical images
  fn = jax.jit(augment.create_anomalies, static_argnums=2)
  out, choice = fn(KEYS[0], x, augment.AUGMENTATIONS)
  assert out.shape == x.shape and out.dtype == x.dtype
  assert set(np.asarray(choice)) == {0, 1, 2, 3}                 # all four transforms drawn
  flat = np.asarray(out).reshape(32, -1)
  assert len({row.tobytes() for row in flat}) > 24               # different per sample
  assert not np.any(np.all(flat == np.asarray(x[0]).ravel(), axis=1))   # none left intact
  # each output is its drawn transform of the input, with some parameters
  for i in range(32):
    name = augment.AUGMENTATIONS[int(choice[i])]
    if name == 'rotate':
      assert any(np.array_equal(out[i], np.rot90(x[i], k)) for k in (1, 3))
    if name == 'puzzle':
      assert sorted(q.tobytes() for q in np.asarray(augment.quarters(out[i]))) == \
          sorted(q.tobytes() for q in np.asarray(augment.quarters(x[i])))
  again, _ = fn(KEYS[0], x, augment.AUGMENTATIONS)
  np.testing.assert_array_equal(out, again)                     # a function of the key
  batched = jax.vmap(lambda k: augment.create_anomalies(k, x[:4], ('rotate',))[0])(
      jnp.stack(KEYS[:3]))
  assert batched.shape == (3, 4, 16, 16, 1)


def test_augmentation_errors():
  with pytest.raises(UserError, match='unknown ADACL augmentations'):
    augment.check(('flip',), (16, 16, 1))
  with pytest.raises(UserError, match='even'):
    augment.check(('puzzle',), (15, 15, 1))
  with pytest.raises(UserError, match='square'):
    augment.check(('rotate',), (16, 12, 1))
