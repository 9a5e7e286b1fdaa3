"""The training loop: learning, no retrace, data parallelism, resume, bad input."""

import json
import os

import jax
import numpy as np
import pytest

from vadjax import parallel
from vadjax.data import DATASETS
from vadjax.data.sources import ArraySource
from vadjax.methods import METHODS
from vadjax.models import MODELS
from vadjax.registry import UserError
from vadjax.train import loop, steps as steps_lib
from vadjax.train import train_and_evaluate
from vadjax.train.checkpoint import Checkpointer


def _steps(config, num_devices):
  mesh = parallel.make_mesh(num_devices)
  model = MODELS.get('bcae1')(channels=1, filters=(8, 8, 8, 16, 16))
  tx = steps_lib.make_optimizer(config)
  return steps_lib.build_steps(model, METHODS.get('reconstruction')(), tx, mesh,
                               (32, 32, 1)), mesh


def test_steps_learn_without_retracing(quick_config):
  cfg = quick_config(learning_rate=1e-2)
  steps, mesh = _steps(cfg, 4)
  state = steps.init(jax.random.PRNGKey(0))
  images = DATASETS.get('digits')('1', 32, cfg.data).train.array('image')[:32]
  batch = parallel.shard_batch({'image': images}, mesh)
  assert batch['image'].sharding.spec == parallel.data_sharding(mesh).spec
  losses = []
  for _ in range(20):
    state, m = steps.train(state, batch)
    losses.append(float(m['loss']))
  assert losses[-1] < 0.6 * losses[0], losses
  assert steps.train._cache_size() == 1          # one compilation for all steps
  state = steps_lib.set_learning_rate(state, 1e-4)   # the plateau's LR change: no retrace
  state, _ = steps.train(state, batch)
  assert steps.train._cache_size() == 1
  assert steps_lib.get_learning_rate(state) == pytest.approx(1e-4)


def _history(workdir, cat='1', seed=0):
  with open(os.path.join(workdir, cat, f'seed{seed}', 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def _final_params(workdir, config, cat='1', seed=0):
  """The last checkpoint's params, restored as a user resuming on one device would."""
  exp = loop.Experiment(config)
  steps = exp.steps((32, 32, 1))
  ckpt = Checkpointer(os.path.join(workdir, cat, f'seed{seed}', 'checkpoints'))
  state, _ = ckpt.restore(steps.init(jax.random.PRNGKey(0)),
                          loop.fingerprint(config, (32, 32, 1)))
  ckpt.close()
  return jax.device_get(state.params)


def test_one_device_equals_four_devices(quick_config, tmp_path):
  r1 = train_and_evaluate(quick_config(num_devices=1), str(tmp_path / 'd1'))
  r4 = train_and_evaluate(quick_config(num_devices=4), str(tmp_path / 'd4'))
  l1 = [h['train_loss'] for h in _history(tmp_path / 'd1')]
  l4 = [h['train_loss'] for h in _history(tmp_path / 'd4')]
  assert len(l1) == len(l4) >= 4
  np.testing.assert_allclose(l1, l4, rtol=2e-4)
  assert r4['device']['count'] == 4
  assert r1['mean']['auroc']['mean'] == pytest.approx(r4['mean']['auroc']['mean'], abs=2e-3)


def test_resume_after_interruption_matches_uninterrupted(quick_config, tmp_path, monkeypatch):
  cfg = quick_config(num_epochs=3)
  train_and_evaluate(cfg, str(tmp_path / 'straight'))

  real_build = steps_lib.build_steps

  def build_interrupting(*a, **kw):
    steps = real_build(*a, **kw)
    train, calls = steps.train, [0]

    def train_then_die(state, batch):
      calls[0] += 1
      if calls[0] == 5:        # mid-epoch 2; last checkpoint at step 3 (end of epoch 1)
        raise KeyboardInterrupt
      return train(state, batch)
    steps.train = train_then_die
    return steps

  monkeypatch.setattr(steps_lib, 'build_steps', build_interrupting)
  with pytest.raises(KeyboardInterrupt):
    train_and_evaluate(cfg, str(tmp_path / 'resumed'))
  assert not os.path.exists(tmp_path / 'resumed' / 'report.json')
  monkeypatch.setattr(steps_lib, 'build_steps', real_build)
  report = train_and_evaluate(cfg, str(tmp_path / 'resumed'))
  assert report['runs'][0]['steps'] == 9
  a, b = _final_params(tmp_path / 'straight', cfg), _final_params(tmp_path / 'resumed', cfg)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7), a, b)


def test_nan_loss_stops_and_names_the_step(quick_config, tmp_path):
  cfg = quick_config(model='deep_ae', learning_rate=1e30, num_epochs=3)
  cfg.unlock()
  cfg.model_kwargs = {}
  with pytest.raises(loop.TrainingDiverged, match=r'became (nan|inf) at step \d+'):
    train_and_evaluate(cfg, str(tmp_path))


def test_workdir_of_another_model_is_refused_untouched(quick_config, tmp_path):
  train_and_evaluate(quick_config(), str(tmp_path))
  before = sorted(p.name for p in (tmp_path / '1' / 'seed0' / 'checkpoints').iterdir())
  cfg = quick_config(model='deep_ae')
  cfg.unlock()
  cfg.model_kwargs = {}
  with pytest.raises(UserError, match='holds an experiment of .*bcae1.*use another --workdir'):
    train_and_evaluate(cfg, str(tmp_path))
  after = sorted(p.name for p in (tmp_path / '1' / 'seed0' / 'checkpoints').iterdir())
  assert before == after


def test_unwritable_workdir(quick_config, tmp_path):
  blocker = tmp_path / 'file'
  blocker.write_text('x')
  with pytest.raises(UserError, match='cannot write to workdir'):
    train_and_evaluate(quick_config(), str(blocker / 'sub'))


def test_eval_mode_needs_a_finished_run(quick_config, tmp_path):
  with pytest.raises(UserError, match='no checkpoint'):
    train_and_evaluate(quick_config(), str(tmp_path), mode='eval')
  train_and_evaluate(quick_config(), str(tmp_path), mode='train')
  report = train_and_evaluate(quick_config(), str(tmp_path), mode='eval')
  assert 0 <= report['mean']['auroc']['mean'] <= 1


def test_batch_not_divisible_by_devices(quick_config):
  with pytest.raises(UserError, match='not divisible by the 4 devices'):
    loop.Experiment(quick_config(num_devices=4, batch_size=30))


def test_validation_loss_ignores_padding(quick_config):
  """37 samples in batches of 16: the padded last batch must not bias the mean loss."""
  cfg = quick_config()
  steps, mesh = _steps(cfg, 1)
  state = steps.init(jax.random.PRNGKey(0))
  images = DATASETS.get('digits')('1', 32, cfg.data).test.array('image')[:37]
  sub = ArraySource(image=images)
  scores = loop.score_split(steps, state, sub, mesh, 16)['score']
  assert scores.shape == (37,)
  assert loop.mean_loss(steps, state, sub, mesh, 16) == pytest.approx(float(scores.mean()),
                                                                      rel=1e-5)
