"""ALPS (seed 002 ch. 3): the adversarial step, the distorter's schedule, the ablation
variants, end to end."""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from conftest import (assert_exports_score_as_the_run, assert_restore_scores_as_the_run,
                      traced_once)
from experiments.configs import alps as alps_cfg
from vadjax import parallel
from vadjax.data import DATASETS
from vadjax.methods import METHODS
from vadjax.models import MODELS
from vadjax.train import steps as steps_lib
from vadjax.train import train_and_evaluate

KEYS = [jax.random.PRNGKey(i) for i in range(12)]


def _alps_steps(every=2, perturbation='adversarial', once=False):
  cfg = alps_cfg.get_config()
  cfg.alps.distorter_every = every
  model = MODELS.get('alps')(channels=1, latent_dim=16, filters=(8, 16, 32),
                             distorter_filters=(8, 8, 8), perturbation=perturbation)
  method = METHODS.get('alps')(cfg)
  method = traced_once(method) if once else method
  mesh = parallel.make_mesh(1)
  return steps_lib.build_steps(model, method, method.optimizer(cfg.optimizer, steps_lib.make_optimizer),
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

  @functools.partial(jax.jit, static_argnames='player')
  def update_only(params, player):
    g = method.adjust_grads(grad(params))
    deltas, _ = state.tx.update(g, state.tx.init(params), params, epoch=state.epoch)
    return {k: jax.tree.map(jnp.add, v, deltas[k]) if (k == 'distorter') == (player == 'ad')
            else v for k, v in params.items()}

  start = perturbed_mse(state.params)
  assert perturbed_mse(update_only(state.params, 'ad')) > start * 1.0003
  assert perturbed_mse(update_only(state.params, 'ae')) < start * 0.99


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
    v = jax.jit(model.init)(KEYS[0], x)
    assert 'distorter' not in v['params']
    apply = jax.jit(model.apply, static_argnames='train')
    out = apply(v, x)
    if kind == 'none':
      np.testing.assert_array_equal(out['recon'], out['recon_perturbed'])
    else:   # noise: random in training, fixed in evaluation
      a = apply(v, x, train=True, rngs={'perturb': KEYS[1]})['perturbation']
      b = apply(v, x, train=True, rngs={'perturb': KEYS[2]})['perturbation']
      assert not np.allclose(a, b)
      np.testing.assert_array_equal(out['perturbation'], apply(v, x)['perturbation'])


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
  assert_exports_score_as_the_run(tmp_path)         # StableHLO and ONNX, fresh process
