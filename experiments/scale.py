"""Cost against footage length (issue 32): peak RSS and frames per second of preparing,
training a fixed number of steps, evaluating and predicting, on `folder_video` datasets of
growing length, each stage in its own process (peak RSS as the OS counts it: the child's
`ru_maxrss` from wait4); and the full `experiments.main` run (prepare + train + evaluate in
one process) at two lengths.

  python -m experiments.scale --workdir=/tmp/scale [--lengths=1000,2000,4000,11000,16000]
      [--full=2000,11000] [--steps=50] [--image_size=128] [--out=docs/scale]

Writes <out>.json (every measurement, date, versions, machine) and <out>.png (peak RSS and
frames/s against frames), and prints the markdown table of docs/scale.md. The footage is
drawn here: a fixed camera over a gradient with squares drifting at 1–2 px/frame, H.264
`.mp4` files of 1,000 frames (normal) and 200-frame anomalous videos in which one square
races at 6 px/frame (its frames labelled, its pixels masked), 160×128 RGB, read at
--image_size. The model is the quick ConvRNN config (`conv_rnn.py:quick`) at that size.
"""

import datetime
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import time

import numpy as np
from absl import app, flags
from PIL import Image

from vadjax.data import formats

_WORKDIR = flags.DEFINE_string('workdir', '/tmp/vadjax_scale', 'Where datasets and runs go.')
_LENGTHS = flags.DEFINE_list('lengths', ['1000', '2000', '4000', '11000', '16000'],
                             'Dataset lengths in frames.')
_FULL = flags.DEFINE_list('full', ['2000', '11000'],
                          'Lengths of the full experiments.main runs (prepare+train+eval).')
_STEPS = flags.DEFINE_integer('steps', 50, 'Training steps of every training stage.')
_SIZE = flags.DEFINE_integer('image_size', 128, 'Frame side the model reads.')
_OUT = flags.DEFINE_string('out', 'docs/scale', 'Output path without extension.')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
W, H, NORMAL_LEN, EVENT_LEN = 160, 128, 1000, 200


