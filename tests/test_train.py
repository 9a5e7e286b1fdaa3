"""The training loop: learning, no retrace, data parallelism, resume, bad input."""

import json
import os
import signal
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import traced_once
from vadjax import parallel
from vadjax.data import DATASETS
from vadjax.data.sources import ArraySource
from vadjax.methods import METHODS
from vadjax.models import MODELS
from vadjax.registry import UserError
from vadjax.train import evaluate, experiment, loop, steps as steps_lib
from vadjax.train import restore, train_and_evaluate


def _steps(config, num_devices):
  mesh = parallel.make_mesh(num_devices)
  model = MODELS.get('bcae1')(channels=1, filters=(8, 8, 8, 16, 16))
  tx = steps_lib.make_optimizer(config.optimizer)
  return steps_lib.build_steps(model, traced_once(METHODS.get('reconstruction')()), tx, mesh,
                               (32, 32, 1)), mesh


def test_steps_learn_without_retracing(quick_config):
  cfg = quick_config()
  cfg.optimizer.learning_rate = 1e-2
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
  state = steps_lib.set_learning_rate(state, 1e-4)   # the plateau's LR change: no retrace
  state, _ = steps.train(state, batch)
  assert steps_lib.get_learning_rate(state) == pytest.approx(1e-4)


def _history(workdir, cat='1', seed=0):
  with open(os.path.join(workdir, cat, f'seed{seed}', 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def _final_params(workdir, config=None, cat='1', seed=0):
  """The trained run's params, restored from the workdir alone on this process's devices."""
  del config
  return jax.device_get(restore(str(workdir), cat, seed).state.params)


def test_one_device_equals_four_devices(quick_config, tmp_path):
  r1 = train_and_evaluate(quick_config(num_devices=1), str(tmp_path / 'd1'))
  r4 = train_and_evaluate(quick_config(num_devices=4), str(tmp_path / 'd4'))
  l1 = [h['train_loss'] for h in _history(tmp_path / 'd1')]
  l4 = [h['train_loss'] for h in _history(tmp_path / 'd4')]
  assert len(l1) == len(l4) >= 4
  np.testing.assert_allclose(l1, l4, rtol=2e-4)
  assert r4['device']['count'] == 4
  assert r1['mean']['auroc']['mean'] == pytest.approx(r4['mean']['auroc']['mean'], abs=2e-3)


def _stopping_at(real_build, call, stop):
  """build_steps whose train step calls `stop()` at its `call`-th call."""
  def build(*a, **kw):
    steps = real_build(*a, **kw)
    train, calls = steps.train, [0]

    def train_then_stop(state, batch):
      calls[0] += 1
      if calls[0] == call:
        stop()
      return train(state, batch)
    steps.train = train_then_stop
    return steps
  return build


def test_resume_after_interruption_matches_uninterrupted(quick_config, tmp_path, monkeypatch):
  """A crash mid-epoch (no save) and a SIGINT/SIGTERM (saved at the next step) both resume to
  the parameters of an uninterrupted run."""
  cfg = quick_config(num_epochs=3)
  # what the process had (SIG_IGN, not Python's handler, when started in a background job)
  sigint_handler = signal.getsignal(signal.SIGINT)
  train_and_evaluate(cfg, str(tmp_path / 'straight'))
  real_build = steps_lib.build_steps

  def crash():
    raise KeyboardInterrupt
  # mid-epoch 2; last checkpoint at step 3 (end of epoch 1)
  monkeypatch.setattr(steps_lib, 'build_steps', _stopping_at(real_build, 5, crash))
  with pytest.raises(KeyboardInterrupt):
    train_and_evaluate(cfg, str(tmp_path / 'resumed'))
  assert not os.path.exists(tmp_path / 'resumed' / 'report.json')
  for sig in (signal.SIGINT, signal.SIGTERM):
    monkeypatch.setattr(steps_lib, 'build_steps', _stopping_at(
        real_build, 5, lambda sig=sig: os.kill(os.getpid(), sig)))
    with pytest.raises(loop.Interrupted, match=f'{sig.name} received: saved step 5') as e:
      train_and_evaluate(cfg, str(tmp_path / sig.name))
    assert e.value.exit_code == 128 + sig
    assert signal.getsignal(signal.SIGINT) is sigint_handler   # handlers back
  monkeypatch.setattr(steps_lib, 'build_steps', real_build)
  straight = _final_params(tmp_path / 'straight', cfg)
  for name in ('resumed', 'SIGINT', 'SIGTERM'):
    report = train_and_evaluate(cfg, str(tmp_path / name))
    assert report['runs'][0]['steps'] == 9
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7),
                 straight, _final_params(tmp_path / name, cfg))


def test_nan_loss_stops_and_names_the_step(quick_config, tmp_path):
  cfg = quick_config(model='deep_ae', num_epochs=3)
  cfg.optimizer.learning_rate = 1e30
  cfg.unlock()
  cfg.model_kwargs = {}
  with pytest.raises(loop.TrainingDiverged, match=r'became (nan|inf) at step \d+'):
    train_and_evaluate(cfg, str(tmp_path))


