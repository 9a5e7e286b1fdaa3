"""Fault injection: kill -9 at random moments, and fuzzed files of every format we read.

  python -m experiments.faults --trials=10 --fuzz_cases=200 --workdir=runs/faults

Kill trials: the quick BCAE1 run of the CLI (6 epochs, a checkpoint every epoch) is killed
with SIGKILL up to three times, each a random 0–1.5 s after its training started (its
first checkpoint appeared), so kills land between and inside checkpoint writes; then it
runs to the end and its final parameters are compared with an uninterrupted run's (rtol
1e-6). Fuzz: for each format a valid file is written,
then truncated at a random length or has random bytes flipped, and read; the reader must
either return data or raise vadjax's one-line `UserError` naming the file — any other
exception, or a hang past 90 s, is a failure. Prints a markdown table and writes
faults.json.
"""

import json
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

from vadjax.data import folder, formats, video_datasets
from vadjax.registry import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = ('--config=experiments/configs/reconstruction.py:quick,num_epochs=6,'
         'checkpoint_every_epochs=1,log_every_steps=1')


# ------------------------------------------------------------------------- formats

def _write_image(ext):
  def write(path):
    from PIL import Image
    a = (np.arange(24 * 20 * 3).reshape(24, 20, 3) % 251).astype(np.uint8)
    Image.fromarray(a).save(path + ext)
    return path + ext
  return write


def _write_idx(path):
  a = (np.arange(3 * 8 * 8) % 256).astype(np.uint8)
  with open(path, 'wb') as f:
    f.write(b'\0\0\x08\x03' + b''.join(int(n).to_bytes(4, 'big') for n in (3, 8, 8)))
    f.write(a.tobytes())
  return path


def _write_cifar(path):
  data = (np.arange(4 * 3072) % 256).astype(np.uint8).reshape(4, 3072)
  with open(path, 'wb') as f:      # protocol 2, as the published Python 2 batches
    pickle.dump({b'data': data, b'labels': [0, 1, 2, 3], b'batch_label': b'x'}, f, protocol=2)
  return path


def _write_m(path):
  with open(path, 'w') as f:
    f.write('TestVideoFile = {};\nTestVideoFile{end+1}.gt_frame = [2:5, 8:9];\n'
            'TestVideoFile{end+1}.gt_frame = [1:3];\n')
  return path


def _write_mat(path):
  import scipy.io
  cells = np.empty((1, 3), dtype=object)
  for i in range(3):
    cells[0, i] = (np.arange(48).reshape(6, 8) % (i + 2) == 0).astype(np.uint8)
  scipy.io.savemat(path + '.mat', {'volLabel': cells})
  return path + '.mat'


def _write_video(path):
  import av
  path += '.avi'
  with av.open(path, 'w') as c:
    s = c.add_stream('png', rate=25)
    s.width, s.height, s.pix_fmt = 16, 12, 'rgb24'
    for i in range(4):
      frame = np.full((12, 16, 3), 40 * i, np.uint8)
      c.mux(s.encode(av.VideoFrame.from_ndarray(frame, format='rgb24')))
    c.mux(s.encode())
  return path


def _write_labels(path):
  os.makedirs(os.path.join(path, 'labels'))
  with open(os.path.join(path, 'labels', 'v.txt'), 'w') as f:
    f.write('0 0 1 1 0\n')
  return os.path.join(path, 'labels', 'v.txt')


def _write_events(path):
  with open(path + '.json', 'w') as f:
    json.dump({'entrance': [10, 250, 900]}, f)
  return path + '.json'


def _write_npy(path):
  masks = np.zeros((5, 6, 8), np.uint8)
  masks[2:4, 1:3, 2:6] = 1
  np.save(path + '.npy', masks)
  return path + '.npy'


def _read_npy(path):
  rows = formats.NpyRows(path)
  return rows.read(0, len(rows))


def _read_labels(path):
  return folder._frame_labels(os.path.dirname(os.path.dirname(path)), 'v', 5)


# name → (write a valid file under a base path → its path, read it)
FORMATS = {
    'IDX': (_write_idx, formats.read_idx),
    'PNG': (_write_image('.png'), formats.read_image),
    'TIFF': (_write_image('.tif'), formats.read_image),
    'BMP': (_write_image('.bmp'), formats.read_image),
    'JPEG': (_write_image('.jpg'), formats.read_image),
    'CIFAR batch': (_write_cifar, formats.read_cifar_batch),
    'UCSD .m': (_write_m, formats.parse_ucsd_m),
    'Avenue .mat': (_write_mat, formats.read_avenue_masks),
    'video (.avi)': (_write_video, formats.read_video),
    'frame labels (.txt)': (_write_labels, _read_labels),
    'Subway events (.json)': (_write_events, video_datasets.read_events),
    'ShanghaiTech masks (.npy)': (_write_npy, _read_npy),
}


def _damage(data: bytes, rng: random.Random) -> bytes:
  """A random truncation, or 1–8 random bytes flipped."""
  if rng.random() < 0.5 or len(data) < 2:
    return data[:rng.randrange(len(data))]
  b = bytearray(data)
  for _ in range(rng.randint(1, 8)):
    b[rng.randrange(len(b))] ^= rng.randint(1, 255)
  return bytes(b)


def _alarm(signum, frame):
  raise TimeoutError('the reader hung')


