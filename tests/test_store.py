"""Video datasets prepared once into the frame store (vadjax/data/store.py) and streamed:
resumable preparation (kill -9, then the same command), changed sources prepared again,
one preparation among concurrent and multi-host processes, and the ShanghaiTech builder
on a fixture in its published layout, end to end."""

import json
import os
import signal
import subprocess
import sys
import time

import ml_collections
import numpy as np
import pytest
from PIL import Image

from conftest import SUBPROCESS_ENV
from test_real_data import _write_video as _avi   # a lossless (PNG codec) AVI
from vadjax.data import DATASETS, formats, real, store
from vadjax.data.sources import field
from vadjax.registry import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _png(path, array):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(array).save(path)


def _frame(v, t, shape=(8, 8, 3)):
  """A frame that names its video and index in its pixels."""
  return np.full(shape, (7 * v + 3 * t) % 256, np.uint8)


def _user_videos(root, frames=40, videos=4):
  """A folder_video dataset: normal frame folders and two anomalous videos with labels."""
  for v in range(videos):
    for t in range(frames):
      _png(root / 'normal' / f'cam{v}' / f'{t:05d}.png', _frame(v, t))
  (root / 'labels').mkdir(parents=True, exist_ok=True)
  for e in ('event', 'other'):
    _avi(root / 'anomalous' / f'{e}.avi', np.stack([_frame(9, t) for t in range(frames)]))
    (root / 'labels' / f'{e}.txt').write_text(' '.join(['0'] * (frames - 5) + ['1'] * 5))
  return root


def _cfg(root, prepared, **kw):
  return ml_collections.ConfigDict({**dict(
      folder_root=str(root), manual_dir=str(root), tfds_dir=str(prepared), channels=0,
      crop='', val_fraction=0.25, test_fraction=0.25, label_window=15, source='files',
      video=dict(clip_length=2, clip_strides=(1,))), **kw})


def _all_frames(st):
  """{video name: (frames uint8, labels)} of every split of a store."""
  out = {}
  for split in st.manifest['splits']:
    for v in st.videos(split):
      out[v.name] = (np.round(v.frames[:] * 255).astype(np.uint8), v.labels)
  return out


def _stores(prepared):
  return sorted(p for p in prepared.rglob('manifest.json'))


# The child prepares the folder's store with 8-frame shards from a source that decodes
# slowly (a sleep per frame), so that it can be killed between committed shards.
_SLOW_PREPARE = r'''
import sys, time
from vadjax.data import builders, folder, real, store
root, prepared, scope = sys.argv[1:4]

def slow(listing):
  for videos in listing.videos.values():
    for spec in videos:
      inner = spec.frames
      spec.frames = lambda start, inner=inner: (time.sleep(0.02) or f for f in inner(start))
  return listing

store.open_store('folder_video', builders.frame_config(8, 3), prepared, root,
                 lambda r: slow(folder._listing(r)), '', scope=scope,
                 shard_bytes=8 * 8 * 8 * 4, show_progress=False)
'''


