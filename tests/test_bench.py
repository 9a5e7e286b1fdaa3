"""Benchmark harness: analytic FLOPs by hand, and a tiny end-to-end run of every record."""

import json

import numpy as np
import torch
from absl import flags
from absl.testing import flagsaver

from experiments import bench
from vadjax.bench import harness


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
