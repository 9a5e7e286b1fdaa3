"""Benchmark harness: analytic FLOPs by hand, and a tiny end-to-end run of every record."""

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import torch
import pytest
from absl import app, flags
from absl.testing import flagsaver

from experiments import bench
from vadjax.bench import harness
from vadjax.models import MODELS


def test_forward_flops_by_hand():
  net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, 2, 1), torch.nn.ConvTranspose2d(8, 4, 4, 2),
                            torch.nn.Flatten(), torch.nn.Linear(4 * 18 * 18, 10))
  x = torch.zeros(2, 3, 16, 16)
  conv = 2 * (2 * 8 * 8 * 8) * 3 * 9          # output pixels × Cin × k²
  convt = 2 * (2 * 8 * 8 * 8) * 4 * 16        # input pixels × Cout × k²
  dense = 2 * 2 * 10 * (4 * 18 * 18)
  assert harness.forward_flops(net, x) == conv + convt + dense


def test_bench_writes_every_record(tmp_path):
  out = tmp_path / 'bench.json'
  if not flags.FLAGS.is_parsed():
    flags.FLAGS(['bench'])
  with flagsaver.flagsaver(models=['deep_ae'], batch=4, size=16, repeats=2, warmup=0,
                           torch_compile=False, isolated_memory=False, out=str(out), paired=3):
    bench.main([])
    # the isolated memory probe (a fresh process per record) of one record
    probe = bench._isolated_memory({'model': 'deep_ae', 'framework': 'jax', 'mode': 'train',
                                    'batch': 4})
  result = json.loads(out.read_text())
  recs = result['records']
  assert {(r['framework'], r['mode']) for r in recs} == {
      (f, m) for f in ('jax', 'torch') for m in ('train', 'infer')}
  for r in recs:
    assert r['median_s'] > 0 and r['flops'] > 0 and r['peak_rss_mb'] > 0
  assert probe is not None and probe > 0
  assert all(r['xla_buffers_mb'] > 0 for r in recs if r['framework'] == 'jax')
  assert all(r['max_rel_diff'] < 1e-4 for r in recs if r['framework'] == 'torch')
  train = [r for r in recs if r['mode'] == 'train']
  infer = [r for r in recs if r['mode'] == 'infer']
  assert train[0]['flops'] == 3 * infer[0]['flops']
  assert result['meta']['torch_threads'] >= 1 and result['meta']['versions']['jax']
  for r in recs:          # --paired: alternating calls, ratios on the torch records
    assert ('paired_ratio' in r) == (r['framework'] == 'torch')
    if r['framework'] == 'torch':
      assert 0 < r['paired_p25'] <= r['paired_ratio'] <= r['paired_p75']
  assert 'paired torch/jax' in bench.lib.table(recs) and 'blocks of 4' in bench.lib.table(recs)
  for r in recs:
    assert r['share_of_peak'] > 0
    if r['framework'] == 'torch':
      assert 0 < r['paired_block_p25'] <= r['paired_block_ratio'] <= r['paired_block_p75']
  assert json.loads(out.read_text())['meta']['matmul_peak_gflops'] > 1


