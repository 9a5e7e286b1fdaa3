"""Convolutional recurrent cells and AEs (seed 001 §3.7, §4.9) and the video scoring (the
`walkway` scene: test_data.py). References: the PyTorch twins (cells stepped in a Python
loop, whole models), JAX's own autodiff of the scan, scipy (Savitzky–Golay), a moving
average (its polyorder-1 interior), the seed's Tab. 4.12."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal
import torch

from conftest import assert_restore_scores_as_the_run, figure, sweep_in_fresh_process
from vadjax.bench.twins import TWINS, port
from vadjax.bench.twins import Recurrent as TorchRecurrent
from vadjax.data import walkway
from vadjax.eval import video as video_lib
from vadjax.models import MODELS
from vadjax.models.conv_rnn_ae import NAMES
from experiments.param_table import TAB_4_12, param_count
from vadjax.nn.convrnn import Bidirectional, ConvRecurrent, recurrence
from vadjax.registry import UserError

SMALL = {'filters': (4, 4, 4, 6, 6)}


def _randomize(variables, seed=0, scale=0.3):
  """Every parameter random (biases and peepholes too), so no term hides behind a zero."""
  rng = np.random.default_rng(seed)
  leaves, tree = jax.tree.flatten(variables['params'])
  leaves = [jnp.asarray(rng.normal(size=x.shape).astype(np.float32) * scale) for x in leaves]
  return {**variables, 'params': jax.tree.unflatten(tree, leaves)}


def _torch_layer(mod: TorchRecurrent, params):
  """Copies a ConvRecurrent's parameters into the twin's cell."""
  def t(a):
    return torch.from_numpy(np.array(a))
  p = params
  k = np.asarray(p['input']['kernel'])
  mod.input.weight.data = t(k.transpose(2, 3, 0, 1) if isinstance(
      mod.input, torch.nn.ConvTranspose2d) else k.transpose(3, 2, 0, 1))
  mod.hidden.weight.data = t(np.asarray(p['hidden']).transpose(3, 2, 0, 1))
  mod.bias.data = t(p['bias'])
  if 'peepholes' in p:
    mod.peepholes.data = t(p['peepholes'])
  if 'output' in p:
    mod.output.weight.data = t(np.asarray(p['output']['kernel']).transpose(3, 2, 0, 1))
    mod.output.bias.data = t(p['output']['bias'])
  return mod


@pytest.mark.parametrize('cell', ['rnn', 'lstm', 'gru'])
@pytest.mark.parametrize('transposed,reverse', [(False, False), (True, True)])
def test_cells_match_a_python_loop_reference(cell, transposed, reverse):
  x = np.random.default_rng(1).random((2, 5, 6, 6, 3), np.float32)
  layer = ConvRecurrent(cell, 4, stride=2, output_padding=1 if transposed else 0,
                        transposed=transposed, peepholes=True, reverse=reverse)
  v = _randomize(layer.init(jax.random.key(0), jnp.asarray(x)))
  ours = np.asarray(layer.apply(v, jnp.asarray(x)))
  out_size = ours.shape[2]
  twin = _torch_layer(TorchRecurrent(cell, 3, 4, 2, transposed, True, out_size), v['params'])
  ref = twin(torch.from_numpy(x).permute(0, 1, 4, 2, 3), reverse=reverse)
  np.testing.assert_allclose(ours, ref.permute(0, 1, 3, 4, 2).detach().numpy(), atol=2e-5)
  assert ours.shape == (2, 5, 12 if transposed else 3, 12 if transposed else 3, 4)


@pytest.mark.parametrize('cell', ['rnn', 'lstm', 'gru'])
def test_custom_scan_gradient_equals_autodiff_and_unrolled(cell):
  g = {'rnn': 1, 'lstm': 4, 'gru': 3}[cell]
  rng = np.random.default_rng(2)
  xp = jnp.asarray(rng.normal(size=(6, 2, 5, 5, 3 * g)).astype(np.float32))
  w = jnp.asarray(rng.normal(size=(3, 3, 3, 3 * g)).astype(np.float32) * 0.3)
  peep = jnp.asarray(rng.normal(size=(3, 5, 5, 3)).astype(np.float32)) if cell == 'lstm' else None
  h0 = tuple(jnp.asarray(rng.normal(size=(2, 5, 5, 3)).astype(np.float32))
             for _ in range(2 if cell == 'lstm' else 1))

  def loss(impl, unroll=1, remat=False):
    def f(xp, w, peep, h0):
      hs = recurrence(cell, xp, w, peep, h0, scan_impl=impl, unroll=unroll, remat=remat)
      return jnp.sum(jnp.sin(hs) * jnp.arange(hs.size).reshape(hs.shape) / hs.size)
    return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2, 3)))

  ref_val, ref = loss('autodiff')(xp, w, peep, h0)
  for args in (('custom',), ('custom', 1, True), ('custom', 6), ('autodiff', 6), ('auto',)):
    val, got = loss(*args)(xp, w, peep, h0)
    np.testing.assert_allclose(val, ref_val, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref)):
      np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)


def test_scan_program_size_does_not_grow_with_clip_length():
  """custom, unroll=1: one loop body, whatever T (compile time independent of T). 'auto'
  unrolls up to 8 steps (no loop left) and is the custom scan beyond."""
  def hlo(t, impl):
    xp = jnp.zeros((t, 1, 4, 4, 9))
    w = jnp.zeros((3, 3, 3, 9))
    f = jax.grad(lambda xp, w: jnp.sum(recurrence('gru', xp, w, scan_impl=impl)),
                 argnums=(0, 1))
    return jax.jit(f).lower(xp, w).as_text()
  assert len(hlo(4, 'custom').splitlines()) == len(hlo(32, 'custom').splitlines())
  assert 'while' not in hlo(8, 'auto') and 'while' in hlo(9, 'auto')
  assert len(hlo(16, 'auto').splitlines()) == len(hlo(32, 'auto').splitlines())


def test_bidirectional_reverses_time_not_batch():
  x = jnp.asarray(np.random.default_rng(3).random((2, 4, 4, 4, 2), np.float32))
  layer = Bidirectional(dict(cell='gru', features=3))
  v = _randomize(layer.init(jax.random.key(0), x))
  first = lambda x: jnp.sum(layer.apply(v, x)[:, 0])
  grad = np.abs(np.asarray(jax.jit(jax.grad(first))(x))).sum(axis=(2, 3, 4))
  assert (grad[:, 1:] > 0).all()          # frame 0's output sees the future (backward half)
  per_sample = jax.jit(jax.grad(lambda x: jnp.sum(layer.apply(v, x)[0])))(x)
  assert float(jnp.abs(per_sample[1]).max()) == 0.0    # and never another sample
  fwd = ConvRecurrent('gru', 3)
  vf = {'params': v['params']['fwd']}
  g_fwd = np.abs(np.asarray(jax.grad(lambda x: jnp.sum(fwd.apply(vf, x)[:, 0]))(x)))
  assert g_fwd[:, 1:].max() == 0.0        # the forward half alone does not


@pytest.mark.parametrize('name,layers,dut', [     # every cell, variant and DUT
    ('crnn_ae', 2, True), ('cgru_ae', 3, True), ('biclstm_ae', 1, False),
    ('seq2seq_cgru', 2, True)])
def test_models_match_their_torch_twins(name, layers, dut):
  kwargs = dict(SMALL, recurrent_layers=layers, recurrent_decoder=dut)
  model = MODELS.get(name)(channels=2, **kwargs)
  x = np.random.default_rng(4).random((2, 6, 32, 32, 2), np.float32)
  v = _randomize(jax.jit(model.init)(jax.random.key(0), jnp.asarray(x)), scale=0.4)
  ours, _ = jax.jit(functools.partial(model.apply, train=True, mutable=['batch_stats']))(
      v, jnp.asarray(x))
  twin = port(TWINS[name](channels=2, input_size=(32, 32), **kwargs), v).train()
  ref = twin(torch.from_numpy(x).movedim(-1, 1))
  n_ours = sum(a.size for a in jax.tree.leaves(v['params']))
  assert n_ours == sum(p.numel() for p in twin.parameters())
  for key in ('recon', 'target') if name.startswith('seq2seq') else ('recon',):
    np.testing.assert_allclose(ours[key], ref[key].movedim(1, -1).detach().numpy(), atol=2e-5)
  if name.startswith('seq2seq'):
    assert ours['recon'].shape == (2, 2, 32, 32, 2)
    np.testing.assert_array_equal(ours['target'], x[:, 4:])


def test_parameter_counts_reproduce_tab_4_12():
  """Every count within 0.01 M of the seed's, except ConvGRU with a recurrent decoder: the
  seed's transposed GRU cell holds one more 3×3 F→F conv than eq. 3.17 (BUILD_NOTES.md)."""
  for name, row in TAB_4_12.items():
    for i, seed_m in enumerate(row):
      layers, dut = i % 3 + 1, i >= 3
      ours = param_count(name, layers, dut)
      if name.endswith('cgru_ae') or name == 'seq2seq_cgru':
        if dut:       # + one F×F 3×3 conv per transposed GRU cell (F = 96, 64, 64)
          f = (96, 64, 64)[:layers]
          ours += sum(9 * c * c for c in f) * (2 if name == 'bicgru_ae' else 1)
      assert abs(ours / 1e6 - seed_m) <= 0.01 + 1e-9, (name, layers, dut, ours, seed_m)


