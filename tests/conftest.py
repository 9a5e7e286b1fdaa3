"""Test set-up: 4 fake CPU devices (set before JAX is imported) and small configs."""

import os

# The suite checks results, not speed: XLA's LLVM back end at optimisation level 0 compiles
# the suite's many small programs about a third faster (tests/test_alps.py from an empty
# compilation cache: 59 → 39 s). HLO-level optimisations (fusion, layout) still run.
# Subprocesses that must see one device get SUBPROCESS_ENV (the level, no fake devices).
FAST_COMPILE = '--xla_backend_optimization_level=0'
SUBPROCESS_ENV = {**{k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'},
                  'XLA_FLAGS': FAST_COMPILE}
os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '')
                           + f' --xla_force_host_platform_device_count=4 {FAST_COMPILE}')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# Most of the suite's time is XLA compiling the same small programs in many tests (and in
# both xdist workers): a persistent compilation cache shared by the workers (and by the
# subprocesses they start) compiles each once per machine.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', os.path.join(
    __import__('tempfile').gettempdir(), f'vadjax-test-jax-cache-{os.getuid()}'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')

import pytest  # noqa: E402

from experiments.configs import reconstruction  # noqa: E402

# The slowest tests (15–50 s each from an empty compilation cache, 2026-11-30) start first:
# in collection order several come last (test_video.py, test_zoo.py), and a worker that
# starts one of them at the end runs alone while the other idles.
SLOW_FIRST = (
    'test_multihost.py::', 'test_features.py::test_dino_run', 'test_zoo.py::test_svdd_stage',
    'test_video.py::test_memae_3d_end_to_end', 'test_cli.py::test_kill_and_restart',
    'test_adacl.py::test_adacl_end_to_end', 'test_features.py::test_seed004_study',
    'test_real_data.py::test_seed_configs_train', 'test_alps.py::test_alps_end_to_end',
    'test_convrnn.py::test_conv_rnn_runs_end_to_end', 'test_bench.py::test_cost_curves',
    'test_explain.py::test_explain_cli_writes', 'test_bench.py::test_bench_writes_every',
    'test_train.py::test_resume_after_interruption', 'test_convrnn.py::test_categories_with',
    'test_convrnn.py::test_sweep_harness', 'test_maml.py::test_quick_protocol')


def pytest_collection_modifyitems(items):
  items.sort(key=lambda item: not any(s in item.nodeid for s in SLOW_FIRST))   # stable


@pytest.fixture(scope='session')   # a factory: each call makes a new config
def quick_config():
  """A config that trains digits class 1 with a small BCAE1 in a few seconds."""
  def make(**overrides):
    c = reconstruction.get_config('quick')
    c.unlock()
    c.model_kwargs.filters = (8, 8, 8, 16, 16)
    c.update(dict(num_devices=1, log_every_steps=2, checkpoint_every_epochs=1))
    for k, v in overrides.items():
      c[k] = v
    c.lock()
    return c
  return make


def assert_restore_scores_as_the_run(workdir):
  """`restore(workdir)` from the workdir alone scores its test split exactly as the run's
  own evaluation did (its test_scores.npz)."""
  import numpy as np
  from vadjax.train import load_splits, restore
  run = restore(str(workdir))
  test = load_splits(run.config, run.category).test
  records = [test[i] for i in range(len(test))]
  offsets = np.stack([r['offset'] for r in records]) if 'offset' in records[0] else None
  scores = run.score(np.stack([r['image'] for r in records]), offsets)
  saved = np.load(os.path.join(run.run_dir, 'test_scores.npz'))
  np.testing.assert_array_equal(scores['score'], saved['score'])
  return run


def traced_once(method):
  """`method` with its loss under chex.assert_max_traces(n=1): the train step calls it once
  per trace, so a retrace of the step fails the test where it happens."""
  import chex
  chex.clear_trace_counter()        # chex counts per place of wrapping, across tests
  method.loss_fn = chex.assert_max_traces(method.loss_fn, n=1)
  return method


