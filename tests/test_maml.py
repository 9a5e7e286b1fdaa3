"""Few-shot scene adaptation: walkway scenes, tasks, the MAML kernels and the protocol."""

import functools

import numpy as np
import pytest

import jax
import jax.numpy as jnp

from conftest import figure
from vadjax.data import scenes, walkway
from vadjax.methods import maml


def test_scenes_are_deterministic_and_differ():
  assert walkway.scene(0) == walkway.Scene()
  assert walkway.scene(3) == walkway.scene(3) and walkway.scene(3) != walkway.scene(4)
  a = walkway.make_videos(30, 1, 0, 1, 32, scene_id=5)
  b = walkway.make_videos(30, 1, 0, 1, 32, scene_id=5)
  np.testing.assert_array_equal(a[0][0].frames, b[0][0].frames)
  np.testing.assert_array_equal(a[2][0].labels, b[2][0].labels)
  other = walkway.make_videos(30, 1, 0, 1, 32, scene_id=6)[0][0].frames
  default = walkway.make_videos(30, 1, 0, 1, 32)[0][0].frames
  assert np.abs(a[0][0].frames - other).mean() > 0.02
  assert np.abs(a[0][0].frames - default).mean() > 0.02
  assert a[2][0].labels.any() and a[2][0].masks.shape == (30, 32, 32)
  # the flow of a scene goes one way: its wrong-way event against it
  views = [walkway.scene(i) for i in range(1, 40)]
  assert {v.direction for v in views} == {-1, 1} and len({v.shift for v in views}) > 3
  with pytest.raises(Exception, match='>= 0'):
    walkway.scene(-1)


def test_tasks_hold_disjoint_pairs_of_consecutive_frames():
  data = scenes.load(2, 16, 30, 1, 0)
  rng = np.random.default_rng(0)
  task = scenes.task(rng, data.train, t=3, k=4)
  frames = data.train[0].frames
  starts = []
  for split in ('train', 'val'):
    x, y = task[split]['x'], task[split]['y']
    assert x.shape == (4, 3, 16, 16, 1) and y.shape == (4, 16, 16, 1)
    for xi, yi in zip(x, y):
      s = next(s for s in range(len(frames) - 3) if np.array_equal(frames[s], xi[0]))
      np.testing.assert_array_equal(frames[s + 3], yi)
      starts.append(s)
  assert len(set(starts)) == 8          # D^tr and D^val disjoint
  with pytest.raises(Exception, match='needs 60 segments'):
    scenes.task(rng, data.train, t=3, k=30)


def _linear(p, x):
  return x @ p['w'] + p['b']


def test_one_inner_step_is_a_hand_written_sgd_step():
  rng = np.random.default_rng(1)
  x, y = rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=(5, 2)).astype(np.float32)
  p = {'w': rng.normal(size=(3, 2)).astype(np.float32), 'b': np.zeros(2, np.float32)}
  err = x @ p['w'] + p['b'] - y
  scale = 2 / err.size                  # d mean(err²) / d err
  want = {'w': p['w'] - 0.1 * scale * x.T @ err, 'b': p['b'] - 0.1 * scale * err.sum(0)}
  got = maml.adapt(_linear, p, {'x': x, 'y': y}, 0.1, steps=1)
  for k in want:
    np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6)


def _mlp(p, x):
  return jnp.tanh(x @ p['w1']) @ p['w2']


def _tasks(rng, n=3, k=4, dtype=np.float64):
  def split():
    return {'x': rng.normal(size=(n, k, 3)).astype(dtype),
            'y': rng.normal(size=(n, k, 2)).astype(dtype)}
  return {'train': split(), 'val': split()}


def test_meta_gradient_matches_finite_differences():
  with jax.enable_x64(True):
    rng = np.random.default_rng(2)
    meta = {'params': {'w1': rng.normal(size=(3, 4)), 'w2': rng.normal(size=(4, 2))}}
    tasks = _tasks(rng)
    loss = lambda m: maml.meta_loss(_mlp, m, tasks, 0.3, 2, first_order=False)
    grad = jax.grad(loss)(meta)['params']
    eps = 1e-6
    for name, index in (('w1', (0, 1)), ('w1', (2, 3)), ('w2', (1, 0)), ('w2', (3, 1))):
      plus, minus = (jax.tree.map(np.copy, meta) for _ in range(2))
      plus['params'][name][index] += eps
      minus['params'][name][index] -= eps
      fd = (float(loss(plus)) - float(loss(minus))) / (2 * eps)
      np.testing.assert_allclose(grad[name][index], fd, rtol=1e-6, atol=1e-9)