def test_peepholes_add_three_hadamard_maps():
  extra = param_count('clstm_ae', 1, False, peepholes=True) - param_count('clstm_ae', 1, False)
  assert extra == 3 * 8 * 8 * 96


def test_bad_clips_are_clear_errors():
  model = MODELS.get('cgru_ae')(channels=1, **SMALL)
  with pytest.raises(UserError, match='multiples of 16'):
    model.init(jax.random.key(0), jnp.zeros((1, 4, 30, 30, 1)))
  with pytest.raises(UserError, match='T ≥ 5'):
    MODELS.get('seq2seq_cgru')(channels=1, **SMALL).init(jax.random.key(0),
                                                         jnp.zeros((1, 4, 32, 32, 1)))
  with pytest.raises(UserError, match='cell must be one of'):
    MODELS.get('conv_rnn_ae')(channels=1, cell='tcn', **SMALL).init(
        jax.random.key(0), jnp.zeros((1, 4, 32, 32, 1)))


def test_per_frame_model_is_its_image_model_on_every_frame():
  x = jnp.asarray(np.random.default_rng(5).random((2, 3, 32, 32, 1), np.float32))
  clip = MODELS.get('per_frame')(channels=1)
  v = clip.init(jax.random.key(0), x)
  image = MODELS.get('bcae1')(channels=1)
  ours = clip.apply(v, x)['recon']
  ref = image.apply({k: c['frames'] for k, c in v.items()}, x.reshape(6, 32, 32, 1))['recon']
  np.testing.assert_allclose(ours, ref.reshape(x.shape), atol=1e-6)