def _footage(n: int, seed: int, event: tuple | None = None):
  """(frame, mask) pairs of a drawn camera; `event` (start, stop): a square races then."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:H, 0:W]
  background = np.stack([40 + xx * 0.6, 60 + yy * 0.5, 90 + 0 * xx], -1)
  squares = [(rng.integers(8, H - 24), rng.uniform(0, W), rng.uniform(1, 2),
              rng.integers(60, 255, 3)) for _ in range(4)]
  for t in range(n):
    frame, mask = background.copy(), np.zeros((H, W), np.uint8)
    for k, (y, x0, v, colour) in enumerate(squares):
      racer = event is not None and k == 0
      extra = (6 - v) * max(0, min(t, event[1]) - event[0]) if racer else 0.0
      x = int((x0 + v * t + extra) % (W - 16))
      frame[y:y + 16, x:x + 16] = colour
      if racer and event[0] <= t < event[1]:
        mask[y:y + 16, x:x + 16] = 255
    yield frame.astype(np.uint8), mask


def write_dataset(root: str, frames: int) -> dict:
  """A folder_video dataset of about `frames` frames (folder.py's layout)."""
  shutil.rmtree(root, ignore_errors=True)
  events = max(2, frames // 2000)
  normal = max(3, round((frames - events * EVENT_LEN) / NORMAL_LEN))
  lengths = [(frames - events * EVENT_LEN) // normal] * normal
  for i, n in enumerate(lengths):
    os.makedirs(f'{root}/normal', exist_ok=True)
    formats.write_video(f'{root}/normal/cam{i:03d}.mp4', (f for f, _ in _footage(n, i)))
  for i in range(events):
    start, stop = 80, 140
    pairs = list(_footage(EVENT_LEN, 1000 + i, (start, stop)))
    os.makedirs(f'{root}/anomalous', exist_ok=True)
    formats.write_video(f'{root}/anomalous/event{i:03d}.mp4', (f for f, _ in pairs))
    os.makedirs(f'{root}/labels', exist_ok=True)
    with open(f'{root}/labels/event{i:03d}.txt', 'w') as f:
      f.write(' '.join('1' if start <= t < stop else '0' for t in range(EVENT_LEN)))
    os.makedirs(f'{root}/masks/event{i:03d}', exist_ok=True)
    for t, (_, m) in enumerate(pairs):
      Image.fromarray(m).save(f'{root}/masks/event{i:03d}/{t:05d}.png')
  return {'frames': sum(lengths) + events * EVENT_LEN, 'normal_videos': normal,
          'anomalous_videos': events}


def _config_flags(root: str, prepared: str, steps: int) -> list[str]:
  return [f'--config={ROOT}/experiments/configs/conv_rnn.py:quick,dataset=folder_video,'
          f'image_size={_SIZE.value}', f'--config.data.folder_root={root}',
          f'--config.data.tfds_dir={prepared}', f'--config.num_train_steps={steps}',
          '--config.data.val_fraction=0.25', '--config.data.test_fraction=0.25',
          '--config.num_devices=1', '--config.plots=false']


def _measure(args: list[str]) -> dict:
  """A child run with its own peak RSS (Popen + wait4, not communicate: the rusage)."""
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  t0 = time.perf_counter()
  with open(os.path.join(_WORKDIR.value, 'child.log'), 'w') as log:
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(proc.pid, 0)
  seconds = time.perf_counter() - t0
  if os.waitstatus_to_exitcode(status):
    with open(os.path.join(_WORKDIR.value, 'child.log')) as f:
      raise RuntimeError(f'{" ".join(args)} failed:\n{f.read()[-3000:]}')
  return {'seconds': round(seconds, 2), 'peak_rss_mib': round(usage.ru_maxrss / 1024, 1)}


_PREPARE = '''
import sys, ml_collections
from vadjax.data import DATASETS
root, prepared, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
cfg = ml_collections.ConfigDict(dict(folder_root=root, tfds_dir=prepared, channels=0,
    val_fraction=0.25, test_fraction=0.25, video=dict(clip_length=8, clip_strides=(1, 4))))
DATASETS.get('folder_video')('default', size, cfg)
'''


def _timings(workdir: str) -> dict:
  with open(os.path.join(workdir, 'report.json')) as f:
    run = json.load(f)['runs'][0]
  return run['timings'], run['image']


def measure_length(n: int) -> dict:
  base = os.path.join(_WORKDIR.value, f'{n}')
  root, prepared = f'{base}/videos', f'{base}/prepared'
  shutil.rmtree(base, ignore_errors=True)
  data = write_dataset(root, n)
  frames = data['frames']
  row = {'frames': frames, **data}
  p = _measure(['-c', _PREPARE, root, prepared, str(_SIZE.value)])
  row['prepare'] = {**p, 'frames_per_s': round(frames / p['seconds'], 1)}
  flags_ = _config_flags(root, prepared, _STEPS.value)
  t = _measure(['-m', 'experiments.main', *flags_, f'--workdir={base}/run', '--mode=train'])
  e = _measure(['-m', 'experiments.main', *flags_, f'--workdir={base}/run', '--mode=eval'])
  timings, metrics = _timings(f'{base}/run')
  row['train'] = {**t, 'steps': _STEPS.value, 'steps_per_s': round(timings['steps_per_s'], 2),
                  'clips_per_s': round(timings['clips_per_s'], 1),
                  'input_wait_share': round(timings['input_wait_share'], 4)}
  test_frames = round(timings['score_samples_per_s'] * timings['score_s'])
  row['evaluate'] = {**e, 'test_frames': test_frames,
                     'frames_per_s': round(timings['score_samples_per_s'], 1),
                     'auroc_per_video_norm': metrics.get('auroc_per_video_norm'),
                     'pixel_auroc': metrics.get('pixel_auroc'),
                     'pixel_aupro': metrics.get('pixel_aupro')}
  video = f'{base}/predict.mp4'
  formats.write_video(video, (f for f, _ in _footage(n, 99)))
  q = _measure(['-m', 'experiments.predict', f'--workdir={base}/run', f'--input={video}',
                f'--output={base}/scores.jsonl', '--progress=false'])
  row['predict'] = {**q, 'frames': n, 'frames_per_s': round(n / q['seconds'], 1)}
  if str(n) in _FULL.value:
    f = _measure(['-m', 'experiments.main', *_config_flags(root, f'{base}/prepared_full',
                                                          _STEPS.value),
                  f'--workdir={base}/full'])
    row['full_main'] = f
  shutil.rmtree(f'{base}/prepared_full', ignore_errors=True)
  print(json.dumps(row), flush=True)
  return row


def _versions() -> dict:
  out = {'python': platform.python_version()}
  for pkg in ('jax', 'jaxlib', 'grain', 'array_record', 'av', 'numpy'):
    try:
      out[pkg] = importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
      pass
  return out


def table(rows: list[dict]) -> str:
  lines = ['| frames | prepare: MiB / frames/s | train 50 steps: MiB / steps/s / input wait | '
           'evaluate: MiB / frames/s | predict: MiB / frames/s | full main run: MiB / s |',
           '|---|---|---|---|---|---|']
  for r in rows:
    full = r.get('full_main')
    lines.append(
        f"| {r['frames']:,} | {r['prepare']['peak_rss_mib']:.0f} / "
        f"{r['prepare']['frames_per_s']:.0f} | {r['train']['peak_rss_mib']:.0f} / "
        f"{r['train']['steps_per_s']:.1f} / {100 * r['train']['input_wait_share']:.1f}% | "
        f"{r['evaluate']['peak_rss_mib']:.0f} / {r['evaluate']['frames_per_s']:.0f} | "
        f"{r['predict']['peak_rss_mib']:.0f} / {r['predict']['frames_per_s']:.0f} | "
        + (f"{full['peak_rss_mib']:.0f} / {full['seconds']:.0f} |" if full else '– |'))
  return '\n'.join(lines).replace('50 steps', f'{rows[0]["train"]["steps"]} steps')


def figure(rows: list[dict], path: str) -> str:
  from vadjax.eval import plots  # noqa: F401  (the Agg backend)
  import matplotlib.pyplot as plt
  frames = [r['frames'] for r in rows]
  fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
  for stage in ('prepare', 'train', 'evaluate', 'predict'):
    a.plot(frames, [r[stage]['peak_rss_mib'] for r in rows], 'o-', label=stage)
  full = [r for r in rows if 'full_main' in r]
  if full:
    a.plot([r['frames'] for r in full], [r['full_main']['peak_rss_mib'] for r in full], 's--',
           label='full main run')
  a.set(xscale='log', xlabel='frames of footage', ylabel='peak RSS (MiB)',
        title='memory against footage length', ylim=(0, None))
  for stage, key in (('prepare', 'frames_per_s'), ('evaluate', 'frames_per_s'),
                     ('predict', 'frames_per_s')):
    b.plot(frames, [r[stage][key] for r in rows], 'o-', label=stage)
  b.set(xscale='log', xlabel='frames of footage', ylabel='frames per second',
        title='throughput against footage length', ylim=(0, None))
  a.legend(fontsize=8)
  b.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)
  return path


def main(argv):
  del argv
  os.makedirs(_WORKDIR.value, exist_ok=True)
  started = datetime.datetime.now().isoformat(timespec='minutes')
  rows = [measure_length(int(n)) for n in _LENGTHS.value]
  result = {'date': started, 'finished': datetime.datetime.now().isoformat(timespec='minutes'),
            'machine': {'cpus': os.cpu_count(), 'cpu': platform.processor() or platform.machine()},
            'versions': _versions(), 'steps': _STEPS.value, 'image_size': _SIZE.value,
            'config': 'conv_rnn.py:quick,dataset=folder_video', 'rows': rows}
  out = os.path.abspath(_OUT.value)
  os.makedirs(os.path.dirname(out), exist_ok=True)
  with open(out + '.json', 'w') as f:
    json.dump(result, f, indent=1)
  figure(rows, out + '.png')
  print(table(rows))


if __name__ == '__main__':
  app.run(main)
