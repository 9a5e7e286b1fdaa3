"""Seed 002: ADACL's anomaly creation (checked exactly), ALPS's min–max step, the two
networks against their PyTorch twins, the cyclic learning rate against torch's CyclicLR,
the patch protocol, and both methods end to end."""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import torch

from conftest import assert_restore_scores_as_the_run, traced_once
from experiments.configs import adacl as adacl_cfg, alps as alps_cfg
from vadjax import parallel
from vadjax.bench.twins import TWINS, port
from vadjax.data import DATASETS, augment, patches
from vadjax.data.video import Video
from vadjax.methods import METHODS
from vadjax.models import MODELS
from vadjax.models.adacl import MAX_PARAMS, count_params
from vadjax.registry import UserError
from vadjax.train import steps as steps_lib
from vadjax.train import train_and_evaluate

KEYS = [jax.random.PRNGKey(i) for i in range(12)]


def _image(h=16, w=16, c=2, seed=0):
  return np.random.default_rng(seed).random((h, w, c), np.float32)


# ------------------------------------------------------------------------ augmentations

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


# ------------------------------------------------------------------------ ADACL

def _adacl(**settings):
  cfg = ml_collections.ConfigDict({'adacl': settings})
  return METHODS.get('adacl')(cfg)


def test_adacl_batch_labels_and_losses():
  x = jnp.asarray(np.random.default_rng(0).random((64, 16, 16, 1), np.float32))
  b = _adacl().augment({'image': x}, KEYS[0])
  assert b['image'].shape == (128, 16, 16, 1)
  np.testing.assert_array_equal(b['image'][:64], x)
  t = np.asarray(b['target'])
  assert np.all((t[:64] >= 0) & (t[:64] <= 0.3)) and np.all((t[64:] >= 0.7) & (t[64:] <= 1))
  assert t[:64].std() > 0.05                                   # continuous, not constant
  d = np.asarray(_adacl(labels='discrete', normal_interval=(0.0, 0.1)).augment(
      {'image': x}, KEYS[0])['target'])
  np.testing.assert_array_equal(d, np.r_[np.zeros(64), np.ones(64)])
  raw = jnp.array([-0.5, 0.2, 0.9, 1.7])
  target = jnp.array([0.1, 0.2, 0.8, 0.9])
  mse = _adacl().loss_fn({'prediction': raw}, {'target': target})[0]
  assert float(mse) == pytest.approx(float(np.mean((raw - target) ** 2)))
  bce = _adacl(loss='bce').loss_fn({'prediction': raw}, {'target': target})[0]
  ref = torch.nn.functional.binary_cross_entropy_with_logits(
      torch.tensor(np.asarray(raw)), torch.tensor(np.asarray(target)))
  assert float(bce) == pytest.approx(float(ref), rel=1e-6)
  np.testing.assert_allclose(_adacl().score_fn({'prediction': raw}, {})['score'],
                             [0, 0.2, 0.9, 1])
  with pytest.raises(UserError, match='overlap'):
    _adacl(normal_interval=(0.0, 0.8))
  with pytest.raises(UserError, match='unknown adacl settings'):
    _adacl(labelz='discrete')


def test_adacl_regressor_size_and_twin():
  assert count_params(1, 32) < MAX_PARAMS and count_params(3, 64) < MAX_PARAMS
  _parity('adacl_cnn', {}, train=True)


def test_adacl_validation_set_is_fixed_by_seed():
  from vadjax.data.sources import ArraySource
  imgs = np.random.default_rng(0).random((200, 16, 16, 1), np.float32)
  m = _adacl()
  a, b = (m.validation_set(ArraySource(image=imgs), seed=3) for _ in range(2))
  assert len(a) == 300 and a.array('label').sum() == 150
  np.testing.assert_array_equal(a.array('image'), b.array('image'))


# ------------------------------------------------------------------------ ALPS

def _parity(name, kwargs, train=False):
  model = MODELS.get(name)(channels=1, **kwargs)
  x = np.random.default_rng(1).random((6, 32, 32, 1), np.float32)
  v = model.init(jax.random.PRNGKey(2), jnp.asarray(x))
  twin = port(TWINS[name](channels=1, input_size=(32, 32), **kwargs), v)
  twin.train(train)
  with torch.no_grad():
    t = twin(torch.from_numpy(x).permute(0, 3, 1, 2))
  out = model.apply(v, x, train=train, mutable=['batch_stats'])[0] if train else \
      model.apply(v, x)
  for k, a in out.items():
    b = t[k].numpy()
    if b.ndim == 4:
      b = b.transpose(0, 2, 3, 1)
    np.testing.assert_allclose(np.asarray(a), b, atol=2e-5, rtol=1e-4, err_msg=k)


def test_alps_twin_parity():
  _parity('alps', {'latent_dim': 16, 'epsilon': 0.7})