def test_vmapped_and_unrolled_tasks_agree():
  rng = np.random.default_rng(5)
  meta = {'params': {'w1': rng.normal(size=(3, 4)).astype(np.float32),
                     'w2': rng.normal(size=(4, 2)).astype(np.float32)}}
  tasks = _tasks(rng, dtype=np.float32)
  grads = [jax.jit(jax.grad(lambda m, how=how: maml.meta_loss(_mlp, m, tasks, 0.3, 2, False,
                                                                how)))(meta)
           for how in ('vmap', 'loop')]
  for k in meta['params']:
    np.testing.assert_allclose(grads[0]['params'][k], grads[1]['params'][k], rtol=1e-5)
  with pytest.raises(Exception, match='task_map'):
    maml.meta_loss(_mlp, meta, tasks, 0.3, 1, False, 'pmap')


def test_first_order_is_the_stop_gradient_form():
  with jax.enable_x64(True):
    rng = np.random.default_rng(3)
    meta = {'params': {'w1': rng.normal(size=(3, 4)), 'w2': rng.normal(size=(4, 2))}}
    tasks = _tasks(rng)
    first = jax.grad(lambda m: maml.meta_loss(_mlp, m, tasks, 0.3, 2, True))(meta)['params']
    second = jax.grad(lambda m: maml.meta_loss(_mlp, m, tasks, 0.3, 2, False))(meta)['params']
    # FOMAML: the mean over tasks of the validation gradient at the adapted parameters
    per_task = []
    for i in range(3):
      task = jax.tree.map(lambda a: a[i], tasks)
      adapted = maml.adapt(_mlp, meta['params'], task['train'], 0.3, 2)
      per_task.append(jax.grad(lambda p: maml.mse(_mlp, p, task['val']))(adapted))
    want = jax.tree.map(lambda *g: np.mean(g, axis=0), *per_task)
    for k in want:
      np.testing.assert_allclose(first[k], want[k], rtol=1e-10)
      assert not np.allclose(first[k], second[k], rtol=1e-3)


def test_meta_sgd_learns_the_inner_rates():
  import optax
  rng = np.random.default_rng(4)
  params = {'w1': rng.normal(size=(3, 4)).astype(np.float32),
            'w2': rng.normal(size=(4, 2)).astype(np.float32)}
  meta = maml.init_meta(params, 0.3, learn_inner_lr=True)
  tx = optax.adam(1e-2)
  step = maml.make_meta_step(_mlp, tx, 0.3, 1, first_order=False)
  new, _, loss = step(meta, tx.init(meta), _tasks(rng, dtype=np.float32))
  assert np.isfinite(float(loss))
  for k in params:
    assert not np.allclose(new['alpha'][k], 0.3) and new['alpha'][k].shape == params[k].shape
  with pytest.raises(Exception, match='inner_lr must be positive'):
    maml.init_meta(params, 0.0, False)


def test_frame_predictor_keeps_no_statistics():
  from vadjax.models.frame_predictor import UNetPredictor
  model = UNetPredictor(channels=1, features=(4, 8))
  v = model.init(jax.random.PRNGKey(0), jnp.zeros((2, 3, 16, 16, 1)))
  assert set(v) == {'params'}
  assert model.apply(v, jnp.ones((2, 3, 16, 16, 1))).shape == (2, 16, 16, 1)
  with pytest.raises(ValueError, match='divisible by 2'):
    model.apply(v, jnp.ones((2, 3, 15, 16, 1)))


def test_quick_protocol_runs_every_method(tmp_path):
  from experiments import maml as experiment
  from experiments.configs import maml as config
  report = experiment.run(config.get_config('quick'), str(tmp_path))
  for name in experiment.METHODS:
    for k in (1, 2):
      for pooling in experiment.POOLINGS:
        assert 0 <= report['summary'][f'{name}/k{k}'][pooling]['mean'] <= 1
  assert len(report['rows']) == len(experiment.METHODS) * 2
  assert len(report['curves']['maml/seed0']) == 3
  figure(tmp_path / 'scenes.png')
  assert (tmp_path / 'report.md').read_text().startswith('| method |')