def fuzz(name: str, cases: int, seed: int, workdir: str) -> dict:
  """Reads `cases` damaged copies of a valid file of format `name`."""
  write, read = FORMATS[name]
  base = tempfile.mkdtemp(dir=workdir)
  path = write(os.path.join(base, 'file'))
  read(path)                                  # the valid file reads
  with open(path, 'rb') as f:
    good = f.read()
  rng, out = random.Random(seed), {'cases': cases, 'errors': 0, 'read': 0, 'failures': []}
  old = signal.signal(signal.SIGALRM, _alarm)
  try:
    for i in range(cases):
      with open(path, 'wb') as f:
        f.write(_damage(good, rng))
      signal.alarm(90)
      try:
        read(path)
        out['read'] += 1
      except UserError as e:
        msg = str(e)
        if os.path.basename(path) not in msg or '\n' in msg:
          out['failures'].append(f'case {i}: message without the file or on many lines: {msg}')
        else:
          out['errors'] += 1
      except Exception as e:  # noqa: BLE001  (any other exception is the failure we count)
        out['failures'].append(f'case {i}: {type(e).__name__}: {e}'[:300])
      finally:
        signal.alarm(0)
  finally:
    signal.signal(signal.SIGALRM, old)
    shutil.rmtree(base, ignore_errors=True)
  return out


# --------------------------------------------------------------------- kill trials

def _cli(workdir, **kw):
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  return subprocess.Popen([sys.executable, '-m', 'experiments.main', QUICK,
                           f'--workdir={workdir}'], cwd=ROOT, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)


def _params(workdir):
  from vadjax.train import restore
  import jax
  return jax.device_get(restore(workdir).state.params)


def _kill_during_training(run: str, rng: random.Random, out: dict) -> None:
  """Starts the run, waits until it is training (its first checkpoint appears), kills it
  with SIGKILL a random 0–1.5 s later; counts kills that cut a checkpoint write short."""
  ckpts = os.path.join(run, '1', 'seed0', 'checkpoints')
  proc = _cli(run)
  deadline = time.time() + 300
  while proc.poll() is None and time.time() < deadline and not (
      os.path.isdir(ckpts) and os.listdir(ckpts)):
    time.sleep(0.01)
  time.sleep(rng.uniform(0, 1.5))
  if proc.poll() is None:
    writing = any('tmp' in name for name in os.listdir(ckpts)) if os.path.isdir(ckpts) else False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    out['kills'] += 1
    out['kills_in_checkpoint_writes'] += int(writing)


def kill_trials(trials: int, seed: int, workdir: str) -> dict:
  """Kills the quick run at random moments of its training (up to three times each); every
  resumed run's parameters must equal an uninterrupted run's."""
  import jax
  straight = os.path.join(workdir, 'straight')
  shutil.rmtree(straight, ignore_errors=True)
  if _cli(straight).wait() != 0:
    raise RuntimeError('the uninterrupted run failed')
  reference = _params(straight)
  rng = random.Random(seed)
  out = {'trials': trials, 'identical': 0, 'kills': 0, 'kills_in_checkpoint_writes': 0,
         'failures': []}
  for t in range(trials):
    run = os.path.join(workdir, f'trial{t}')
    shutil.rmtree(run, ignore_errors=True)
    for _ in range(3):
      _kill_during_training(run, rng, out)
    if _cli(run).wait() != 0:
      out['failures'].append(f'trial {t}: the resumed run failed')
      continue
    same = jax.tree.leaves(jax.tree.map(
        lambda a, b: np.allclose(a, b, rtol=1e-6, atol=1e-7), reference, _params(run)))
    if all(same):
      out['identical'] += 1
    else:
      out['failures'].append(f'trial {t}: parameters differ from the uninterrupted run')
  return out


def table(result: dict) -> str:
  lines = ['| fault | cases | handled | failures |', '|---|---|---|---|']
  k = result.get('kill')
  if k:
    lines.append(f"| kill -9 during training ({k['kills']} kills, "
                 f"{k['kills_in_checkpoint_writes']} inside a checkpoint write) | {k['trials']} runs | "
                 f"{k['identical']} resumed to identical parameters | {len(k['failures'])} |")
  for name, r in result['fuzz'].items():
    lines.append(f"| {name}: truncated / bytes flipped | {r['cases']} | {r['errors']} one-line "
                 f"errors naming the file, {r['read']} read | {len(r['failures'])} |")
  return '\n'.join(lines)


def main(argv):
  del argv
  fl = flags.FLAGS
  os.makedirs(fl.workdir, exist_ok=True)
  result = {'fuzz': {name: fuzz(name, fl.fuzz_cases, fl.seed + i, fl.workdir)
                     for i, name in enumerate(FORMATS)}}
  if fl.trials:
    result['kill'] = kill_trials(fl.trials, fl.seed, fl.workdir)
  with open(os.path.join(fl.workdir, 'faults.json'), 'w') as f:
    json.dump(result, f, indent=1)
  print(table(result))
  failures = [x for r in [*result['fuzz'].values(), result.get('kill', {})]
              for x in r.get('failures', [])]
  for line in failures:
    print(line)
  sys.exit(1 if failures else 0)


if __name__ == '__main__':    # flags here: the tests import this module beside other scripts
  flags.DEFINE_integer('trials', 10, 'kill -9 trials.')
  flags.DEFINE_integer('fuzz_cases', 200, 'Fuzzed files per format.')
  flags.DEFINE_string('workdir', 'runs/faults', 'Where runs and results go.')
  flags.DEFINE_integer('seed', 0, 'Random seed of kill times and fuzz cases.')
  app.run(main)
