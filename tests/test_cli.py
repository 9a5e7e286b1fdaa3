"""The launcher as a user runs it: clear one-line errors, and kill -9 + restart resumes."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from conftest import SUBPROCESS_ENV

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = ('--config=experiments/configs/reconstruction.py:quick,num_epochs=6,'
         'checkpoint_every_epochs=1,log_every_steps=1')


def _run(*args, timeout=300):
  env = dict(SUBPROCESS_ENV)
  return subprocess.run([sys.executable, '-m', 'experiments.main', *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize('args,message', [
    (['--config.nope=1'], "unknown config key 'nope'"),
    (['--config=experiments/configs/reconstruction.py:nope=1'], "unknown config key 'nope'"),
    (['--config=experiments/configs/reconstruction.py:model=bcae9'],
     'unknown model .bcae9.; known: aa_cae, adacl_cnn, alps, bcae1, bcae2, bicgru_ae, biclstm_ae'),
    (['--config=experiments/configs/reconstruction.py:dataset=mnistt'], 'unknown dataset'),
    (['--config=experiments/configs/missing.py'], 'No such file'),
    (['--config.dtype=float8'], 'use one of float32, bfloat16'),
    (['--config.image_size=16'], r'expects images of shape \(batch, height, width, 1\) with '
                                 r'height and width >= 31'),
    (['--config.learning_rat=1'],
     "unknown config key 'learning_rat'"),
    (['--config=experiments/configs/reconstruction.py:quick', 'extra'], 'unexpected arguments'),
    (['--mode=fit'], "value should be one of <train|eval|train_and_eval>"),
    (['--config.seeds=()'], 'config seeds is empty'),
    (['--config.num_epochs=0'], 'num_epochs must be positive'),
    (['--config=experiments/configs/alps.py:quick', '--config.svdd.epochs=2'],
     "config group 'svdd' is set .* method 'alps' does not use it"),
    (['--config=experiments/configs/reconstruction.py:quick,dataset=folder'],
     'dataset folder needs data.folder_root'),
    (['--config=experiments/configs/memae.py:quick,dataset=ucsd_ped2',
      '--config.data.tfds_dir=/nonexistent/tfds'], "dataset 'ucsd_ped2' is not prepared"),
    (['--config=experiments/configs/reconstruction.py:quick', '--mode=eval'],
     'holds no trained experiment'),
])
def test_bad_input_is_one_clear_line_and_writes_nothing(args, message, tmp_path):
  work = tmp_path / 'work'
  r = _run(*args, f'--workdir={work}')
  assert r.returncode == 2
  assert 'Traceback' not in r.stderr
  errors = [line for line in r.stderr.splitlines() if line.startswith('error: ')]
  assert len(errors) == 1, r.stderr[-2000:]
  assert re.search(message, errors[0]), errors[0]
  assert '\\n' not in errors[0] and "\\'" not in errors[0]        # no escapes
  assert not work.exists() or not any(work.rglob('*.json'))      # nothing written


def test_kill_and_restart_resumes(tmp_path):
  env = dict(SUBPROCESS_ENV)
  cmd = [sys.executable, '-m', 'experiments.main', QUICK, f'--workdir={tmp_path}']
  proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  ckpts = tmp_path / '1' / 'seed0' / 'checkpoints'
  deadline = time.time() + 120
  while time.time() < deadline and proc.poll() is None:   # wait for the 2nd checkpoint
    if ckpts.exists() and len([p for p in ckpts.iterdir() if p.name.isdigit()]) >= 2:
      break
    time.sleep(0.05)
  assert proc.poll() is None, 'the run finished before it could be killed'
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (tmp_path / 'report.json').exists()
  r = _run(QUICK, f'--workdir={tmp_path}')
  assert r.returncode == 0, r.stderr[-2000:]
  assert 'resumed from step' in r.stderr
  report = json.loads((tmp_path / 'report.json').read_text())
  assert report['runs'][0]['steps'] == 18            # 6 epochs × 3 steps, none lost
  assert 0 <= report['mean']['auroc']['mean'] <= 1
  # the same config with another score, re-scored into a new workdir
  r = _run(QUICK + ',reconstruction.score_window=4', f'--rescore_from={tmp_path}',
           f'--workdir={tmp_path / "rescored"}')
  assert r.returncode == 0, r.stderr[-2000:]
  rescored = json.loads((tmp_path / 'rescored' / 'report.json').read_text())
  assert rescored['rescored_from'] == str(tmp_path)
  assert rescored['config']['reconstruction']['score_window'] == 4


@pytest.mark.parametrize('env,expected', [
    ({}, 'dot,reduce'),
    ({'XLA_FLAGS': '--xla_cpu_experimental_ynn_fusion_type=dot'}, 'dot'),
    ({'VADJAX_XLA_CPU_FLAGS': '0'}, 'unset')])
def test_import_sets_the_xla_cpu_flags_unless_the_user_did(env, expected):
  """`import vadjax` adds its XLA CPU flags (vadjax/__init__.py); a user's own value of the
  flag and VADJAX_XLA_CPU_FLAGS=0 win. JAX runs with them."""
  base = {k: v for k, v in os.environ.items() if k not in ('XLA_FLAGS', 'VADJAX_XLA_CPU_FLAGS')}
  code = ('import os, re, vadjax, jax.numpy as jnp; assert float(jnp.ones(3).sum()) == 3; '
          'm = re.search("ynn_fusion_type=(\\S+)", os.environ.get("XLA_FLAGS", "")); '
          'print(m.group(1) if m else "unset")')
  out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env={**base, **env},
                       capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip() == expected