def test_preparation_resumes_after_kill_9(tmp_path):
  root = _user_videos(tmp_path / 'videos')
  prepared = tmp_path / 'prepared'
  scope = 'killed'
  env = {**SUBPROCESS_ENV, 'PYTHONPATH': ROOT}
  child = subprocess.Popen([sys.executable, '-c', _SLOW_PREPARE, str(root), str(prepared),
                            scope], env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
  deadline = time.monotonic() + 120
  committed = 0
  while time.monotonic() < deadline and child.poll() is None:
    progress = list(prepared.rglob('progress.json'))
    if progress:
      try:
        state = json.loads(progress[0].read_text())
        committed = sum(s['frames'] for s in state['splits'].values())
      except ValueError:       # replaced while read
        committed = 0
      if committed >= 40:      # past the first video, inside the second
        break
    time.sleep(0.01)
  assert child.poll() is None, f'the preparation ended before it could be killed: {child.stderr.read()[-2000:]}'
  os.kill(child.pid, signal.SIGKILL)
  child.wait()
  folder = progress[0].parent
  assert not (folder / 'manifest.json').exists()
  state = json.loads((folder / 'progress.json').read_text())
  kept = {s['file']: (folder / s['file']).stat().st_ino for s in state['splits']['normal']['shards']}
  assert 40 <= sum(s['frames'] for s in state['splits'].values()) < 240

  # the same preparation again: it continues, keeps the committed shards, and completes
  st = store.open_store('folder_video', real.builders.frame_config(8, 3), str(prepared),
                        str(root), real_folder_listing(), '', scope=scope,
                        shard_bytes=8 * 8 * 8 * 4, show_progress=False)
  for name, ino in kept.items():
    assert (folder / name).stat().st_ino == ino, f'{name} was written again'
  assert not list(folder.glob('*.tmp'))
  got = _all_frames(st)
  assert sorted(got) == ['cam0', 'cam1', 'cam2', 'cam3', 'event', 'other']
  for v in range(4):                      # every frame once, in order, nothing missing
    frames, labels = got[f'cam{v}']
    np.testing.assert_array_equal(frames, np.stack([_frame(v, t) for t in range(40)]))
    assert not labels.any()
  for e in ('event', 'other'):
    frames, labels = got[e]
    np.testing.assert_array_equal(frames, np.stack([_frame(9, t) for t in range(40)]))
    assert labels.tolist() == [0] * 35 + [1] * 5
  total = sum(s['frames'] for s in st.manifest['splits'].values())
  assert total == 240 and sum(len(v.frames) for s in st.manifest['splits']
                              for v in st.videos(s)) == 240


def real_folder_listing():
  from vadjax.data import folder
  return folder._listing


def test_a_changed_folder_is_prepared_again(tmp_path, caplog):
  root = _user_videos(tmp_path / 'videos', frames=6, videos=4)
  prepared = tmp_path / 'prepared'
  cfg = _cfg(root, prepared)
  first = DATASETS.get('folder_video')('default', 8, cfg)
  [manifest] = _stores(prepared)
  stamp = manifest.stat().st_mtime_ns
  again = DATASETS.get('folder_video')('default', 8, cfg)        # unchanged: reused
  assert manifest.stat().st_mtime_ns == stamp and len(_stores(prepared)) == 1
  assert len(again.test) == len(first.test)
  # new labels of the same length: the content is in the digest
  (root / 'labels' / 'event.txt').write_text('1 1 0 0 0 0')
  with caplog.at_level('WARNING'):
    changed = DATASETS.get('folder_video')('default', 8, cfg)
  assert len(_stores(prepared)) == 2 and 'source files changed' in caplog.text
  labels = {v.name: v.labels for v in changed.test.videos + changed.val.videos}
  assert labels['event'].tolist() == [1, 1, 0, 0, 0, 0] and labels['other'].sum() == 5
  # a frame replaced by a different one: prepared again, the new frame read back
  _png(root / 'normal' / 'cam0' / '00002.png', np.full((8, 8, 3), 200, np.uint8))
  DATASETS.get('folder_video')('default', 8, cfg)
  assert len(_stores(prepared)) == 3


def test_errors_found_while_decoding_name_the_file(tmp_path):
  root = _user_videos(tmp_path / 'videos', frames=6, videos=2)
  (root / 'labels' / 'event.txt').write_text('0 0 1')             # 6 frames, 3 labels
  with pytest.raises(UserError, match=r'event.txt: expected 6 labels'):
    DATASETS.get('folder_video')('default', 8, _cfg(root, tmp_path / 'p'))
  (root / 'labels' / 'event.txt').write_text('0 0 1 1 0 0')
  (root / 'anomalous' / 'event.avi').write_bytes(b'RIFF' + bytes(64))
  with pytest.raises(UserError, match=r'cannot decode video .*event.avi'):
    DATASETS.get('folder_video')('default', 8, _cfg(root, tmp_path / 'p'))
  # a damaged manifest is one line naming the folder
  _avi(root / 'anomalous' / 'event.avi', np.stack([_frame(9, t) for t in range(6)]))
  DATASETS.get('folder_video')('default', 8, _cfg(root, tmp_path / 'p'))
  [manifest] = [m for m in _stores(tmp_path / 'p')]
  manifest.write_text('{"format": 1, "splits": ')
  with pytest.raises(UserError, match=r'manifest.json is unreadable .* delete'):
    DATASETS.get('folder_video')('default', 8, _cfg(root, tmp_path / 'p'))


_WAIT = r'''
import sys
from vadjax.data import builders, folder, store
root, prepared, index = sys.argv[1:4]
st = store.open_store('folder_video', builders.frame_config(8, 3), prepared, root,
                      folder._listing, '', scope='shared', process_index=int(index),
                      wait_s=120)
print(sum(s['frames'] for s in st.manifest['splits'].values()), st.path)
'''


def test_processes_prepare_once_and_the_others_wait(tmp_path):
  """Process 1 of a multi-host run waits for process 0's preparation; two processes 0
  started together (two runs on one machine) take turns through the lock: one prepares,
  the other finds it complete. All read the same store."""
  root = _user_videos(tmp_path / 'videos', frames=30, videos=4)
  prepared = tmp_path / 'prepared'
  env = {**SUBPROCESS_ENV, 'PYTHONPATH': ROOT}
  start = lambda index: subprocess.Popen(   # noqa: E731
      [sys.executable, '-c', _WAIT, str(root), str(prepared), str(index)], env=env, cwd=ROOT,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  follower = start(1)
  time.sleep(3)
  assert follower.poll() is None and not _stores(prepared)      # waiting, preparing nothing
  leaders = [start(0), start(0)]
  outs = [p.communicate(timeout=300) for p in [follower, *leaders]]
  for p, (out, err) in zip([follower, *leaders], outs):
    assert p.returncode == 0, err[-2000:]
  assert len({out for out, _ in outs}) == 1 and outs[0][0].split()[0] == '180'
  assert len(_stores(prepared)) == 1
  assert sum('preparing folder_video' in err for _, err in outs) == 1


# --------------------------------------------------------------------------- ShanghaiTech

H, W = 12, 20


def _scene_frame(scene, video, t):
  rng = np.random.default_rng(1000 * scene + 10 * video + t)
  return rng.integers(0, 256, (H, W, 3), dtype=np.uint8)


def write_shanghaitech(base, train=((1, 1, 6), (1, 2, 5), (2, 1, 6)),
                       test=((1, 14, 5), (2, 15, 6))):
  """The published layout: training/videos/<scene>_<nnn>.avi, testing/frames/<scene>_<nnnn>/
  <k>.jpg, testing/test_frame_mask/<video>.npy (0/1 per frame) and testing/test_pixel_mask/
  <video>.npy (frames × H × W, 0/1). Each test video's anomaly: frames 2 and 3, a 3×4 box."""
  for scene, n, t in train:
    _avi(base / 'training' / 'videos' / f'{scene:02d}_{n:03d}.avi',
         np.stack([_scene_frame(scene, n, k) for k in range(t)]))
  for scene, n, t in test:
    name = f'{scene:02d}_{n:04d}'
    for k in range(t):
      _png(base / 'testing' / 'frames' / name / f'{k:03d}.jpg', _scene_frame(scene, n, k))
    labels = np.zeros(t, np.int64)
    labels[2:4] = 1
    masks = np.zeros((t, H, W), np.uint8)
    masks[2:4, 4:7, 8:12] = 1
    for folder, array in (('test_frame_mask', labels), ('test_pixel_mask', masks)):
      os.makedirs(base / 'testing' / folder, exist_ok=True)
      np.save(base / 'testing' / folder / f'{name}.npy', array)
  return base


def _st_cfg(raw, prepared, **kw):
  return _cfg('', prepared, **{**dict(manual_dir=str(raw), channels=3), **kw})


def test_shanghaitech_layout_exact(tmp_path):
  raw = write_shanghaitech(tmp_path / 'raw' / 'shanghaitech')
  cfg = _st_cfg(raw.parent, tmp_path / 'prepared')
  splits = DATASETS.get('shanghaitech')('all_scenes', 16, cfg)
  assert splits.image_shape == (2, 16, 16, 3) and splits.has_masks and splits.digest
  assert [v.name for v in splits.test.videos] == ['01_0014', '02_0015']
  assert len(splits.test) == 11 and field(splits.test, 'label').tolist() == (
      [0, 0, 1, 1, 0] + [0, 0, 1, 1, 0, 0])
  # 3 training videos: one held out as normal validation video
  assert len(splits.train.videos) == 2 and len(splits.val.videos) == 1
  jpg = tmp_path / 'raw' / 'shanghaitech' / 'testing' / 'frames' / '02_0015' / '003.jpg'
  want = np.asarray(Image.fromarray(formats.read_image(str(jpg))).resize((16, 16),
                                                                         Image.BILINEAR))
  r = splits.test[8]                                   # video 02_0015, frame 3
  assert int(r['video']) == 1 and int(r['frame']) == 3 and int(r['label']) == 1
  np.testing.assert_array_equal(np.round(r['image'][int(r['offset'])] * 255), want)
  box = np.zeros((H, W), np.uint8)
  box[4:7, 8:12] = 255
  np.testing.assert_array_equal(
      r['mask'], np.asarray(Image.fromarray(box).resize((16, 16), Image.NEAREST)) > 127)
  frames = {v.name: v for v in splits.train.videos + splits.val.videos}
  np.testing.assert_array_equal(   # an .avi frame, resized as every frame is
      np.round(frames['01_002'].frames[4] * 255),
      np.asarray(Image.fromarray(_scene_frame(1, 2, 4)).resize((16, 16), Image.BILINEAR)))
  # each scene alone, from the same preparation
  scene = DATASETS.get('shanghaitech')('02', 16, cfg)
  assert [v.name for v in scene.test.videos] == ['02_0015'] and len(_stores(
      tmp_path / 'prepared')) == 1
  assert [v.name for v in scene.train.videos + scene.val.videos] == ['02_001', '02_001_val']
  with pytest.raises(UserError, match='scene 03 has no training videos'):
    DATASETS.get('shanghaitech')('03', 16, cfg)
  with pytest.raises(UserError, match="categories are all_scenes, 01, 02"):
    DATASETS.get('shanghaitech')('14', 16, cfg)


@pytest.mark.parametrize('breakage,message', [
    (lambda t: os.remove(t / 'test_pixel_mask' / '01_0014.npy'),
     r'01_0014 has no ground truth .*test_pixel_mask/01_0014.npy'),
    (lambda t: np.save(t / 'test_frame_mask' / '02_0015.npy', np.zeros(4)),
     r'02_0015: 6 frames but 4 frame labels'),
    (lambda t: np.save(t / 'test_pixel_mask' / '02_0015.npy', np.array([{}] * 6, object)),
     r'cannot read .*02_0015.npy.*|expected a numeric'),
    (lambda t: (t / 'test_pixel_mask' / '01_0014.npy').write_bytes(
        (t / 'test_pixel_mask' / '01_0014.npy').read_bytes()[:300]), r'01_0014.npy.* truncated'),
    (lambda t: __import__('shutil').rmtree(t / 'test_frame_mask'), r'test_frame_mask is missing'),
    (lambda t: (t / 'frames' / '01_0014' / '002.jpg').write_bytes(b'\xff\xd8 not a jpeg'),
     r'cannot read image .*01_0014/002.jpg'),
])
def test_shanghaitech_damaged_parts_are_one_line_errors(tmp_path, breakage, message):
  raw = write_shanghaitech(tmp_path / 'raw')
  breakage(raw / 'testing')
  with pytest.raises(UserError, match=message):
    DATASETS.get('shanghaitech')('all_scenes', 16, _st_cfg(raw, tmp_path / 'prepared'))


def test_shanghaitech_memae_3d_end_to_end(tmp_path):
  """Seed 003's MemAE-3D config on ShanghaiTech (quick): prepared, trained, evaluated with
  frame- and pixel-level metrics; then one scene alone from the same preparation."""
  from experiments.configs import memae
  from vadjax.train import train_and_evaluate
  raw = write_shanghaitech(tmp_path / 'raw', train=((1, 1, 12), (1, 2, 12), (2, 1, 12)),
                           test=((1, 14, 10), (2, 15, 10)))
  c = memae.get_config('quick,dataset=shanghaitech,num_epochs=1,num_devices=1,'
                       'data.video.clip_strides=1;2')
  c.data.update(manual_dir=str(raw), tfds_dir=str(tmp_path / 'prepared'))
  assert (c.model, c.image_size, c.data.channels) == ('memae_3d', 32, 1)
  report = train_and_evaluate(c, str(tmp_path / 'all'))
  run = report['runs'][0]
  assert run['category'] == 'all_scenes' and run['steps'] >= 1
  m = run['image']
  for key in ('auroc', 'auroc_per_video_norm', 'pixel_auroc', 'pixel_aupro'):
    assert 0.0 <= m[key] <= 1.0, key
  assert m['pixel_auroc_bin_bound'] < 1e-3 and m['pixel_regions'] == 4
  c = memae.get_config('quick,dataset=shanghaitech,categories=01,num_epochs=1,num_devices=1,'
                       'data.video.clip_strides=1')
  c.data.update(manual_dir=str(raw), tfds_dir=str(tmp_path / 'prepared'))
  report = train_and_evaluate(c, str(tmp_path / 'scene'))
  assert report['runs'][0]['category'] == '01'
  assert len(_stores(tmp_path / 'prepared')) == 1
