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
  v = jax.jit(m.init)(jax.random.PRNGKey(0), x)     # one program, not op by op
  return m, v, x


def _conv(k, cin, cout):
  return k * k * cin * cout + cout


def test_bcae1_paper_size():
  m, v, x = _init('bcae1', (2, 128, 128, 1))
  out = jax.jit(m.apply)(v, x)
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
  assert jax.eval_shape(m.apply, v, x)['recon'].shape == x.shape


def test_deep_ae_seed000_shapes():
  m, v, x = _init('deep_ae', (2, 32, 32, 1))
  out = jax.jit(m.apply)(v, x)
  assert out['recon'].shape == x.shape and out['latent'].shape == (2, 128)
  assert v['params']['fc0']['kernel'].shape == (4 * 4 * 128, 512)   # seed 000 §3.3.1
  assert v['params']['fc3']['kernel'].shape == (512, 2048)
  assert 'dec4_bn' not in v['params']          # last decoder block: no BN, no activation


def test_bf16_compute_keeps_float32_params():
  m, v, x = _init('bcae1', (2, 32, 32, 1), dtype=jnp.bfloat16)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(v['params']))
  out = jax.jit(m.apply)(v, x)
  assert out['recon'].dtype == jnp.float32
  ref = jax.jit(MODELS.get('bcae1')(channels=1).apply)(v, x)['recon']
  np.testing.assert_allclose(out['recon'], ref, atol=0.05)


@pytest.mark.parametrize('shape', [(2, 32, 32), (2, 32, 32, 3), (2, 16, 16, 1)])
def test_wrong_input_is_a_clear_error(shape):
  m, v, _ = _init('bcae1', (1, 32, 32, 1))
  with pytest.raises(UserError, match=r'expects images of shape \(batch, height, width, 1\)'):
    m.apply(v, jnp.zeros(shape))


def test_unknown_model_lists_known_names():
  with pytest.raises(UserError, match='unknown model .* known: aa_cae, adacl_cnn, alps, bcae1, bcae2, .*, per_frame, '):
    MODELS.get('bcae9')


# one model of every family, its method and a small input (clips: (T, H, W, C)); KS-CAE
# (≥ 119 px) passed the same check at 128² on 2026-11-30 but compiles for ~20 s: left out
BF16_CASES = [
    ('bcae1', 'reconstruction', (32, 32, 1), {}),
    ('deep_ae', 'reconstruction', (32, 32, 1), {}),
    ('ssa_cae', 'reconstruction', (32, 32, 1), {}),
    ('aa_cae', 'reconstruction', (32, 32, 1), {}),
    ('cbam_ae', 'ssim', (32, 32, 1), {}),
    ('ltpa_ae', 'reconstruction', (32, 32, 1), {}),
    ('memae_2d', 'memae', (32, 32, 1), {}),
    ('memae_3d', 'memae', (8, 32, 32, 1), {}),
    ('cgru_ae', 'reconstruction', (4, 32, 32, 1), dict(filters=(4, 4, 4, 6, 6))),
    ('seq2seq_clstm', 'reconstruction', (8, 32, 32, 1), dict(filters=(4, 4, 4, 6, 6))),
    ('alps', 'alps', (32, 32, 1), {}),
    ('adacl_cnn', 'adacl', (32, 32, 1), {}),
    ('feature_predictor', 'feature_prediction', (5, 1, 1, 16), dict(hidden=8)),
]


@pytest.mark.parametrize('name,method,shape,kwargs', BF16_CASES, ids=[c[0] for c in BF16_CASES])
def test_bfloat16_compute_works_for_every_family(name, method, shape, kwargs):
  """--config.dtype=bfloat16 for every model family: the same parameters give a finite
  loss within 5% of float32's (the loss only: each compiled program costs suite time)."""
  import optax
  from vadjax import parallel
  from vadjax.methods import METHODS
  from vadjax.train import steps as steps_lib
  mesh = parallel.make_mesh(1)
  m = METHODS.get(method)(None)
  batch = {'image': np.random.default_rng(0).random((2, *shape), np.float32)}
  losses, state = {}, None
  for dtype in (jnp.float32, jnp.bfloat16):
    model = MODELS.get(name)(channels=shape[-1], dtype=dtype, **kwargs)
    steps = steps_lib.build_steps(model, m, optax.adam(1e-3), mesh, shape)
    state = state or steps.init(jax.random.PRNGKey(0))
    losses[dtype] = float(steps.loss(state, batch))
  assert np.isfinite(losses[jnp.bfloat16])
  assert losses[jnp.bfloat16] == pytest.approx(losses[jnp.float32], rel=0.05)