def test_meta_gradient_equals_the_pytorch_twin():
  """The JAX meta step against MAML written the usual PyTorch way (torch.func and
  higher-order autograd) on the same weights and tasks."""
  import torch
  from vadjax.bench.twins import TWINS, port
  from vadjax.bench.twins.frame_predictor import meta_loss as torch_meta_loss
  from vadjax.models.frame_predictor import UNetPredictor
  model = UNetPredictor(channels=1, features=(4, 8), groups=2)
  v = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 3, 16, 16, 1)))
  twin = port(TWINS['unet_predictor'](channels=1, frames_in=3, features=(4, 8), groups=2), v)
  rng = np.random.default_rng(6)
  x = rng.uniform(size=(2, 3, 16, 16, 1)).astype(np.float32)
  np.testing.assert_allclose(twin(torch.from_numpy(x)).detach().numpy(),
                             jax.jit(model.apply)(v, x), rtol=1e-4, atol=1e-5)
  tasks = {s: {'x': rng.uniform(size=(2, 3, 3, 16, 16, 1)).astype(np.float32),
               'y': rng.uniform(size=(2, 3, 16, 16, 1)).astype(np.float32)}
           for s in ('train', 'val')}
  loss, grads = jax.jit(jax.value_and_grad(lambda m: maml.meta_loss(
      model.apply, m, tasks, 0.5, 1, False, 'loop')))({'params': v})
  params = {k: p.detach().requires_grad_() for k, p in twin.named_parameters()}
  as_torch = [[(torch.from_numpy(tasks[s]['x'][i]), torch.from_numpy(tasks[s]['y'][i]))
               for s in ('train', 'val')] for i in range(2)]
  want = torch_meta_loss(twin, params, as_torch, 0.5, 1, first_order=False)
  want.backward()
  np.testing.assert_allclose(float(loss), float(want.detach()), rtol=1e-5)
  for name in ('down0_conv0', 'dec0_conv1', 'out'):
    g = np.asarray(grads['params']['params'][name]['kernel'])
    np.testing.assert_allclose(g.transpose(3, 2, 0, 1), params[f'{name}.weight'].grad.numpy(),
                               rtol=2e-3, atol=1e-6)


def test_second_order_conv_form_gives_the_same_meta_gradient():
  """The U-Net in the 'gemm' form (second-order MAML on CPU) has the same parameters,
  meta-loss and second-order meta-gradient as in XLA's convolutions."""
  from vadjax.models.frame_predictor import UNetPredictor
  plain = UNetPredictor(channels=1, features=(2, 4), groups=2)
  gemm = plain.clone(conv_impl='gemm')
  x0 = jnp.zeros((1, 3, 8, 8, 1))
  v = jax.jit(plain.init)(jax.random.PRNGKey(0), x0)
  assert jax.tree.map(jnp.shape, v) == jax.tree.map(
      jnp.shape, jax.eval_shape(gemm.init, jax.random.PRNGKey(0), x0))
  rng = np.random.default_rng(7)
  tasks = {s: {'x': rng.uniform(size=(1, 3, 3, 8, 8, 1)).astype(np.float32),
               'y': rng.uniform(size=(1, 3, 8, 8, 1)).astype(np.float32)}
           for s in ('train', 'val')}
  (loss, grads), (loss_gemm, grads_gemm) = [jax.jit(jax.value_and_grad(functools.partial(
      maml.meta_loss, model.apply, tasks=tasks, alpha=0.5, steps=1, first_order=False,
      task_map='loop')))({'params': v}) for model in (plain, gemm)]
  assert float(loss_gemm) == pytest.approx(float(loss), rel=1e-5)
  grads = (grads, grads_gemm)
  scale = max(float(np.abs(a).max()) for a in jax.tree.leaves(grads[0]))
  for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1])):   # (biases before
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * scale)        # GroupNorm: ~0)
  assert maml.conv_impl('first') == 'auto'
  assert maml.conv_impl('second') == ('gemm' if jax.default_backend() == 'cpu' else 'auto')