def test_savgol_regularity_matches_scipy_and_a_moving_average():
  rng = np.random.default_rng(6)
  e = rng.random(40)
  s = video_lib.normality(e)
  np.testing.assert_allclose(video_lib.regularity(e), scipy.signal.savgol_filter(s, 15, 1))
  # polyorder 1: inside the video, the smoothed value is the window's mean
  np.testing.assert_allclose(video_lib.regularity(e)[7:-7],
                             np.convolve(s, np.ones(15) / 15, 'valid'), atol=1e-12)
  assert video_lib.savgol_window(10) == 9 and video_lib.savgol_window(12) == 11
  np.testing.assert_allclose(video_lib.regularity(e[:10]),
                             scipy.signal.savgol_filter(video_lib.normality(e[:10]), 9, 1))
  np.testing.assert_allclose(video_lib.regularity(e[:2]), video_lib.normality(e[:2]))


def test_frame_metrics_name_every_pooling_and_kind():
  labels = np.array([0, 0, 1, 1, 0, 0, 0, 1] * 4)
  kinds = labels * np.repeat([1, 2, 3, 4], 8)
  videos = np.repeat(np.arange(4), 8)
  scores = labels + np.random.default_rng(7).random(32) * 0.5
  m = video_lib.frame_metrics(labels, scores, videos, kinds, walkway.KINDS, window=3)
  assert m['auroc_per_video_norm'] == 1.0
  assert set(m) >= {'auroc_per_video_norm', 'eer_per_video_norm', 'auroc_mean_per_video',
                    'auroc_regularity', 'eer_regularity', 'per_kind_auroc_per_video_norm'}
  assert set(m['per_kind_auroc_per_video_norm']) == {'object', 'fast', 'wrong_way', 'loiter'}


def test_conv_rnn_runs_end_to_end_on_walkway(tmp_path):
  from experiments.configs import conv_rnn
  from vadjax.train import train_and_evaluate
  cfg = conv_rnn.get_config('quick,model=seq2seq_cgru')
  cfg.num_epochs, cfg.plots = 1, True
  report = train_and_evaluate(cfg, str(tmp_path))
  run = report['runs'][0]
  for fig in ('score_timelines', 'reconstructions'):
    figure(run['plots'][fig])
  for key in ('auroc_per_video_norm', 'auroc_mean_per_video', 'auroc_regularity'):
    assert 0 <= run['image'][key] <= 1
  assert set(run['per_kind_auroc_per_video_norm']) <= set(walkway.KINDS[1:])
  assert len(NAMES) == 9
  assert assert_restore_scores_as_the_run(tmp_path).config.model == 'seq2seq_cgru'


