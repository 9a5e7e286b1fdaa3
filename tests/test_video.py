"""Video data (clip sources, moving_digits), frame-level metrics, and an end-to-end clip run."""

import json
import os

import numpy as np
import pytest
from conftest import (assert_exports_score_as_the_run, assert_restore_scores_as_the_run, figure)
from sklearn.metrics import roc_auc_score

from experiments.configs import memae as memae_config
from vadjax.data import DATASETS
from vadjax.data.moving_digits import KINDS, make_videos
from vadjax.data.sources import field
from vadjax.data.video import ClipSource, Video
from vadjax.eval import video as video_eval
from vadjax.registry import UserError
from vadjax.train import train_and_evaluate


def _video(n, name='v', offset=0.0):
  frames = (np.arange(n, dtype=np.float32)[:, None, None, None] / 100 + offset) * np.ones(
      (n, 4, 4, 1), np.float32)
  labels = (np.arange(n) % 5 == 0).astype(np.int32)
  return Video(frames, labels, labels * 2, None, name)


def test_training_clips_cover_every_start_and_stride():
  src = ClipSource([_video(20), _video(12, 'w')], length=4, strides=(1, 2, 4, 8))
  # per video and stride: n − (length − 1)·stride starts; stride 8 fits neither video
  assert len(src) == (17 + 14 + 8) + (9 + 6 + 0)
  frames = [np.round(src[i]['image'][:, 0, 0, 0] * 100).astype(int) for i in range(len(src))]
  assert list(frames[0]) == [0, 1, 2, 3] and list(frames[17]) == [0, 2, 4, 6]
  assert list(frames[31]) == [0, 4, 8, 12]
  assert src[0]['image'].shape == (4, 4, 4, 1)


def test_scoring_records_align_every_frame_with_a_clip():
  v = _video(20)
  src = ClipSource([v], length=8, per_frame=True)
  assert len(src) == 20
  for f in range(20):
    rec = src[f]
    start = min(max(f - 4, 0), 12)             # frame f is the clip's frame 4 (8 // 2) ...
    got = np.round(rec['image'][:, 0, 0, 0] * 100).astype(int)
    assert list(got) == list(range(start, start + 8))   # ... except near the ends
    assert got[rec['offset']] == f and rec['frame'] == f
    assert rec['label'] == v.labels[f] and rec['kind'] == v.kinds[f]
  np.testing.assert_array_equal(field(src, 'label'), v.labels)   # without building clips
  np.testing.assert_array_equal(field(src, 'video'), np.zeros(20))


def test_bad_videos_are_clear_errors():
  with pytest.raises(UserError, match='fewer frames than a clip'):
    ClipSource([_video(5, 'short')], length=8)
  with pytest.raises(UserError, match="video 'x': frames must be"):
    Video(np.zeros((5, 4, 4, 1)), np.zeros(4, np.int32), np.zeros(5, np.int32), None, 'x')
  with pytest.raises(UserError, match='no clip of 8 frames'):
    ClipSource([_video(10)], length=8, strides=(2, 4))


def test_moving_digits_is_deterministic_and_labelled():
  a = make_videos(60, 1, 0, 4, 64)
  make_videos.cache_clear()
  b = make_videos(60, 1, 0, 4, 64)
  np.testing.assert_array_equal(a[2][1].frames, b[2][1].frames)
  train, _, test = a
  assert train[0].labels.sum() == 0 and train[0].masks.sum() == 0
  assert [KINDS[v.kinds.max()] for v in test] == ['object', 'fast', 'wrong_way', 'loiter']
  for v in test:
    assert v.frames.shape == (60, 64, 64, 1) and 0 <= v.frames.min() and v.frames.max() <= 1
    assert v.labels.sum() > 0
    # anomalous frames, and only they, have mask pixels
    np.testing.assert_array_equal(v.masks.reshape(60, -1).max(1) > 0, v.labels > 0)


def test_frame_metrics_three_poolings():
  rng = np.random.default_rng(0)
  videos = np.repeat([0, 1, 2], 50)
  labels = (rng.random(150) < 0.3).astype(int)
  labels[100:] = 0                                   # video 2 has no anomaly
  scores = rng.random(150) + labels * 0.5 + videos * 3.0   # video-dependent offsets
  m = video_eval.frame_metrics(labels, scores, videos)
  scaled = np.concatenate([(scores[videos == v] - scores[videos == v].min())
                           / np.ptp(scores[videos == v]) for v in range(3)])
  assert m['auroc_per_video_norm'] == pytest.approx(roc_auc_score(labels, scaled))
  per_video = [roc_auc_score(labels[videos == v], scores[videos == v]) for v in (0, 1)]
  assert m['auroc_mean_per_video'] == pytest.approx(np.mean(per_video))
  p = video_eval.normality(scores[:50])
  assert p.max() == 1 and p.min() == 0 and p[np.argmax(scores[:50])] == 0


def test_memae_3d_end_to_end_on_clips(tmp_path):
  cfg = memae_config.get_config('video,quick')
  cfg.image_size, cfg.plots, cfg.num_devices = 16, True, 2
  cfg.model_kwargs.filters = (4, 4, 8, 8)
  cfg.data.video.update(length=24, clip_strides=(1, 8), num_train=1, num_test=4)
  splits = DATASETS.get('moving_digits')('scene', 16, cfg.data)
  assert splits.image_shape == (8, 16, 16, 1) and len(splits.test) == 4 * 24
  report = train_and_evaluate(cfg, str(tmp_path))
  run = report['runs'][0]
  for k in ('auroc', 'auroc_per_video_norm', 'auroc_mean_per_video', 'eer_per_video_norm',
            'pixel_auroc'):
    assert 0 <= run['image'][k] <= 1, k
  run_dir = os.path.join(tmp_path, 'scene', 'seed0')
  for fig in ('score_timelines', 'memory_items', 'reconstructions'):
    figure(run['plots'][fig])
  with open(os.path.join(run_dir, 'metrics.json')) as f:
    assert json.load(f)['image']['auroc_per_video_norm'] == run['image']['auroc_per_video_norm']
  assert assert_restore_scores_as_the_run(tmp_path).config.model == 'memae_3d'
  assert_exports_score_as_the_run(tmp_path)         # StableHLO and ONNX, fresh process