def _alps_steps(every=2, perturbation='adversarial', once=False):
  cfg = alps_cfg.get_config()
  cfg.alps.distorter_every = every
  model = MODELS.get('alps')(channels=1, latent_dim=16, filters=(8, 16, 32),
                             distorter_filters=(8, 8, 8), perturbation=perturbation)
  method = METHODS.get('alps')(cfg)
  method = traced_once(method) if once else method
  mesh = parallel.make_mesh(1)
  return steps_lib.build_steps(model, method, method.optimizer(cfg, steps_lib.make_optimizer),
                               mesh, (32, 32, 1)), method


def test_alps_step_is_adversarial():
  """On a fixed batch of digits, through the method's own gradients and optimizer (a fresh
  Adam step, lr 1e-3: its direction is the current gradient's, not an old momentum's), each
  player's update alone: the distorter's raises the perturbed reconstruction error, the
  autoencoder's lowers it."""
  steps, method = _alps_steps()
  state = steps.init(KEYS[0])
  x = jnp.asarray(DATASETS.get('digits')('1', 32, alps_cfg.get_config().data)
                  .train.array('image')[:16])
  batch = {'image': x}
  for _ in range(25):      # past the initial flat stretch, where the decoder ignores z
    state, _ = steps.train(state, batch)

  @jax.jit
  def mse(params):
    out = steps.model.apply({'params': params}, x)
    return jnp.mean(jnp.square(out['recon_perturbed'] - x))

  perturbed_mse = lambda params: float(mse(params))
  grad = jax.jit(jax.grad(lambda p: method.loss_fn(steps.model.apply({'params': p}, x),
                                                   batch)[0]))

  def update_only(player):
    g = method.adjust_grads(grad(state.params))
    deltas, _ = state.tx.update(g, state.tx.init(state.params), state.params, epoch=state.epoch)
    return {k: jax.tree.map(jnp.add, v, deltas[k]) if (k == 'distorter') == (player == 'ad')
            else v for k, v in state.params.items()}

  start = perturbed_mse(state.params)
  assert perturbed_mse(update_only('ad')) > start * 1.0003
  assert perturbed_mse(update_only('ae')) < start * 0.99


def test_alps_distorter_updates_every_k_epochs():
  steps, _ = _alps_steps(every=2, once=True)     # the epoch is data, not a new program
  state = steps.init(KEYS[0])
  batch = {'image': np.random.default_rng(0).random((8, 32, 32, 1), np.float32)}
  moved = []
  for epoch in range(4):
    state = steps_lib.set_epoch(state, epoch)
    old = jax.device_get(state.params)            # the step donates the state
    state, _ = steps.train(state, batch)
    diff = lambda k: max(float(np.max(np.abs(np.asarray(a) - b))) for a, b in
                         zip(jax.tree.leaves(state.params[k]), jax.tree.leaves(old[k])))
    moved.append((diff('encoder') > 0, diff('distorter') > 0))
  assert moved == [(True, True), (True, False), (True, True), (True, False)]


def test_alps_noise_and_vanilla_variants():
  x = jnp.asarray(np.random.default_rng(0).random((4, 32, 32, 1), np.float32))
  for kind in ('noise', 'none'):
    model = MODELS.get('alps')(channels=1, perturbation=kind)
    v = model.init(KEYS[0], x)
    assert 'distorter' not in v['params']
    out = model.apply(v, x)
    if kind == 'none':
      np.testing.assert_array_equal(out['recon'], out['recon_perturbed'])
    else:   # noise: random in training, fixed in evaluation
      a = model.apply(v, x, train=True, rngs={'perturb': KEYS[1]})['perturbation']
      b = model.apply(v, x, train=True, rngs={'perturb': KEYS[2]})['perturbation']
      assert not np.allclose(a, b)
      np.testing.assert_array_equal(out['perturbation'], model.apply(v, x)['perturbation'])


# ------------------------------------------------------------------------ optimizer

def test_cyclic_learning_rate_matches_torch():
  sched = steps_lib.cyclic_learning_rate(1e-4, 1e-3, 5)
  p = torch.nn.Parameter(torch.zeros(1))
  opt = torch.optim.SGD([p], lr=1e-4)
  ref = torch.optim.lr_scheduler.CyclicLR(opt, 1e-4, 1e-3, step_size_up=5, mode='triangular')
  for step in range(23):
    assert float(sched(step)) == pytest.approx(opt.param_groups[0]['lr'], rel=1e-5), step
    opt.step()
    ref.step()


# ------------------------------------------------------------------------ patch protocol

