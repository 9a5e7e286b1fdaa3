"""The `folder` dataset: a user's own images in a folder layout. Fixtures are PNG files
written here; values, labels, kinds, masks and splits are checked exactly."""

import os

import ml_collections
import numpy as np
import pytest
from PIL import Image

from vadjax.data import DATASETS
from vadjax.data.sources import field
from vadjax.registry import UserError


def _png(path, array):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(array).save(path)


def _cfg(root, **kw):
  return ml_collections.ConfigDict({**dict(folder_root=str(root), channels=0, val_fraction=0.2,
                                          test_fraction=0.4), **kw})


@pytest.fixture
def root(tmp_path):
  rng = np.random.default_rng(0)
  for i in range(10):
    _png(tmp_path / 'normal' / f'n{i}.png', np.full((8, 8), 10 * i, np.uint8))
  for kind, n in (('crack', 3), ('hole', 2)):
    for i in range(n):
      img = rng.integers(0, 256, (8, 8), dtype=np.uint8)
      _png(tmp_path / 'anomalous' / kind / f'{kind}{i}.png', img)
      mask = np.zeros((8, 8), np.uint8)
      mask[i:i + 2, 2:5] = 255
      _png(tmp_path / 'masks' / kind / f'{kind}{i}.png', mask)
  return tmp_path


def test_folder_layout_loads_exactly(root):
  splits = DATASETS.get('folder')('default', 8, _cfg(root))
  assert splits.kind_names == ['normal', 'crack', 'hole'] and splits.has_masks
  assert splits.image_shape == (8, 8, 1)
  # normal 10 → 4 / 2 / 4; anomalous 5 → val : test = 0.2 : 0.4 → 2 / 3
  assert (len(splits.train), len(splits.val), len(splits.test)) == (4, 2 + 2, 4 + 3)
  assert (field(splits.train, 'label') == 0).all()
  # every normal image is in exactly one split, with its exact pixel values
  normal_values = sorted(
      float(r['image'][0, 0, 0]) for s in (splits.train, splits.val, splits.test)
      for r in (s[i] for i in range(len(s))) if r['label'] == 0)
  np.testing.assert_allclose(normal_values, [10 * i / 255 for i in range(10)], rtol=1e-6)
  test = splits.test
  for i in range(len(test)):
    r = test[i]
    if r['kind'] == 0:
      assert r['mask'].sum() == 0
    else:
      kind = splits.kind_names[r['kind']]
      j = int(np.flatnonzero(r['mask'].any(1))[0])        # the mask's first row is its index
      img = np.asarray(Image.open(root / 'anomalous' / kind / f'{kind}{j}.png'), np.float32)
      np.testing.assert_allclose(r['image'][..., 0], img / 255, rtol=1e-6)
      assert r['mask'].sum() == 6


def test_folder_resizes_and_chooses_channels(root):
  colour = (np.arange(12 * 10 * 3).reshape(12, 10, 3) * 7 % 256).astype(np.uint8)
  _png(root / 'normal' / 'colour.png', colour)
  splits = DATASETS.get('folder')('default', 16, _cfg(root))
  assert splits.image_shape == (16, 16, 3) and splits.train[0]['image'].shape == (16, 16, 3)
  # resized with Pillow's bilinear filter (as the real datasets), grey ones made RGB
  ref = np.asarray(Image.fromarray(colour).resize((16, 16), Image.BILINEAR), np.float32) / 255
  images = [s[i]['image'] for s in (splits.train, splits.val, splits.test)
            for i in range(len(s))]
  assert sum(np.array_equal(im, ref) for im in images) == 1
  assert all(np.array_equal(im[..., 0], im[..., 2]) for im in images
             if not np.array_equal(im, ref))
  grey = DATASETS.get('folder')('default', 16, _cfg(root, channels=1))
  assert grey.image_shape == (16, 16, 1)


def test_folder_errors_name_the_problem(root, tmp_path_factory):
  with pytest.raises(UserError, match='data.folder_root'):
    DATASETS.get('folder')('default', 8, _cfg(''))
  empty = tmp_path_factory.mktemp('empty')
  with pytest.raises(UserError, match='normal is not a folder.*expected <root>/normal'):
    DATASETS.get('folder')('default', 8, _cfg(empty))
  (root / 'normal' / 'broken.png').write_bytes(b'not a png')
  with pytest.raises(UserError, match='cannot read image .*broken.png'):
    DATASETS.get('folder')('default', 8, _cfg(root))
  os.remove(root / 'normal' / 'broken.png')
  _png(root / 'masks' / 'crack' / 'stray.png', np.zeros((8, 8), np.uint8))
  with pytest.raises(UserError, match='stray.*no image of the same name'):
    DATASETS.get('folder')('default', 8, _cfg(root))