def test_categories_with_other_channels_restore_with_their_own_shape(tmp_path):
  """walkway's gray and color categories: the workdir's fingerprint holds the first one's
  shape; each run must restore with its own (it once failed at the second category)."""
  from experiments.configs import conv_rnn
  from vadjax.train import restore, train_and_evaluate
  cfg = conv_rnn.get_config('quick,model=seq2seq_cgru,categories=gray;color')
  cfg.num_epochs = 1
  train_and_evaluate(cfg, str(tmp_path), mode='train')
  assert restore(str(tmp_path), 'gray').image_shape[-1] == 1
  assert restore(str(tmp_path), 'color').image_shape[-1] == 3


def test_score_window_is_the_worst_window_mean():
  from vadjax.methods.reconstruction import Reconstruction, window_max
  maps = np.random.default_rng(0).random((2, 3, 10, 12)).astype(np.float32)
  ref = [np.mean([max(maps[b, t, i:i + 4, j:j + 4].mean() for i in range(7) for j in range(9))
                  for t in range(3)]) for b in range(2)]
  np.testing.assert_allclose(window_max(jnp.asarray(maps), 4), ref, rtol=1e-5)
  # one wrong figure or two: the same score (the frame mean doubles)
  one, two = np.zeros((1, 1, 16, 16, 1), np.float32), np.zeros((1, 1, 16, 16, 1), np.float32)
  one[..., 2:5, 2:5, :] = two[..., 2:5, 2:5, :] = two[..., 10:13, 9:12, :] = 1
  method = Reconstruction({'reconstruction': {'score_window': 3}})
  zero = {'recon': jnp.zeros_like(one)}
  s1 = method.score_fn(zero, {'image': jnp.asarray(one)})['score']
  s2 = method.score_fn(zero, {'image': jnp.asarray(two)})['score']
  np.testing.assert_allclose([s1[0], s2[0]], [1.0, 1.0])
  frame_mean = Reconstruction({'reconstruction': {'score_window': 0}})
  mean = frame_mean.score_fn(zero, {'image': jnp.asarray(two)})
  np.testing.assert_allclose(mean['score'], 18 / 256)
  with pytest.raises(UserError, match='score_window'):
    too_wide = Reconstruction({'reconstruction': {'score_window': 17}})
    too_wide.score_fn(zero, {'image': jnp.asarray(one)})


def test_sweep_harness_video_study(tmp_path):
  """The sweep harness on the video study: one row trained, its table row read from the
  run's report (with the derived motion mean), and collect-only over what exists. In a
  fresh process: its absl flags (--workdir, ...) clash with other experiment scripts'."""
  import json
  result, again = sweep_in_fresh_process(
      "[sweep.run('video', w, ['0'], preset='quick', override='num_epochs=1', "
      "only=['BCAE1 (per frame)']), sweep.run('video', w, ['0'], "
      "only=['BCAE1 (per frame)', 'CRNN*'], collect_only=True)]", tmp_path)
  (row,) = result['rows']
  report = json.loads((tmp_path / 'BCAE1_per_frame_walkway' / 'report.json').read_text())
  assert row['result'] == report['mean'] and report['mean']['auroc']['n'] == 1
  motion = np.mean([report['mean'][f'kind_per_video_norm/{k}']['mean']
                    for k in ('fast', 'wrong_way', 'loiter')])
  line = result['table'].splitlines()[2]
  cells = [c.strip() for c in line.strip('|').split('|')]
  assert cells[:3] == ['BCAE1 (per frame)', 'walkway', '1'] and cells[-1] == '0.84 / 0.27'
  assert cells[3] == f"{report['mean']['auroc_per_video_norm']['mean']:.4f}"
  assert cells[-2] == f'{motion:.4f}'                    # the derived column
  # 'CRNN*' matches CRNN(2,N) alone, which never ran
  assert [r['label'] for r in again['rows']] == ['BCAE1 (per frame)', 'CRNN(2,N)']
  assert [r['result'] is None for r in again['rows']] == [False, True]
  assert (tmp_path / 'video.md').read_text().strip() == again['table']


def test_method_settings_are_refused_where_they_would_be_ignored():
  from experiments.configs import conv_rnn
  from vadjax.train.experiment import Experiment
  cfg = conv_rnn.get_config('quick,reconstruction.score_window=8')
  Experiment(cfg)                                 # reconstruction: used
  cfg.method = 'ssim'
  with pytest.raises(UserError, match="group 'reconstruction' is set .* 'ssim' does not use"):
    Experiment(cfg)
  cfg.method, cfg.reconstruction.score_window = 'reconstruction', -1
  with pytest.raises(UserError, match='score_window'):
    Experiment(cfg)
  cfg.reconstruction.score_window, cfg.method, cfg.svdd.epochs = 0, 'alps', 3
  with pytest.raises(UserError, match="group 'svdd' is set"):
    Experiment(cfg)
