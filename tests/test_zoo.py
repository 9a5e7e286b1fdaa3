"""The image model zoo (seeds 000/001): attention CAEs, BCAE2 / KS-CAE with ACB/ADB fusion,
SSIM compound loss, SVDD fine-tuning. References: the PyTorch twins (whole models, ACB
blocks), scikit-image (SSIM), numpy (SVDD centre / radius)."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import torch
from conftest import compiled, figure, traced_once
from skimage.metrics import structural_similarity

from vadjax import parallel
from vadjax.bench.twins import TWINS, port
from vadjax.bench.twins import AsymmetricBlock as TorchBlock
from vadjax.methods import METHODS
from vadjax.models import MODELS
from vadjax.models.ks_cae import fuse_ks_cae
from vadjax.nn.acb import AsymmetricBlock, fuse
from vadjax.nn.attention import InputAttention
from vadjax.nn.layers import Conv, ConvTranspose
from vadjax.methods.ssim import ssim, ssim_map
from vadjax.registry import UserError
from vadjax.train import steps as steps_lib
from vadjax.methods import svdd

SMALL_BCAE1 = {'filters': (16, 16, 16, 24, 24)}
SMALL_BCAE2 = {'filters': (16, 16, 32, 32, 30), 'decoder_filters': (32, 32, 16, 16, 8)}
# name, input size, kwargs (parameter counts are checked against the twin's)
CASES = [('se_cae', 64, SMALL_BCAE1), ('aa_cae', 48, SMALL_BCAE1),
         ('sa_cae', 48, SMALL_BCAE1), ('sa_cae', 40, {**SMALL_BCAE1, 'sa_form': 'code'}),
         ('ssa_cae', 48, SMALL_BCAE1), ('cbam_ae', 32, {}),
         ('ltpa_ae', 16, {}), ('ltpa_ae', 16, {'compatibility': 'dp'}),
         ('bcae2', 128, SMALL_BCAE2), ('ks_cae', 128, SMALL_BCAE2)]
# full-size parameter counts (BCAE1 = 556,577; seed 001 says AA adds ~15%, SE < 2.5% compute)
FULL_PARAMS = {'bcae1': 556577, 'se_cae': 561953, 'sa_cae': 558820, 'ssa_cae': 558820,
               'aa_cae': 625947, 'deep_ae': 2428513, 'cbam_ae': 2429342,
               'ltpa_ae': 2479873, 'bcae2': 11268469, 'ks_cae': 4039511}
FULL_SIZE = {'deep_ae': 32, 'cbam_ae': 32, 'ltpa_ae': 32}


def _rel(a, b):
  return float(np.abs(a - b).max() / (np.abs(b).max() + 1e-12))


def _count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def _random_init(model, x, seed=1, **kwargs):
  """Variables of the model's shapes filled by numpy (model.init compiles one random op per
  parameter shape: ~14 s for the deep AE on 2 cores); kernels ~ N(0, 1/fan_in)."""
  shapes = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, **kwargs),
                          jnp.asarray(x))
  rng = np.random.default_rng(seed)

  def fill(path, s):
    leaf = str(path[-1].key)
    if leaf in ('mean', 'bias') or leaf.endswith('_bias'):
      return jnp.asarray(rng.normal(0, 0.1, s.shape), jnp.float32)
    if leaf in ('var', 'scale'):
      return jnp.asarray(rng.uniform(0.5, 1.5, s.shape), jnp.float32)
    fan_in = int(np.prod(s.shape[:-1])) or 1
    return jnp.asarray(rng.normal(0, fan_in ** -0.5, s.shape), jnp.float32)
  return jax.tree_util.tree_map_with_path(fill, shapes)


def _variables(model, x, apply=None):
  apply = apply or compiled(model)[1]
  v = _random_init(model, x)
  _, upd = apply(v, jnp.asarray(x), train=True, mutable=('batch_stats',))
  return {'params': v['params'], **upd}


@pytest.mark.parametrize('name', sorted(FULL_PARAMS))
def test_full_size_parameter_counts(name):
  size = FULL_SIZE.get(name, 128)
  x = jax.ShapeDtypeStruct((1, size, size, 1), jnp.float32)
  v = jax.eval_shape(MODELS.get(name)(channels=1).init, jax.random.PRNGKey(0), x)
  assert _count(v['params']) == FULL_PARAMS[name]


def test_attention_variants_cost_what_seed_001_says():
  base = FULL_PARAMS['bcae1']
  assert 0.05 < FULL_PARAMS['aa_cae'] / base - 1 < 0.15     # "a parameter increase of 15%"
  assert FULL_PARAMS['se_cae'] / base - 1 < 0.025
  assert FULL_PARAMS['ks_cae'] < FULL_PARAMS['bcae2'] / 2    # half the kernels


@pytest.mark.parametrize('name,size,kw', CASES)
def test_twin_parity(name, size, kw):
  # batch 6: a train-mode BN over 3 values of a 1×1 map amplifies float noise ~100×
  x = np.random.default_rng(0).random((6, size, size, 1), np.float32)
  model = MODELS.get(name)(channels=1, **kw)
  apply = compiled(model)[1]
  v = _variables(model, x, apply)
  twin = port(TWINS[name](channels=1, input_size=(size, size), **kw), jax.device_get(v))
  assert sum(p.numel() for p in twin.parameters()) == _count(v['params'])
  xt = torch.from_numpy(x).movedim(-1, 1)
  for train in (False, True):
    twin.train(train)
    with torch.no_grad():
      t = twin(xt)
    j = apply(v, jnp.asarray(x), train=train, mutable=('batch_stats',) if train else False)
    j = j[0] if train else j
    assert _rel(np.asarray(j['recon'])[..., 0], t['recon'][:, 0].numpy()) < 1e-4
    assert _rel(np.asarray(j['latent']), t['latent'].numpy()) < 1e-4
    assert set(j.get('attention', {})) == set(t.get('attention', {}))
    for key, a in j.get('attention', {}).items():
      assert a.shape[0] == 6 and a.ndim == 3
      assert _rel(np.asarray(a), t['attention'][key].numpy()) < 1e-4, key
    if 'regularizer' in j:
      np.testing.assert_allclose(np.asarray(j['regularizer']), t['regularizer'].numpy(),
                                 rtol=1e-4, atol=1e-12)


@pytest.mark.parametrize('name,size,kw', [
    ('se_cae', 32, SMALL_BCAE1), ('aa_cae', 32, SMALL_BCAE1), ('sa_cae', 32, SMALL_BCAE1),
    ('ssa_cae', 32, SMALL_BCAE1), ('cbam_ae', 16, {}), ('ltpa_ae', 16, {}),
    ('bcae2', 128, SMALL_BCAE2), ('ks_cae', 128, SMALL_BCAE2)])
def test_train_step_lowers_loss_without_retracing(name, size, kw):
  cfg = ml_collections.ConfigDict(dict(learning_rate=1e-3, weight_decay=0.0))
  model = MODELS.get(name)(channels=1, **kw)
  mesh = parallel.make_mesh(1)
  tx = steps_lib.make_optimizer(cfg)
  steps = steps_lib.build_steps(model, traced_once(METHODS.get('reconstruction')(cfg)), tx, mesh,
                                (size, size, 1))
  x = np.random.default_rng(1).random((8, size, size, 1), np.float32)
  v = _random_init(model, x)
  state = steps_lib.TrainState.create(apply_fn=model.apply, params=v['params'], tx=tx,
                                      batch_stats=v['batch_stats'], rng=jax.random.PRNGKey(0),
                                      epoch=jnp.zeros((), jnp.int32))
  # as steps.init makes it: a strong int32 step, every leaf replicated over the mesh
  state = jax.device_put(state.replace(step=jnp.zeros((), jnp.int32)), parallel.replicated(mesh))
  batch = parallel.shard_batch({'image': x}, mesh)
  losses = []
  for _ in range(6):
    state, m = steps.train(state, batch)
    losses.append(float(m['loss']))
  assert losses[-1] < losses[0]


def test_sa_penalty_enters_the_loss():
  model = MODELS.get('sa_cae')(channels=1, sa_penalty=0.01, **SMALL_BCAE1)
  x = np.random.default_rng(0).random((2, 40, 40, 1), np.float32)
  v = _variables(model, x)
  out = jax.jit(model.apply)(v, jnp.asarray(x))
  assert out['attention']['input'].shape == (2, 40, 40)
  loss, aux = jax.jit(METHODS.get('reconstruction')(None).loss_fn)(out,
                                                                  {'image': jnp.asarray(x)})
  mse = np.mean((np.asarray(out['recon']) - x) ** 2)
  np.testing.assert_allclose(float(aux['mse']), mse, rtol=1e-5)
  assert float(loss) > mse and float(out['regularizer'][0]) > 0


def test_ssa_map_is_scaled_per_sample():
  block = InputAttention('ssa', hidden=8)
  x = np.random.default_rng(0).random((3, 40, 40, 1), np.float32)
  v = _random_init(block, x, train=False)
  apply = jax.jit(lambda x: block.apply(v, x, train=False)[1])
  full, alone = apply(x), apply(x[1:2])
  np.testing.assert_allclose(np.asarray(full[1]), np.asarray(alone[0]), atol=1e-5)
  np.testing.assert_allclose(np.asarray(full).min(axis=(1, 2)), 0.3, atol=1e-6)
  np.testing.assert_allclose(np.asarray(full).max(axis=(1, 2)), 1.0, atol=1e-6)


@pytest.mark.parametrize('transposed', [False, True])
@pytest.mark.parametrize('k,stride,padding', [(3, 2, 0), (5, 3, 0), (4, 1, 0), (3, 1, 1),
                                              (5, 2, 2)])
@pytest.mark.parametrize('norm', [True, False])
def test_asymmetric_block_against_twin_and_fusion(transposed, k, stride, padding, norm):
  x = np.random.default_rng(0).random((2, 11, 11, 3), np.float32)
  block = AsymmetricBlock(5, k, stride, padding, transposed=transposed, norm=norm)
  shapes = jax.eval_shape(lambda x: block.init(jax.random.PRNGKey(0), x, train=False),
                          jnp.asarray(x))
  rng = np.random.default_rng(1)    # random kernels, biases and BN statistics
  v = jax.tree.map(lambda s: jnp.asarray(rng.uniform(0.5, 1.5, s.shape) if len(s.shape) == 1
                                         else rng.normal(size=s.shape), jnp.float32), shapes)
  y = np.asarray(block.apply(v, jnp.asarray(x), train=False))
  twin = TorchBlock(3, 5, k, stride, padding, transposed, norm).eval()
  wrapper = torch.nn.Module()
  wrapper.add_module('b', twin)
  port(wrapper, {'params': {'b': v['params']}, 'batch_stats': {'b': v.get('batch_stats', {})}})
  with torch.no_grad():
    t = twin(torch.from_numpy(x).movedim(-1, 1)).movedim(1, -1).numpy()
  assert y.shape == t.shape
  assert _rel(y, t) < 1e-5
  fused = fuse(v['params'], v.get('batch_stats'))
  plain = (ConvTranspose if transposed else Conv)(5, k, stride, padding, impl='xla')
  yf = np.asarray(plain.apply({'params': fused}, jnp.asarray(x)))
  assert _rel(yf, y) < 1e-5


def test_fused_ks_cae_equals_unfused_and_costs_a_plain_layer():
  model = MODELS.get('ks_cae')(channels=1, **SMALL_BCAE2)
  x = np.random.default_rng(0).random((2, 128, 128, 1), np.float32)
  v = _variables(model, x)
  fused_model = MODELS.get('ks_cae')(channels=1, block='fused', **SMALL_BCAE2)
  fv = fuse_ks_cae(v)

  def compile_recon(m, w):
    return jax.jit(lambda w, x: m.apply(w, x)['recon']).lower(w, jnp.asarray(x)).compile()
  acb, fused = compile_recon(model, v), compile_recon(fused_model, fv)
  y, yf = np.asarray(acb(v, jnp.asarray(x))), np.asarray(fused(fv, jnp.asarray(x)))
  assert _rel(yf, y) < 1e-5
  # the fused model has the parameter layout and FLOPs of a plain BCAE2 of the same width
  plain = MODELS.get('bcae2')(channels=1, width=0.5, **SMALL_BCAE2)
  pvars = _random_init(plain, x)
  pv = pvars
  bn = sum(2 * p['scale'].shape[0] for n, p in pv['params'].items()
           if n.endswith('_bn') and n[:-3] in fv['params'] and 'kernel' in fv['params'][n[:-3]]
           and n[:-3] in v['params'] and 'square' in v['params'][n[:-3]])
  assert _count(fv['params']) + bn == _count(pv['params'])

  f_fused, f_plain, f_acb = (c.cost_analysis()['flops'] for c in
                             (fused, compile_recon(plain, pvars), acb))
  assert f_fused <= f_plain * 1.001          # BN folded: not even the BN's elementwise work
  assert f_acb > 1.1 * f_fused              # what fusion saves: the 1×k and k×1 branches


def test_ssim_matches_scikit_image():
  rng = np.random.default_rng(0)
  x = rng.random((3, 40, 36, 2)).astype(np.float32)
  y = np.clip(x + 0.2 * rng.standard_normal(x.shape), 0, 1).astype(np.float32)
  ours = np.asarray(ssim(jnp.asarray(x), jnp.asarray(y)))
  kw = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
  ref = [structural_similarity(x[i], y[i], channel_axis=-1, **kw) for i in range(3)]
  np.testing.assert_allclose(ours, ref, rtol=1e-5)
  _, full = structural_similarity(x[0, ..., 0], y[0, ..., 0], full=True, **kw)
  np.testing.assert_allclose(np.asarray(ssim_map(jnp.asarray(x[:1]), jnp.asarray(y[:1])))[0, ..., 0],
                             full[5:-5, 5:-5], atol=1e-5)


def test_ssim_compound_loss_and_score():
  cfg = ml_collections.ConfigDict({'ssim': {'weight': 0.3}})
  method = METHODS.get('ssim')(cfg)
  rng = np.random.default_rng(1)
  x = rng.random((2, 24, 24, 1)).astype(np.float32)
  r = np.clip(x + 0.1 * rng.standard_normal(x.shape), 0, 1).astype(np.float32)
  out, batch = {'recon': jnp.asarray(r)}, {'image': jnp.asarray(x)}
  kw = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
  want = [0.3 * np.mean((r[i] - x[i]) ** 2) + 0.7 * (1 - structural_similarity(
      r[i, ..., 0], x[i, ..., 0], **kw)) for i in range(2)]
  score = method.score_fn(out, batch)
  np.testing.assert_allclose(np.asarray(score['score']), want, rtol=1e-5)
  assert score['pixel'].shape == (2, 24, 24)
  np.testing.assert_allclose(float(method.loss_fn(out, batch)[0]), np.mean(want), rtol=1e-5)
  clips = {'image': jnp.asarray(np.stack([x, x])), 'offset': jnp.asarray([0, 1])}
  assert method.score_fn({'recon': jnp.asarray(np.stack([r, r]))}, clips)['pixel'].shape == \
      (2, 24, 24)
  with pytest.raises(UserError, match='ssim.weight'):
    METHODS.get('ssim')(ml_collections.ConfigDict({'ssim': {'weight': 2.0}}))


class _Images:
  def __init__(self, x):
    self.x = x

  def __len__(self):
    return len(self.x)

  def __getitem__(self, i):
    return {'image': self.x[i]}


def test_svdd_finetunes_only_the_encoder():
  model = MODELS.get('bcae1')(channels=1, **SMALL_BCAE1)
  x = np.random.default_rng(0).random((64, 40, 40, 1), np.float32)
  v = _variables(model, x[:8])
  z0 = svdd.embeddings(model, v, _Images(x), 16, parallel.make_mesh(1))
  seen = []
  new, info = svdd.finetune(model, v, _Images(x), epochs=3, learning_rate=1e-4, batch_size=16,
                            warmup_epochs=2, on_epoch=lambda e, w: seen.append(e),
                            mesh=parallel.make_mesh(1))
  assert seen == [1, 2, 3]
  assert [h['radius'] for h in info['history']][:1] == [0.0]
  np.testing.assert_allclose(info['centre_norm'], np.linalg.norm(z0.mean(0)), rtol=1e-4)
  for name, p in v['params'].items():
    moved = any(bool(jnp.any(a != b)) for a, b in zip(jax.tree.leaves(p),
                                                       jax.tree.leaves(new['params'][name])))
    assert moved == name.startswith('enc'), name
  z1 = svdd.embeddings(model, new, _Images(x), 16, parallel.make_mesh(1))
  centre = z0.mean(0)
  d0, d1 = (np.sum((z - centre) ** 2, axis=1) for z in (z0, z1))
  assert d1.mean() < d0.mean()              # normal embeddings pulled to the centre
  assert info['history'][-1]['svdd_loss'] < info['history'][0]['svdd_loss']
  # after the warm-up R is the 0.99 quantile of the epoch's distances (taken while training)
  assert 0.5 * np.quantile(np.sqrt(d1), 0.99) < info['radius'] < 2 * np.quantile(np.sqrt(d0), 0.99)


def test_svdd_stage_attention_plots_and_the_svdd_sweep(tmp_path, quick_config):
  from experiments import svdd_sweep
  from vadjax.train import restore, train_and_evaluate
  cfg = quick_config(model='cbam_ae', image_size=32, plots=True, num_epochs=1)
  cfg.svdd.epochs = 1
  cfg.unlock()
  cfg.model_kwargs = ml_collections.ConfigDict()
  report = train_and_evaluate(cfg, str(tmp_path / 'svdd'))
  assert 0.0 <= report['mean']['auroc']['mean'] <= 1.0
  figure(tmp_path / 'svdd' / '1' / 'seed0' / 'attention_maps.png')
  assert report['runs'][0]['plots']['attention_maps'].endswith('attention_maps.png')
  stage = restore(str(tmp_path / 'svdd')).meta['svdd']     # the stage ran, once
  assert [h['epoch'] for h in stage['history']] == [1] and stage['encoder_params'] > 0
  # the Fig. 4.8 sweep on the AE without SVDD (finished, so reused)
  cfg.svdd.epochs, cfg.plots = 0, False
  report = train_and_evaluate(cfg, str(tmp_path / 'base'))
  result = svdd_sweep.sweep(cfg, [1e-4], [1], str(tmp_path), str(tmp_path / 'base'))
  (run,) = result['runs']
  assert set(run['lrs']) == {'0.0001'} and all(len(v) == 1 for v in run['lrs'].values())
  assert all(0 <= a <= 1 for v in run['lrs'].values() for a in v)
  assert abs(run['baseline'] - report['runs'][0]['image']['auroc']) < 1e-6
  figure(svdd_sweep.figure(result, str(tmp_path / 'f.png')))
  lines = svdd_sweep.table(result).splitlines()     # lr × epochs: baseline, then the lr row
  assert lines[2].startswith(f"| baseline (no fine-tuning) | {run['baseline']:.4f} |")
  assert lines[3] == f"| 1e-04 | {run['lrs']['0.0001'][0]:.4f} |"
