"""ADACL (seed 002 ch. 4): labels, losses, validation set, cyclic learning rate, end to end
with the patch protocol."""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import torch

from conftest import (assert_exports_score_as_the_run, assert_restore_scores_as_the_run, figure)
from experiments.configs import adacl as adacl_cfg
from vadjax.methods import METHODS
from vadjax.models.adacl import MAX_PARAMS, count_params
from vadjax.registry import UserError
from vadjax.train import steps as steps_lib
from vadjax.train import train_and_evaluate

KEYS = [jax.random.PRNGKey(i) for i in range(12)]


def _adacl(**settings):
  cfg = ml_collections.ConfigDict({'adacl': settings})
  return METHODS.get('adacl')(cfg)


def test_adacl_batch_labels_and_losses():
  x = jnp.asarray(np.random.default_rng(0).random((64, 16, 16, 1), np.float32))
  b = jax.jit(_adacl().augment)({'image': x}, KEYS[0])     # one program, not op by op
  assert b['image'].shape == (128, 16, 16, 1)
  np.testing.assert_array_equal(b['image'][:64], x)
  t = np.asarray(b['target'])
  assert np.all((t[:64] >= 0) & (t[:64] <= 0.3)) and np.all((t[64:] >= 0.7) & (t[64:] <= 1))
  assert t[:64].std() > 0.05                                   # continuous, not constant
  d = np.asarray(jax.jit(_adacl(labels='discrete', normal_interval=(0.0, 0.1)).augment)(
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


def test_adacl_regressor_size():
  assert count_params(1, 32) < MAX_PARAMS and count_params(3, 64) < MAX_PARAMS


def test_adacl_validation_set_is_fixed_by_seed():
  from vadjax.data.sources import ArraySource
  imgs = np.random.default_rng(0).random((200, 16, 16, 1), np.float32)
  m = _adacl()
  a, b = (m.validation_set(ArraySource(image=imgs), seed=3) for _ in range(2))
  assert len(a) == 300 and a.array('label').sum() == 150
  np.testing.assert_array_equal(a.array('image'), b.array('image'))


def test_cyclic_learning_rate_matches_torch():
  sched = steps_lib.cyclic_learning_rate(1e-4, 1e-3, 5)
  p = torch.nn.Parameter(torch.zeros(1))
  opt = torch.optim.SGD([p], lr=1e-4)
  ref = torch.optim.lr_scheduler.CyclicLR(opt, 1e-4, 1e-3, step_size_up=5, mode='triangular')
  for step in range(23):
    assert float(sched(step)) == pytest.approx(opt.param_groups[0]['lr'], rel=1e-5), step
    opt.step()
    ref.step()


def _report(workdir):
  with open(os.path.join(workdir, 'report.json')) as f:
    return json.load(f)


def test_adacl_end_to_end_with_patches(tmp_path):
  cfg = adacl_cfg.get_config('walkway,quick')
  cfg.update(batch_size=16, eval_batch_size=8, plots=True)
  report = train_and_evaluate(cfg, str(tmp_path))
  assert 'auroc_raw' in report['mean'] and 'auroc_per_video_norm' in report['mean']
  run = tmp_path / 'gray' / 'seed0'
  history = [json.loads(line) for line in open(run / 'metrics.jsonl')]
  assert any('val_auroc' in h for h in history)
  figure(run / 'created_anomalies.png')
  figure(run / 'score_timelines.png')
  assert assert_restore_scores_as_the_run(tmp_path).config.method == 'adacl'
  run = assert_exports_score_as_the_run(tmp_path)   # StableHLO and ONNX, fresh process
  # served on whole frames (patches cut inside the bucketed scorer) as the run scores them
  from vadjax.serving import export as export_lib
  from vadjax.serving.predict import Predictor
  x, _ = export_lib._example(run, 3)
  np.testing.assert_allclose(Predictor(run).score(x).raw,
                             export_lib.reference_scores(run, x)['score'], rtol=1e-5)
