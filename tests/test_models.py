"""Model output shapes, parameter counts and input checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vadjax.models import MODELS
from vadjax.registry import UserError


def _init(name, shape, **kw):
  m = MODELS.get(name)(channels=shape[-1], **kw)
  x = jnp.asarray(np.random.default_rng(0).random(shape, np.float32))
  v = m.init(jax.random.PRNGKey(0), x)
  return m, v, x


def _conv(k, cin, cout):
  return k * k * cin * cout + cout


def test_bcae1_paper_size():
  m, v, x = _init('bcae1', (2, 128, 128, 1))
  out = m.apply(v, x)
  assert out['recon'].shape == x.shape and out['latent'].shape == (2, 1536)   # seed 001 §4.4.2
  assert float(out['recon'].min()) >= 0 and float(out['recon'].max()) <= 1
  bn = lambda c: 2 * c  # noqa: E731
  expected = (_conv(3, 1, 64) + bn(64) + _conv(3, 64, 64) + bn(64) + _conv(3, 64, 64) + bn(64)
              + _conv(3, 64, 96) + bn(96) + _conv(4, 96, 96) + bn(96)            # encoder
              + _conv(4, 96, 96) + bn(96) + _conv(3, 96, 64) + bn(64)
              + 2 * (_conv(3, 64, 64) + bn(64)) + _conv(4, 64, 1))   # decoder; 63 -> 128: k4
  assert sum(p.size for p in jax.tree.leaves(v['params'])) == expected


@pytest.mark.parametrize('size', [31, 32, 64, 100, 127])
def test_bcae1_other_sizes(size):
  m, v, x = _init('bcae1', (1, size, size + 3, 1))
  assert m.apply(v, x)['recon'].shape == x.shape


def test_deep_ae_seed000_shapes():
  m, v, x = _init('deep_ae', (2, 32, 32, 1))
  out = m.apply(v, x)
  assert out['recon'].shape == x.shape and out['latent'].shape == (2, 128)
  assert v['params']['fc0']['kernel'].shape == (4 * 4 * 128, 512)   # seed 000 §3.3.1
  assert v['params']['fc3']['kernel'].shape == (512, 2048)
  assert 'dec4_bn' not in v['params']          # last decoder block: no BN, no activation


def test_bf16_compute_keeps_float32_params():
  m, v, x = _init('bcae1', (2, 32, 32, 1), dtype=jnp.bfloat16)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(v['params']))
  out = m.apply(v, x)
  assert out['recon'].dtype == jnp.float32
  ref = MODELS.get('bcae1')(channels=1).apply(v, x)['recon']
  np.testing.assert_allclose(out['recon'], ref, atol=0.05)


@pytest.mark.parametrize('shape', [(2, 32, 32), (2, 32, 32, 3), (2, 16, 16, 1)])
def test_wrong_input_is_a_clear_error(shape):
  m, v, _ = _init('bcae1', (1, 32, 32, 1))
  with pytest.raises(UserError, match=r'expects images of shape \(batch, height, width, 1\)'):
    m.apply(v, jnp.zeros(shape))


def test_unknown_model_lists_known_names():
  with pytest.raises(UserError, match='unknown model .* known: aa_cae, adacl_cnn, alps, bcae1, bcae2, .*, per_frame, '):
    MODELS.get('bcae9')
