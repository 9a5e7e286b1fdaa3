"""Multi-host data parallelism: 2 processes on loopback (CPU, gloo collectives, one device
each) train to the same parameters as 1 process with 2 fake devices."""

import json
import os
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict

from conftest import SUBPROCESS_ENV
from test_train import _final_params, _history
from vadjax.models import MODELS
from vadjax.train import train_and_evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_two_processes_equal_two_devices(quick_config, tmp_path):
  single = tmp_path / 'single'
  train_and_evaluate(quick_config(num_devices=2, num_epochs=1), str(single))

  multi, port = tmp_path / 'multi', _free_port()
  env = dict(SUBPROCESS_ENV)
  env['PYTHONPATH'] = ROOT
  procs = [subprocess.Popen([sys.executable, os.path.join(ROOT, 'tests', 'multiprocess_worker.py'),
                             str(multi), str(port), str(i)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  outs = [p.communicate(timeout=300)[0] for p in procs]
  assert all(p.returncode == 0 for p in procs), outs[0][-3000:] + outs[1][-3000:]

  report = json.loads((multi / 'report.json').read_text())
  assert report['device']['processes'] == 2 and report['device']['count'] == 2
  cfg = quick_config(num_devices=1)
  a, b = _final_params(single, cfg), _final_params(multi, cfg)
  # Biases right before a BatchNorm have a true gradient of 0, so Adam turns their float
  # noise into lr-sized random steps; BN cancels them. Compare what the model computes
  # (train-mode outputs, where BN cancels them exactly), the kernels and the loss curves.
  kernels = lambda p: [v for k, v in flatten_dict(p).items() if k[-1] == 'kernel']  # noqa
  for x, y in zip(kernels(a), kernels(b)):
    np.testing.assert_allclose(x, y, rtol=1e-3, atol=1e-5)
  model = MODELS.get('bcae1')(channels=1, filters=(8, 8, 8, 16, 16))
  images = jnp.asarray(np.random.default_rng(0).random((16, 32, 32, 1), np.float32))
  out = [model.apply({'params': p, 'batch_stats': model.init(jax.random.PRNGKey(0), images)[
      'batch_stats']}, images, train=True, mutable=['batch_stats'])[0]['recon'] for p in (a, b)]
  np.testing.assert_allclose(out[0], out[1], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose([h['train_loss'] for h in _history(single)],
                             [h['train_loss'] for h in _history(multi)], rtol=2e-4)