def _videos(n=2, t=5, size=12):
  rng = np.random.default_rng(0)
  out = []
  for i in range(n):
    frames = np.zeros((t, size, size, 1), np.float32)
    frames[:, :4, :4] = rng.random((t, 4, 4, 1))        # only the top-left corner moves
    labels = np.array([0, 1] * (t // 2) + [0] * (t % 2), np.int32)
    out.append(Video(frames, labels, labels * 2, None, f'v{i}'))
  return out


def test_patch_grid_and_sources():
  assert patches.grid(12, 12, 5, 5) == [(y, x) for y in (0, 5, 7) for x in (0, 5, 7)]
  vids = _videos()
  train = patches.TrainPatches(vids, 4, 4)
  assert len(train) == 2 * 5 * 9
  moving = patches.TrainPatches(vids, 4, 4, min_change=0.05)
  assert len(moving) == 2 * 5 and moving.index[:, 2:].max() == 0      # the moving patch
  np.testing.assert_array_equal(moving[3]['image'], vids[0].frames[3, :4, :4])
  stacks = patches.PatchStacks(vids, 6, 6)
  r = stacks[7]                                                  # video 1, frame 2
  assert r['image'].shape == (4, 6, 6, 1) and int(r['video']) == 1 and int(r['frame']) == 2
  np.testing.assert_array_equal(r['image'][3], vids[1].frames[2, 6:, 6:])
  np.testing.assert_array_equal(stacks.array('label'), np.r_[vids[0].labels, vids[1].labels])
  with pytest.raises(UserError, match='patch_min_change'):
    patches.TrainPatches(vids, 4, 4, min_change=2.0)


@pytest.mark.parametrize('name', ['adacl', 'alps'])
def test_frame_score_is_the_max_over_patches(name):
  if name == 'adacl':
    model = MODELS.get('adacl_cnn')(channels=1, filters=(4, 4, 4, 4), hidden=4)
    cfg, extra = adacl_cfg.get_config(), 'score/raw'
  else:
    model = MODELS.get('alps')(channels=1, latent_dim=4, filters=(4, 4, 4),
                               distorter_filters=(4, 4, 4))
    cfg, extra = alps_cfg.get_config(), 'score/clean'
  method = METHODS.get(name)(cfg)
  steps = steps_lib.build_steps(model, method, method.optimizer(cfg, steps_lib.make_optimizer),
                                parallel.make_mesh(1), (16, 16, 1))
  state = steps.init(KEYS[0])
  stacks = np.random.default_rng(0).random((3, 5, 16, 16, 1), np.float32)
  out = steps.score(state, {'image': stacks})
  each = steps.score(state, {'image': stacks.reshape(15, 16, 16, 1)})
  for key in ('score', extra):
    np.testing.assert_allclose(out[key], np.asarray(each[key]).reshape(3, 5).max(1),
                               rtol=1e-6)
  top = np.asarray(each['score']).reshape(3, 5).argmax(1)
  np.testing.assert_array_equal(out['patch'], top)
  if name == 'alps':    # the frame's map and reconstruction are its top patch's
    np.testing.assert_allclose(out['pixel'], np.asarray(each['pixel']).reshape(
        3, 5, 16, 16)[np.arange(3), top], rtol=1e-6)


def test_patch_protocol_needs_video():
  cfg = adacl_cfg.get_config('quick')
  cfg.data.patch_size = 8
  with pytest.raises(UserError, match='needs a video dataset'):
    train_and_evaluate(cfg, '/tmp/never_written')


# ------------------------------------------------------------------------ end to end

def _report(workdir):
  with open(os.path.join(workdir, 'report.json')) as f:
    return json.load(f)


def test_alps_end_to_end(tmp_path):
  cfg = alps_cfg.get_config('quick')
  cfg.model_kwargs.update(latent_dim=8, filters=(8, 16, 32), distorter_filters=(8, 8, 8))
  cfg.num_epochs, cfg.plots = 3, True
  report = train_and_evaluate(cfg, str(tmp_path))
  mean = report['mean']
  assert {'auroc_clean', 'auroc_perturbed', 'auroc_mean'} <= set(mean)
  assert mean['auroc']['mean'] == mean['auroc_mean']['mean']          # alps.score = mean
  assert os.path.exists(tmp_path / '1' / 'seed0' / 'reconstructions.png')
  assert assert_restore_scores_as_the_run(tmp_path).config.method == 'alps'


def test_adacl_end_to_end_with_patches(tmp_path):
  cfg = adacl_cfg.get_config('walkway,quick')
  cfg.update(batch_size=16, eval_batch_size=8, plots=True)
  report = train_and_evaluate(cfg, str(tmp_path))
  assert 'auroc_raw' in report['mean'] and 'auroc_per_video_norm' in report['mean']
  run = tmp_path / 'gray' / 'seed0'
  history = [json.loads(line) for line in open(run / 'metrics.jsonl')]
  assert any('val_auroc' in h for h in history)
  assert (run / 'created_anomalies.png').exists() and (run / 'score_timelines.png').exists()
  assert assert_restore_scores_as_the_run(tmp_path).config.method == 'adacl'