def test_forward_flops_count_attention_and_lstm_by_hand():
  from vadjax.bench.twins.backbones import Attention, LSTMPredictor
  b, t, d, h = 3, 5, 6, 4
  lstm = LSTMPredictor(d, hidden=h)
  gates = 2 * b * (t - 1) * 4 * h * (d + h)                # the LSTM's two matmuls per step
  assert harness.forward_flops(lstm, torch.zeros(b, t, 1, 1, d)) == gates + 2 * b * (t - 1) * h * d
  n, dim, heads = 10, 8, 2                              # the ViT twin's attention
  proj = 2 * b * n * dim * dim * 4                      # q, k, v and output projections
  scores = 2 * 2 * b * heads * n * n * (dim // heads)   # q·k and weights·v per head
  assert harness.forward_flops(Attention(dim, heads), torch.zeros(b, n, dim)) == proj + scores


def test_every_registered_model_is_benchmarked():
  """The default run covers vadjax.models.MODELS and BACKBONES, each with a twin of the
  same input layout (the channels-last ones are the backbones and the feature predictor)."""
  from vadjax.bench import records
  from vadjax.bench.twins import TWINS
  from vadjax.models import BACKBONES, MODELS
  assert set(MODELS.names()) | set(BACKBONES.names()) <= set(records.PAPER_INPUT)
  assert flags.FLAGS['models'].default == sorted(records.PAPER_INPUT)
  for name in MODELS.names():
    assert name in TWINS, name
  assert set(records.BACKBONE_NAMES) == set(BACKBONES.names())
  assert set(bench.FAST) < set(records.PAPER_INPUT)


def test_fast_keeps_flags_given_on_the_command_line():
  if not flags.FLAGS.is_parsed():
    flags.FLAGS(['bench'])
  with flagsaver.flagsaver():
    flags.FLAGS(['bench', '--fast', '--repeats=7'])
    bench._apply_fast()
    assert flags.FLAGS.repeats == 7 and flags.FLAGS.models == list(bench.FAST)
    assert flags.FLAGS.size == 32 and not flags.FLAGS.torch_compile


def test_bench_seed004_and_per_frame_on_the_same_weights(tmp_path):
  """The feature predictor, a backbone (inference only) and per_frame against their twins:
  each twin's inference output equals JAX's on the benchmark input before timing."""
  out = tmp_path / 'bench.json'
  if not flags.FLAGS.is_parsed():
    flags.FLAGS(['bench'])
  with flagsaver.flagsaver(models=['feature_predictor', 'vit_mini', 'resnet_mini', 'per_frame'],
                           batch=2, size=32, repeats=1, warmup=0, torch_compile=False,
                           isolated_memory=False, out=str(out)):
    bench.main([])
  recs = json.loads(out.read_text())['records']
  assert {(r['model'], r['mode']) for r in recs} == {
      ('feature_predictor', 'train'), ('feature_predictor', 'infer'), ('vit_mini', 'infer'),
      ('resnet_mini', 'infer'), ('per_frame', 'train'), ('per_frame', 'infer')}
  for r in recs:
    assert r['median_s'] > 0 and r['flops'] > 0
    if r['framework'] == 'torch':
      assert r['max_rel_diff'] < 1e-4, r
  assert 'rel. diff' in bench.lib.table(recs)


def test_paired_ratios_of_known_durations():
  import time
  slow, fast = (lambda: time.sleep(0.02), lambda r: r), (lambda: time.sleep(0.01), lambda r: r)
  ratios = harness.paired_ratios(slow, fast, 5)
  assert ratios.shape == (5,) and 1.5 < np.median(ratios) < 2.5
  calls = []
  counted = (lambda: calls.append(1) or time.sleep(0.01), lambda r: r)
  ratios = harness.paired_ratios(slow, counted, 3, block=4)
  assert len(calls) == 1 + 3 * 4 and 1.5 < np.median(ratios) < 2.5   # warm-up + blocks


def test_bench_memae_and_memory_kernel(tmp_path):
  out = tmp_path / 'bench.json'
  if not flags.FLAGS.is_parsed():
    flags.FLAGS(['bench'])
  with flagsaver.flagsaver(models=['memae_2d', 'memory'], batch=1, size=16, repeats=1,
                           warmup=0, torch_compile=False, isolated_memory=False, out=str(out)):
    bench.main([])
  recs = json.loads(out.read_text())['records']
  assert {(r['model'], r['framework']) for r in recs} == {
      (m, f) for m in ('memae_2d', 'memory') for f in ('jax', 'torch')}
  mem = [r for r in recs if r['model'] == 'memory' and r['mode'] == 'infer'][0]
  assert mem['flops'] == 4 * 512 * 2000 * 256          # Q×N×C twice (address + read)
  assert all(r['median_s'] > 0 for r in recs)


def test_bench_seed002_models(tmp_path):
  """ALPS (both players) and ADACL (its doubled batch) in JAX and as twins."""
  out = tmp_path / 'bench.json'
  if not flags.FLAGS.is_parsed():
    flags.FLAGS(['bench'])
  with flagsaver.flagsaver(models=['alps', 'adacl_cnn'], batch=2, size=16, repeats=1,
                           warmup=0, torch_compile=False, isolated_memory=False, out=str(out)):
    bench.main([])
  recs = json.loads(out.read_text())['records']
  assert {(r['model'], r['framework'], r['mode']) for r in recs} == {
      (m, f, mode) for m in ('alps', 'adacl_cnn') for f in ('jax', 'torch')
      for mode in ('train', 'infer')}
  assert all(r['median_s'] > 0 for r in recs)
  for m in ('alps', 'adacl_cnn'):
    flops = {r['mode']: r['flops'] for r in recs if r['model'] == m and r['framework'] == 'jax'}
    assert flops['train'] == 3 * flops['infer'] > 0


def test_cost_curves_write_every_curve_and_the_figure(tmp_path, monkeypatch):
  """One point per curve (the full run is a docs script): JAX and torch records with
  timings, XLA's buffer sizes and first-call times; the four-panel figure."""
  from conftest import figure
  from experiments import cost_curves
  monkeypatch.setattr(cost_curves, 'QUICK', {'batch': (2,), 'size': (32,), 'T': (2,)})
  result = cost_curves.run(repeats=1, quick=True)
  for name in ('batch', 'size', 'T'):
    (row,) = result['curves'][name]['rows']
    for fw in ('jax', 'torch'):
      assert row[fw]['median_s'] > 0 and row[fw]['first_call_s'] > 0
    assert row['jax']['xla_buffers_mb'] > 0
  assert result['curves']['T']['rows'][0]['jax']['input'] == [2, 32, 32, 1]
  figure(cost_curves.figure(result, str(tmp_path / 'c.png')))


def _record(framework, mode, ms, **extra):
  return {'model': 'deep_ae', 'framework': framework, 'mode': mode, 'batch': 4,
          'input': [16, 16, 1], 'dtype': 'float32', 'median_s': ms / 1e3, 'p10_s': ms / 1e3,
          'p90_s': ms / 1e3, 'samples_per_s': 4e3 / ms, 'gflops_per_s': 1.0,
          'first_call_s': 1.0, 'peak_rss_mb': 1.0, **extra}


def test_bench_keeps_the_others_when_one_model_fails_and_summarizes(tmp_path, monkeypatch,
                                                                     capsys):
  """A model failing on a new platform leaves the others' records (meta.failed, exit 1);
  --summarize puts eager (paired ratio first) and torch.compile ratios in one row."""
  paired = {'paired_ratio': 3.0, 'paired_p25': 2.9, 'paired_p75': 3.1}
  eager = [_record('jax', 'train', 2.0), _record('torch', 'train', 5.0, **paired),
           _record('jax', 'infer', 1.0), _record('torch', 'infer', 1.5)]

  def fake(name, peak):
    if name == 'bcae1':
      raise RuntimeError('no kernel for this platform')
    return [dict(r) for r in eager]
  monkeypatch.setattr(bench, '_bench_model', fake)
  out = tmp_path / 'new' / 'a.json'                   # its folder is made first
  if not flags.FLAGS.is_parsed():
    flags.FLAGS(['bench'])
  with flagsaver.flagsaver(models=['bcae1', 'deep_ae'], out=str(out), isolated_memory=False):
    with pytest.raises(SystemExit, match='failed: bcae1'):
      bench.main([])
  result = json.loads(out.read_text())
  assert result['meta']['failed'] == ['bcae1'] and len(result['records']) == 4
  compiled = tmp_path / 'b.json'
  compiled.write_text(json.dumps({'meta': result['meta'], 'records': [
      _record('jax', 'train', 4.0), _record('torch.compile', 'train', 2.0)]}))
  capsys.readouterr()
  with flagsaver.flagsaver(summarize=[str(out), str(compiled)]):
    bench.main([])
  row = [x for x in capsys.readouterr().out.splitlines() if x.startswith('| deep_ae')]
  # the later file's JAX train time (4.0 ms) and its own torch.compile ratio (2 / 4 ms);
  # eager torch's train ratio stays the earlier run's paired 3.00; infer: 1.5 / 1.0 ms
  assert row == ['| deep_ae 16×16 b4 | float32 | 4.0 | 3.00 | 0.50 | 1.0 | 1.50 | – |']
  (tmp_path / 'bad.json').write_text('{"records": 1')
  with flagsaver.flagsaver(summarize=[str(tmp_path / 'bad.json')]):
    with pytest.raises(app.UsageError, match='not a benchmark JSON'):
      bench.main([])
  with flagsaver.flagsaver(models=['deep_ae'], out=str(tmp_path / 'bad.json' / 'c.json')):
    with pytest.raises(app.UsageError, match='bad.json/c.json: (File exists|Not a directory)'):
      bench.main([])                                  # before any model runs


def test_bench_layers_maps_each_torch_conv_and_names_its_compiled_convolutions():
  """`experiments.bench_layers` (vadjax/bench/layers.py): every conv module of a 3D twin becomes the vadjax layer
  with its settings (same output on the same weights), and the compiled gradient's
  convolutions are named: cuDNN's calls on GPU (a synthetic line here), on CPU the count
  and the lhs-dilated and window-reversed ones (XLA:CPU compiles the plain transposed conv's
  kernel gradient with a reversed window, the adjoint form's without)."""
  from vadjax.bench import layers as bench_layers, records
  twin = records.torch_twin('memae_3d', (8, 16, 16, 1), jax.device_get(
      MODELS.get('memae_3d')(channels=1).init(
          jax.random.PRNGKey(0), jnp.zeros((1, 8, 16, 16, 1)))))
  layers = bench_layers.layer_shapes(twin, torch.zeros(1, 1, 8, 16, 16))
  assert len(layers) == 8
  for _, m, shape in layers[-2:]:      # a (2,2,2) and the (1,2,2) transposed conv
    x = np.random.default_rng(0).random((shape[0], *shape[2:], shape[1]), np.float32)
    layer = bench_layers.jax_layer(m, 'auto')
    v = {'params': {'kernel': m.weight.detach().numpy().transpose(2, 3, 4, 0, 1),
                    'bias': m.bias.detach().numpy()}}
    with torch.no_grad():
      ref = m(torch.from_numpy(np.moveaxis(x, -1, 1).copy())).numpy()
    np.testing.assert_allclose(jax.jit(layer.apply)(v, x), np.moveaxis(ref, 1, -1), atol=1e-5)
  gpu = ('%c = (f32[4]{0}, u8[0]{0}) custom-call(f32[1]{0} %a, f32[1]{0} %b), '
         'window={size=3x3 stride=2x2}, custom_call_target="__cudnn$convBackwardFilter"\n'
         '%d = (f32[4]{0}, u8[0]{0}) custom-call(f32[1]{0} %a, f32[1]{0} %b), '
         'custom_call_target="__cudnn$convForward"\n') * 2
  assert bench_layers.compiled_convs(gpu) == 'BackwardFilter×2, Forward×2'
  # lines of MemAE-3D's gradient compiled for an H200 (experiments.gpu_compile, form 'xla')
  whole = ('%cudnn-conv.9 = (f32[96,1,3,3,3]{4,3,2,1,0}, u8[0]{0}) custom-call(%a, %b), '
           'window={size=16x256x256}, dim_labels=bf012_oi012->bf012, '
           'custom_call_target="__cudnn$convForward"\n'
           '%cudnn-conv.2 = (f32[4,96,16,128,128]{4,3,2,1,0}, u8[0]{0}) custom-call(%c, %d), '
           'window={size=3x3x3 stride=1x2x2}, dim_labels=bf012_oi012->bf012, '
           'custom_call_target="__cudnn$convForward"\n')
  assert bench_layers.compiled_convs(whole) == 'Forward×2 (windows over 16 px ×1)'
  from vadjax.nn.layers import ConvTranspose
  x = jnp.ones((2, 9, 9, 4))
  for impl, reversed_ in (('xla', 1), ('adjoint', 0)):
    layer = ConvTranspose(3, 3, 2, 1, 1, impl=impl)
    v = layer.init(jax.random.PRNGKey(0), x)
    hlo = jax.jit(jax.grad(lambda v: jnp.sum(layer.apply(v, x) ** 2))).lower(v).compile()
    assert bench_layers.compiled_convs(hlo.as_text()) == (    # forward, kernel gradient
        f'conv×2 (lhs-dilated ×1, reversed ×{reversed_})')


def test_gpu_compile_builds_the_gpu_forms_and_says_when_it_cannot_compile_for_a_gpu():
  """experiments.gpu_compile (vadjax/bench/aot.py): the train step built as for a GPU (native 3D convs, the
  transposed convs' adjoint gradients), compiled here for CPU since CI has no CUDA plugin:
  MemAE-3D's four transposed kernel gradients are no longer window-reversed convs. Without
  the plugin, a one-line usage error naming the script that installs it."""
  from vadjax import parallel
  from vadjax.bench import aot, layers as bench_layers
  from vadjax.registry import UserError
  mesh = parallel.make_mesh(1)
  reversed_ = {}
  for form in ('xla', 'auto'):
    hlo = aot.compiled_train_step('memae_3d', (8, 16, 16, 1), 2, form, mesh)
    reversed_[form] = int(re.search(r'reversed ×(\d+)', bench_layers.compiled_convs(hlo))[1])
  assert reversed_['xla'] - reversed_['auto'] == 4
  assert parallel.backend() == 'cpu'          # compiling_for ended with the build
  with pytest.raises(UserError, match='gpu_compile.sh'):
    aot.h200_mesh()