def _folder_data(root, shade):
  """A tiny folder dataset (64 normal, 16 anomalous 16×16 PNGs); `shade` changes its files."""
  from PIL import Image
  rng = np.random.default_rng(shade)
  for sub, n in (('normal', 64), ('anomalous/blob', 16)):
    os.makedirs(root / sub, exist_ok=True)
    for i in range(n):
      img = rng.integers(0, 60 if sub == 'normal' else 255, (16, 16), dtype=np.uint8) + shade
      Image.fromarray(img.astype(np.uint8)).save(root / sub / f'{i}.png')
  return root


def test_workdir_of_another_experiment_is_refused_untouched(quick_config, tmp_path):
  """Another model, another data folder, or the same folder with other files: each a
  one-line refusal naming the field, with nothing in the workdir changed."""
  a, b = _folder_data(tmp_path / 'a', 0), _folder_data(tmp_path / 'b', 3)
  cfg = quick_config(dataset='folder', categories='all', image_size=32)
  cfg.data.folder_root = str(a)
  work = tmp_path / 'work'
  train_and_evaluate(cfg, str(work))
  files = {p: p.stat().st_mtime_ns for p in work.rglob('*') if p.is_file()}
  other_model = quick_config(model='deep_ae', dataset='folder', categories='all', image_size=32)
  other_model.data.folder_root = str(a)
  other_model.unlock()
  other_model.model_kwargs = {}
  other_data = quick_config(dataset='folder', categories='all', image_size=32)
  other_data.data.folder_root = str(b)
  for c, field_name in ((other_model, 'model'), (other_data, 'data_identity.location')):
    with pytest.raises(UserError, match=rf'holds another experiment \({field_name} was'):
      train_and_evaluate(c, str(work))
  (a / 'normal' / '0.png').write_bytes((b / 'normal' / '0.png').read_bytes() + b'\0')
  with pytest.raises(UserError, match=r'data_identity.files was'):   # same folder, new files
    train_and_evaluate(cfg, str(work))
  assert files == {p: p.stat().st_mtime_ns for p in work.rglob('*') if p.is_file()}


@pytest.fixture(scope='module')
def trained(quick_config, tmp_path_factory):
  """A finished quick experiment (read, never changed, by the tests that take it)."""
  work = tmp_path_factory.mktemp('trained') / 'w'
  return work, train_and_evaluate(quick_config(), str(work))


def test_finished_run_is_not_run_again_and_restores_exactly(quick_config, trained, tmp_path):
  """A rerun that trains nothing leaves report.json as it is; `restore(workdir)` from the
  workdir alone scores the test split exactly as the run's own evaluation did."""
  from vadjax.train import load_splits, restore
  work, report = trained
  stamp = (work / 'report.json').stat().st_mtime_ns
  again = train_and_evaluate(quick_config(), str(work))
  assert (work / 'report.json').stat().st_mtime_ns == stamp
  assert again['mean'] == json.loads(json.dumps(report['mean']))
  run = restore(str(work))
  assert (run.category, run.seed, run.image_shape) == ('1', 0, (32, 32, 1))
  test = load_splits(run.config, '1').test
  scores = run.score(np.stack([test[i]['image'] for i in range(len(test))]))
  np.testing.assert_array_equal(scores['score'],
                                np.load(work / '1' / 'seed0' / 'test_scores.npz')['score'])
  with pytest.raises(UserError, match=r'scores inputs of shape \(N, 32, 32, 1\)'):
    run.score(np.zeros((2, 16, 16, 1)))
  with pytest.raises(UserError, match='no config.json'):
    restore(str(tmp_path / 'empty'))
  with pytest.raises(UserError, match=r"no run of category '7', seed 0 .* it holds 1/seed0"):
    restore(str(work), category='7')
  assert not (work / '7').exists()


def test_rescore_with_another_score_window(trained, tmp_path):
  """Re-scoring with the worst 3×3 window: the test AUROC is sklearn's on the window
  means of the trained run's own pixel maps; the trained workdir is left as it is, and a
  setting that changes training is refused."""
  from sklearn.metrics import roc_auc_score
  from vadjax.data.sources import field
  from vadjax.train import load_splits
  from vadjax.train.experiment import load_config
  from vadjax.train.rescore import rescore
  work, _ = trained
  before = {p: p.stat().st_mtime_ns for p in work.rglob('*')}
  config = load_config(str(work))
  config.reconstruction.score_window = 3
  report = rescore(str(work), config, str(tmp_path / 'r'))
  assert report['rescored_from'] == str(work)
  assert {p: p.stat().st_mtime_ns for p in work.rglob('*')} == before   # only read
  run = restore(str(work))                          # the trained score: the frame mean
  test = load_splits(run.config, '1').test
  maps = run.score(np.stack([test[i]['image'] for i in range(len(test))]))['pixel']
  windows = np.lib.stride_tricks.sliding_window_view(maps, (3, 3), axis=(1, 2))
  scores = np.load(tmp_path / 'r' / '1' / 'seed0' / 'test_scores.npz')['score']
  np.testing.assert_allclose(scores, windows.mean(axis=(-2, -1)).max(axis=(1, 2)), rtol=1e-5)
  labels = field(test, 'label')
  assert report['mean']['auroc']['mean'] == pytest.approx(roc_auc_score(labels, scores), abs=1e-9)
  with pytest.raises(UserError, match='new workdir'):
    rescore(str(work), config, str(work))
  for key, value in (('svdd.epochs', 1), ('num_epochs', 9)):   # in the identity, or not
    changed = load_config(str(work))
    group = changed.svdd if key == 'svdd.epochs' else changed
    changed.reconstruction.score_window, group[key.split('.')[-1]] = 3, value
    with pytest.raises(UserError, match=r'only score settings \(reconstruction.score_window\);'
                                        rf' config.{key} was \d+, now {value}'):
      rescore(str(work), changed, str(tmp_path / 'r2'))
  assert not (tmp_path / 'r2' / 'report.json').exists()


