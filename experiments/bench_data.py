"""Data-loading speed on a real-format video dataset (issues 8 and 32; BUILD_NOTES.md).

Writes a UCSD-Ped2-sized dataset in the official archive layout (random 240×360 `.tif`
frames, `_gt` masks, the `.m` file) under --workdir, prepares it into the frame store
(vadjax/data/store.py) at --image_size, and times what training and scoring read: the input
pipeline alone (clips/s), then the quick ConvRNN config at that size training
--train_steps steps on it with each of --train_workers Grain workers (0: in-process):
steps/s, clips/s and the share of the stepping time the loop waits for its next batch.

  python -m experiments.bench_data --workdir=/tmp/bench_data [--train_videos=16 --test_videos=12
      --frames=120 --image_size=128 --workers=2 --train_steps=100 --train_workers=0,2]
"""

import json
import os
import shutil
import time

import ml_collections
import numpy as np
from absl import app, flags
from PIL import Image

from vadjax.data import DATASETS, eval_batches
from vadjax.data.pipeline import train_dataset, train_iterator

_WORKDIR = flags.DEFINE_string('workdir', '/tmp/bench_data', 'Where files and results go.')
_TRAIN = flags.DEFINE_integer('train_videos', 16, 'Training videos (Ped2: 16).')
_TEST = flags.DEFINE_integer('test_videos', 12, 'Test videos (Ped2: 12).')
_FRAMES = flags.DEFINE_integer('frames', 120, 'Frames per video (Ped2: 120–180).')
_SIZE = flags.DEFINE_integer('image_size', 128, 'Prepared frame size.')
_WORKERS = flags.DEFINE_integer('workers', 2, 'Grain workers for the second training timing.')
_STEPS = flags.DEFINE_integer('train_steps', 100, 'Training steps of the ConvRNN timing '
                              '(0: skip it).')
_TRAIN_WORKERS = flags.DEFINE_list('train_workers', ['0', '2'], 'Grain workers of each '
                                   'ConvRNN timing (0: in-process).')


def write_ucsd(root: str, n_train: int, n_test: int, frames: int) -> None:
  rng = np.random.default_rng(0)
  base = os.path.join(root, 'UCSDped2')
  for split, n in (('Train', n_train), ('Test', n_test)):
    for v in range(n):
      folder = os.path.join(base, split, f'{split}{v + 1:03d}')
      os.makedirs(folder)
      if split == 'Test':
        os.makedirs(folder + '_gt')
      for t in range(frames):
        frame = rng.integers(0, 256, (240, 360), dtype=np.uint8)
        Image.fromarray(frame).save(os.path.join(folder, f'{t + 1:03d}.tif'))
        if split == 'Test':
          Image.fromarray(np.zeros((240, 360), np.uint8)).save(
              os.path.join(folder + '_gt', f'{t + 1:03d}.bmp'))
  with open(os.path.join(base, 'Test', 'UCSDped2.m'), 'w') as f:
    for _ in range(n_test):
      f.write(f'TestVideoFile{{end+1}}.gt_frame = [{frames // 3}:{frames // 2}];\n')


def clips_per_second(source, workers: int, batches: int = 20) -> float:
  epochs = -(-(batches + 1) // (len(source) // 32))     # enough for every timed batch
  it = train_iterator(train_dataset(source, 32, 0, epochs), workers)
  next(it)                                     # workers started, first batch ready
  t0 = time.perf_counter()
  for _ in range(batches):
    next(it)
  rate = batches * 32 / (time.perf_counter() - t0)
  del it
  return rate


def train_timings(raw: str, prepared: str, workers: int) -> dict:
  """The quick ConvRNN config at --image_size on the prepared dataset, --train_steps steps:
  the loop's timings (steps/s, clips/s, input wait share)."""
  from experiments.configs import conv_rnn
  from vadjax.train import restore, train_and_evaluate
  workdir = os.path.join(_WORKDIR.value, f'train_{workers}_workers')
  c = conv_rnn.get_config(f'quick,dataset=ucsd_ped2,image_size={_SIZE.value},'
                          f'num_train_steps={_STEPS.value},data.workers={workers},'
                          'num_devices=1,log_every_steps=1000')
  c.data.update(manual_dir=raw, tfds_dir=prepared)
  train_and_evaluate(c, workdir, mode='train')
  t = restore(workdir).meta['timings']
  return {k: round(t[k], 4) for k in ('steps_per_s', 'clips_per_s', 'input_wait_share')}


def main(_):
  raw, prepared = (os.path.join(_WORKDIR.value, d) for d in ('raw', 'tfds'))
  shutil.rmtree(_WORKDIR.value, ignore_errors=True)
  write_ucsd(raw, _TRAIN.value, _TEST.value, _FRAMES.value)
  cfg = ml_collections.ConfigDict(dict(
      manual_dir=raw, tfds_dir=prepared, channels=0, crop='', val_fraction=0.1,
      label_window=15, source='files', video=dict(clip_length=8, clip_strides=(1, 2, 4, 8, 16))))
  t0 = time.perf_counter()
  splits = DATASETS.get('ucsd_ped2')('default', _SIZE.value, cfg)
  prep_s = time.perf_counter() - t0
  n_frames = (_TRAIN.value + _TEST.value) * _FRAMES.value
  disk = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(prepared) for f in fs)
  t0, n = time.perf_counter(), 0
  for _, k in eval_batches(splits.test, 64, ('image', 'mask')):
    n += k
  score_rate = n / (time.perf_counter() - t0)
  result = {
      'frames': n_frames, 'prepare_s': round(prep_s, 1),
      'prepare_frames_per_s': round(n_frames / prep_s), 'prepared_mib': round(disk / 2**20, 1),
      'score_records_per_s': round(score_rate),
      'train_clips_per_s': round(clips_per_second(splits.train, 0)),
      f'train_clips_per_s_{_WORKERS.value}_workers': round(
          clips_per_second(splits.train, _WORKERS.value)),
      'date': time.strftime('%Y-%m-%d %H:%M'), 'cpus': os.cpu_count()}
  for workers in map(int, _TRAIN_WORKERS.value if _STEPS.value else []):
    result['train_quick_conv_rnn' + (f'_{workers}_workers' if workers else '')] = (
        train_timings(raw, prepared, workers))
  print(json.dumps(result, indent=1))
  with open(os.path.join(_WORKDIR.value, 'bench_data.json'), 'w') as f:
    json.dump(result, f, indent=1)


if __name__ == '__main__':
  app.run(main)