# --------------------------------------------------------------------------- videos

def _avi(path, frames):
  import av
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with av.open(str(path), 'w') as c:
    s = c.add_stream('png', rate=25)
    s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], 'rgb24'
    for f in frames:
      c.mux(s.encode(av.VideoFrame.from_ndarray(f, format='rgb24')))
    c.mux(s.encode())


def _clip(v, t):
  return np.full((6, 6, 3), 20 * v + t, np.uint8)


@pytest.fixture
def video_root(tmp_path):
  for v in range(4):                       # 2 frame folders, 2 video files
    frames = np.stack([_clip(v, t) for t in range(5)])
    if v < 2:
      for t, f in enumerate(frames):
        _png(tmp_path / 'normal' / f'cam{v}' / f'{t:04d}.png', f)
    else:
      _avi(tmp_path / 'normal' / f'cam{v}.avi', frames)
  for v in (4, 5):
    frames = np.stack([_clip(v, t) for t in range(5)])
    _avi(tmp_path / 'anomalous' / f'event{v}.avi', frames)
    (tmp_path / 'labels').mkdir(exist_ok=True)
    (tmp_path / 'labels' / f'event{v}.txt').write_text('0\n0\n1\n1\n0\n')
    for t in range(5):
      m = np.zeros((6, 6), np.uint8)
      m[1:3, t:t + 1] = 255 if t in (2, 3) else 0
      _png(tmp_path / 'masks' / f'event{v}' / f'{t}.png', m)
  return tmp_path


def _video_cfg(root, **kw):
  return _cfg(root, val_fraction=0.25, test_fraction=0.25, tfds_dir=f'{root}-prepared',
              video=dict(clip_length=2, clip_strides=(1,)), **kw)


def test_folder_video_layout_loads_exactly(video_root):
  splits = DATASETS.get('folder_video')('default', 6, _video_cfg(video_root))
  assert splits.image_shape == (2, 6, 6, 3) and splits.has_masks
  # normal 4 → 2 train / 1 val / 1 test videos; anomalous 2 → 1 val / 1 test
  assert len(splits.train) == 2 * 4 and len(splits.val) == len(splits.test) == 10
  seen = set()
  for split in (splits.train, splits.val, splits.test):
    for i in range(len(split)):
      r = split[i]
      v = int(round(float(r['image'][0, 0, 0, 0]) * 255)) // 20   # which video it came from
      seen.add(v)
      for k in range(2):
        np.testing.assert_array_equal(r['image'][k], _clip(v, int(round(
            float(r['image'][k, 0, 0, 0]) * 255)) % 20) / np.float32(255))
  assert seen == set(range(6))
  test = [splits.test[i] for i in range(len(splits.test))]
  anomalous = [r for r in test if r['image'][0, 0, 0, 0] * 255 >= 79.5]
  assert [int(r['label']) for r in anomalous] == [0, 0, 1, 1, 0]
  np.testing.assert_array_equal(anomalous[2]['mask'][1:3, 2], [1, 1])
  assert anomalous[2]['mask'].sum() == 2 and anomalous[0]['mask'].sum() == 0


@pytest.mark.parametrize('breakage,message', [
    (lambda r: (r / 'labels' / 'event5.txt').write_text('0 1 1\n'), r'expected 5 labels'),
    (lambda r: os.remove(r / 'labels' / 'event4.txt'), r"'event4' has no label file"),
    (lambda r: os.remove(r / 'masks' / 'event4' / '3.png'), r'holds 4 masks for the 5 frames'),
    (lambda r: (r / 'normal' / 'cam2.avi').write_bytes(b'RIFF' + bytes(40)),
     r'cannot decode video .*cam2.avi'),
    (lambda r: __import__('shutil').rmtree(r / 'anomalous'), r'0 anomalous videos'),
])
def test_folder_video_errors_name_the_file(video_root, breakage, message):
  breakage(video_root)
  with pytest.raises(UserError, match=message):
    DATASETS.get('folder_video')('default', 6, _video_cfg(video_root))