def test_a_second_run_in_a_workdir_is_refused_at_once(quick_config, tmp_path):
  from vadjax.train import workdir as workdir_lib
  with workdir_lib.lock(str(tmp_path)):
    holder = json.loads((tmp_path / '.lock').read_text())
    assert holder['pid'] == os.getpid()
    with pytest.raises(UserError, match=f'in use by the run of process {os.getpid()}'):
      train_and_evaluate(quick_config(), str(tmp_path))
  assert not (tmp_path / '.lock').exists()
  dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'],
                        capture_output=True, text=True).stdout.strip()
  (tmp_path / '.lock').write_text(json.dumps({'pid': int(dead), 'host': socket.gethostname(),
                                              'started': 'then'}))
  with workdir_lib.lock(str(tmp_path)):     # a stale lock: taken over
    assert json.loads((tmp_path / '.lock').read_text())['pid'] == os.getpid()


def test_unwritable_workdir(quick_config, tmp_path):
  blocker = tmp_path / 'file'
  blocker.write_text('x')
  with pytest.raises(UserError, match='cannot write to workdir'):
    train_and_evaluate(quick_config(), str(blocker / 'sub'))


def test_eval_mode_needs_a_finished_run(quick_config, tmp_path):
  with pytest.raises(UserError, match='holds no trained experiment'):
    train_and_evaluate(quick_config(), str(tmp_path), mode='eval')
  train_and_evaluate(quick_config(), str(tmp_path), mode='train')
  report = train_and_evaluate(quick_config(), str(tmp_path), mode='eval')
  assert 0 <= report['mean']['auroc']['mean'] <= 1


def test_batch_not_divisible_by_devices(quick_config):
  with pytest.raises(UserError, match='not divisible by the 4 devices'):
    experiment.Experiment(quick_config(num_devices=4, batch_size=30))


def test_validation_loss_ignores_padding(quick_config):
  """37 samples in batches of 16: the padded last batch must not bias the mean loss."""
  cfg = quick_config()
  steps, mesh = _steps(cfg, 1)
  state = steps.init(jax.random.PRNGKey(0))
  images = DATASETS.get('digits')('1', 32, cfg.data).test.array('image')[:37]
  sub = ArraySource(image=images)
  scores = evaluate.score_split(steps, state, sub, mesh, 16)['score']
  assert scores.shape == (37,)
  assert evaluate.mean_loss(steps, state, sub, mesh, 16) == pytest.approx(float(scores.mean()),
                                                                      rel=1e-5)


def test_lock_file_being_written_is_in_use_and_an_old_broken_one_is_stale(tmp_path):
  from vadjax.train import workdir as workdir_lib
  (tmp_path / '.lock').write_text('')                      # another run is writing it now
  with pytest.raises(UserError, match='in use by the run of process \\? on this host'):
    with workdir_lib.lock(str(tmp_path)):
      pass
  os.utime(tmp_path / '.lock', (0, 0))                     # broken and old: stale
  with workdir_lib.lock(str(tmp_path)):
    assert json.loads((tmp_path / '.lock').read_text())['pid'] == os.getpid()


def test_a_method_off_the_protocol_fails_at_trace(quick_config):
  """The step checks the Method protocol with chex: one scalar loss, one score per sample."""
  from vadjax.methods.base import Method

  class TwoScoresEach(Method):
    def loss_fn(self, outputs, batch):
      return jnp.mean(jnp.square(outputs['recon'] - batch['image']), axis=(1, 2, 3)), {}

    def score_fn(self, outputs, batch):
      return {'score': jnp.zeros((batch['image'].shape[0], 2))}

  model = MODELS.get('bcae1')(channels=1, filters=(8, 8, 8, 16, 16))
  cfg = quick_config()
  steps = steps_lib.build_steps(model, TwoScoresEach(), steps_lib.make_optimizer(cfg.optimizer),
                                parallel.make_mesh(1), (32, 32, 1))
  state = steps.init(jax.random.PRNGKey(0))
  batch = {'image': np.zeros((4, 32, 32, 1), np.float32)}
  with pytest.raises(AssertionError, match='rank'):
    steps.train(state, batch)
  with pytest.raises(AssertionError, match='shape'):
    steps.score(state, batch)