def compiled(model):
  """model.init and model.apply as one compiled program each (run eagerly, every op and
  every parameter's initialiser compiles alone: the twin parities took 116 s, now 94)."""
  import jax
  return jax.jit(model.init), jax.jit(model.apply, static_argnames=('train', 'mutable'))


def figure(path):
  """A report figure as pixels, checked to be a PNG that draws something (not one colour)."""
  import numpy as np
  from PIL import Image
  with Image.open(path) as im:
    assert im.format == 'PNG', path
    pixels = np.asarray(im.convert('RGB'))
  assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 16, f'{path} is (nearly) blank'
  return pixels


def sweep_in_fresh_process(calls: str, workdir):
  """The JSON of `calls` (Python using `sweep` and `w`, the workdir) run in a fresh
  process: the experiment scripts' absl flags (--workdir, ...) clash in one process."""
  import json
  import subprocess
  import sys
  code = ('import json, sys\nfrom experiments import sweep\nw = sys.argv[1]\n'
          f'print(json.dumps({calls}))\n')
  proc = subprocess.run([sys.executable, '-c', code, str(workdir)], capture_output=True,
                        text=True, timeout=600, cwd=os.path.dirname(os.path.dirname(__file__)))
  assert proc.returncode == 0, proc.stderr[-2000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


_LOAD_EXPORTED = r'''
import importlib.util, sys
import numpy as np
inputs, *folders = sys.argv[1:]
data = np.load(inputs)
for folder in folders:
  spec = importlib.util.spec_from_file_location('exported', folder + '/exported.py')
  exported = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(exported)
  out = exported.load(folder).score(data['x'], data['offsets'] if 'offsets' in data else None)
  np.savez(folder + '/scores.npz', **out)
assert not [m for m in sys.modules if m.split('.')[0] in ('vadjax', 'flax')], 'not standalone'
'''


def assert_exports_score_as_the_run(workdir, formats=('stablehlo', 'onnx')):
  """The run's StableHLO and ONNX exports, loaded in a fresh process with exported.py
  alone (no vadjax, no Flax), score example inputs as the run does in-process (raw scores
  within 1e-5 / 1e-4 of their scale above 1, pixel maps too)."""
  import subprocess
  import sys
  import numpy as np
  from vadjax.serving import export as export_lib
  from vadjax.train import restore
  run = restore(str(workdir))
  x, offsets = export_lib._example(run, 5)
  want = export_lib.reference_scores(run, x, offsets)
  inputs = os.path.join(str(workdir), 'export_inputs.npz')
  np.savez(inputs, x=x, **({} if offsets is None else {'offsets': offsets}))
  folders = {fmt: os.path.join(str(workdir), f'export_{fmt}') for fmt in formats}
  for fmt, folder in folders.items():
    meta = export_lib.export(run, fmt, folder)
    assert meta['thresholds'] == run.thresholds and meta['normalizer'] == run.meta['normalizer']
  proc = subprocess.run([sys.executable, '-c', _LOAD_EXPORTED, inputs, *folders.values()],
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  for fmt, folder in folders.items():
    got = np.load(os.path.join(folder, 'scores.npz'))
    # the export's check: |Δ| within the tolerance, relative to the scale above 1
    tol = export_lib.TOLERANCE[fmt] * max(1.0, float(np.max(np.abs(want['score']))))
    np.testing.assert_allclose(got['score'], want['score'], rtol=0, atol=tol, err_msg=fmt)
    np.testing.assert_allclose(got['normalized'], run.normalizer(want['score']), rtol=0,
                               atol=tol / max(run.normalizer.high - run.normalizer.low, 1e-12))
    if 'pixel' in want:
      np.testing.assert_allclose(got['pixel'], want['pixel'], rtol=0, atol=tol, err_msg=fmt)
  return run
