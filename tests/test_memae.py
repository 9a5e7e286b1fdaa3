"""MemAE-2D/3D: shapes, parameter counts, the objective, one step learns, no retrace."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import sweep_in_fresh_process, traced_once
from experiments.configs import memae as memae_config
from vadjax import parallel
from vadjax.methods import METHODS
from vadjax.models import MODELS
from vadjax.eval.metrics import mean_ci
from vadjax.registry import UserError
from vadjax.train import steps as steps_lib


def _conv(k, cin, cout, dims=2):
  return k ** dims * cin * cout + cout


def test_memae_2d_shapes_and_parameter_count():
  m = MODELS.get('memae_2d')(channels=1)
  x = jnp.asarray(np.random.default_rng(0).random((2, 32, 32, 1), np.float32))
  v = jax.jit(m.init)(jax.random.PRNGKey(0), x)            # one program, not op by op
  out = jax.jit(m.apply)(v, x)
  assert out['recon'].shape == x.shape and out['latent'].shape == (2, 4 * 4 * 64)
  assert out['memory_weights'].shape == (2, 4, 4, 100)
  sums = np.asarray(out['memory_weights']).sum(-1)
  assert np.all((np.abs(sums - 1) < 1e-5) | (sums == 0))
  expected = (_conv(1, 1, 16) + _conv(3, 16, 32) + _conv(3, 32, 64)            # encoder
              + _conv(3, 64, 32) + _conv(3, 32, 16) + _conv(3, 16, 1)          # decoder
              + 2 * (16 + 32 + 64 + 32 + 16)                                   # BN
              + 100 * 64)                                                      # memory
  assert sum(p.size for p in jax.tree.leaves(v['params'])) == expected
  items = m.apply(v, (4, 4), method=m.decode_items)
  assert items.shape == (100, 32, 32, 1)


def test_memae_3d_official_size():
  """The official code's 16×256×256 clip: 2·16·16 = 512 queries, N = 2000 (METHODS.md §4)."""
  m = MODELS.get('memae_3d')(channels=1)
  x = jax.ShapeDtypeStruct((1, 16, 256, 256, 1), jnp.float32)
  v = jax.eval_shape(m.init, jax.random.PRNGKey(0), x)
  out = jax.eval_shape(m.apply, v, x)
  assert out['recon'].shape == x.shape
  assert out['memory_weights'].shape == (1, 2, 16, 16, 2000)
  expected = (_conv(3, 1, 96, 3) + _conv(3, 96, 128, 3) + _conv(3, 128, 256, 3)
              + _conv(3, 256, 256, 3)
              + _conv(3, 256, 256, 3) + _conv(3, 256, 128, 3) + _conv(3, 128, 96, 3)
              + _conv(3, 96, 1, 3)
              + 2 * (96 + 128 + 256 + 256 + 256 + 128 + 96) + 2000 * 256)
  assert sum(int(np.prod(p.shape)) for p in jax.tree.leaves(v['params'])) == expected


@pytest.mark.parametrize('name,shape', [('memae_2d', (2, 30, 32, 1)), ('memae_2d', (2, 32, 32)),
                                        ('memae_3d', (2, 12, 32, 32, 1)),
                                        ('memae_3d', (2, 32, 32, 1))])
def test_wrong_input_is_a_clear_error(name, shape):
  m = MODELS.get(name)(channels=1, memory_items=8, **(
      {'filters': (4, 4, 4, 4)} if name == 'memae_3d' else {}))
  with pytest.raises(UserError, match=f'{name} expects .* divisible by'):
    m.init(jax.random.PRNGKey(0), jnp.zeros(shape))


def test_objective_is_mse_plus_weighted_entropy():
  rng = np.random.default_rng(1)
  recon, image = rng.random((3, 8, 8, 1)), rng.random((3, 8, 8, 1))
  w = rng.random((3, 2, 2, 5))
  w /= w.sum(-1, keepdims=True)
  cfg = memae_config.get_config()
  method = METHODS.get('memae')(cfg)
  loss, aux = method.loss_fn({'recon': jnp.asarray(recon), 'memory_weights': jnp.asarray(w)},
                             {'image': jnp.asarray(image)})
  mse = np.mean((recon - image) ** 2)
  ent = np.mean(-(w * np.log(w + 1e-12)).sum(-1))
  assert float(aux['mse']) == pytest.approx(mse, rel=1e-5)
  assert float(aux['entropy']) == pytest.approx(ent, rel=1e-5)
  assert float(loss) == pytest.approx(mse + 2e-4 * ent, rel=1e-5)
  loss_ae, aux_ae = method.loss_fn({'recon': jnp.asarray(recon)}, {'image': jnp.asarray(image)})
  assert float(loss_ae) == pytest.approx(mse, rel=1e-5) and 'entropy' not in aux_ae


@pytest.mark.parametrize('name,shape,kw', [
    ('memae_2d', (32, 32, 1), {}),
    ('memae_3d', (8, 16, 16, 1), {'filters': (8, 8, 16, 16), 'memory_items': 50})])
def test_train_step_learns_without_retracing(name, shape, kw):
  cfg = memae_config.get_config('optimizer.learning_rate=0.01')
  mesh = parallel.make_mesh(2)
  model = MODELS.get(name)(channels=1, **kw)
  steps = steps_lib.build_steps(model, traced_once(METHODS.get('memae')(cfg)),
                                steps_lib.make_optimizer(cfg.optimizer), mesh, shape)
  state = steps.init(jax.random.PRNGKey(0))
  yy, xx = np.mgrid[:shape[-3], :shape[-2]]
  base = (np.sin(xx / 3.0) * np.cos(yy / 4.0) * 0.4 + 0.5).astype(np.float32)
  images = np.broadcast_to(base[..., None], (4, *shape)).copy()
  images *= np.linspace(0.6, 1.0, 4, dtype=np.float32).reshape(4, *(1,) * len(shape))
  batch = parallel.shard_batch({'image': images}, mesh)
  losses = []
  for _ in range(15):
    state, m = steps.train(state, batch)
    losses.append(float(m['loss']))
  assert losses[-1] < 0.5 * losses[0], losses
  assert 'entropy' in m and np.isfinite(float(m['entropy']))


def test_memory_size_study_reads_reports_and_draws_the_figure(tmp_path):
  """The sweep harness's table and figure from finished rows (collect-only: no training),
  in a fresh process (the sweep's absl flags)."""
  for n, per_seed in ((10, [0.8, 0.9]), (100, [0.95, 0.97])):
    row = tmp_path / f'N_{n}_digits'
    row.mkdir()
    mean = {'auroc': {**mean_ci(per_seed), 'per_seed': per_seed}}
    (row / 'report.json').write_text(json.dumps({'mean': mean}))
  result = sweep_in_fresh_process("sweep.run('memory_size', w, ['0', '1'], collect_only=True)",
                                  tmp_path)
  lines = result['table'].splitlines()
  ci = mean_ci([0.8, 0.9])['ci95']
  assert lines[2] == f'| N=10 | digits | 2 | 0.8500 ± {ci:.4f} | – |'
  assert lines[3].startswith('| N=25 | digits | 0 | – |')        # not run: a dash
  from PIL import Image
  with Image.open(result['figure']) as im:       # the figure: a 5 × 3.5 in PNG
    assert im.format == 'PNG' and im.width / im.height == pytest.approx(5 / 3.5, rel=0.02)
