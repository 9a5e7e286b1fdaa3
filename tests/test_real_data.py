"""The real datasets (issue 8): tiny fixtures written here in each published format (IDX,
CIFAR pickles, PNG/JPEG/TIFF/BMP folders, UCSD's .m, Avenue's .avi and .mat, Subway's video
and annotations, HAM10000's CSV) are prepared through the TFDS builders and loaded through
the public dataset API; values, labels, kinds, masks and splits are checked exactly, and
every broken input must fail with an error naming the file."""

import fractions
import gzip
import json
import os
import pickle

import av
import ml_collections
import numpy as np
import pytest
import scipy.io
from PIL import Image

from vadjax.data import DATASETS, builders, formats, frames, real, video_datasets
from vadjax.data.sources import field
from vadjax.registry import UserError


def _cfg(manual, tfds_dir, **kw):
  base = dict(manual_dir=str(manual), tfds_dir=str(tfds_dir), channels=0, crop='',
              val_fraction=0.2, test_fraction=0.3, label_window=15, source='files',
              video=dict(clip_length=2, clip_strides=(1, 2)))
  return ml_collections.ConfigDict({**base, **kw})


def _f(a):
  """uint8 → the float32 in [0, 1] that sources return."""
  return np.asarray(a, np.float32) / 255.0


def _all(source):
  return [source[i] for i in range(len(source))]


def _image(path, array):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(array).save(path)


def _pattern(i, shape):
  """A distinct uint8 image per index (values exact through lossless formats)."""
  return ((np.arange(np.prod(shape)).reshape(shape) * 3 + 17 * i) % 256).astype(np.uint8)


# --------------------------------------------------------------------------- formats

def _write_idx(path, array, gz=True):
  codes = {np.uint8: 0x08}
  header = bytes([0, 0, codes[array.dtype.type], array.ndim]) + b''.join(
      int(n).to_bytes(4, 'big') for n in array.shape)
  with (gzip.open if gz else open)(path, 'wb') as f:
    f.write(header + array.tobytes())


def test_idx_reader_and_errors(tmp_path):
  a = _pattern(0, (3, 5, 4))
  _write_idx(tmp_path / 'x.gz', a)
  _write_idx(tmp_path / 'y', a, gz=False)
  np.testing.assert_array_equal(formats.read_idx(str(tmp_path / 'x.gz')), a)
  np.testing.assert_array_equal(formats.read_idx(str(tmp_path / 'y')), a)
  (tmp_path / 'short').write_bytes((tmp_path / 'y').read_bytes()[:-7])
  with pytest.raises(UserError, match=r'short.*truncated'):
    formats.read_idx(str(tmp_path / 'short'))
  (tmp_path / 'png').write_bytes(b'\x89PNG....')
  with pytest.raises(UserError, match='not an IDX file'):
    formats.read_idx(str(tmp_path / 'png'))


def test_ucsd_m_parser(tmp_path):
  m = tmp_path / 'UCSDped1.m'
  m.write_text('TestVideoFile = {};\nTestVideoFile{end+1}.gt_frame = [60:152];\n'
               'TestVideoFile{end+1}.gt_frame = [5:90, 140:200];\n')
  assert formats.parse_ucsd_m(str(m)) == [[(60, 152)], [(5, 90), (140, 200)]]
  np.testing.assert_array_equal(formats.ranges_to_labels([(2, 3)], 5, 'v'), [0, 1, 1, 0, 0])
  with pytest.raises(UserError, match='outside its 4 frames'):
    formats.ranges_to_labels([(2, 5)], 4, 'v')
  m.write_text('TestVideoFile{end+1}.gt_frame = [60-152];\n')
  with pytest.raises(UserError, match=r'UCSDped1.m:1: expected ranges'):
    formats.parse_ucsd_m(str(m))


def test_subway_event_labels():
  events = np.array([10, 40])
  labels = video_datasets.event_labels(events, 5, 50, 3)
  expected = np.array([int(any(abs(f - e) <= 3 for e in events)) for f in range(5, 55)])
  np.testing.assert_array_equal(labels, expected)


# --------------------------------------------------------------------------- images

@pytest.fixture
def mnist_files(tmp_path):
  root = tmp_path / 'mnist_raw'
  root.mkdir()
  for prefix, n in (('train', 80), ('t10k', 20)):
    images = np.stack([_pattern(i + (100 if prefix == 't10k' else 0), (28, 28))
                       for i in range(n)])
    _write_idx(root / f'{prefix}-images-idx3-ubyte.gz', images)
    _write_idx(root / f'{prefix}-labels-idx1-ubyte.gz', (np.arange(n) % 10).astype(np.uint8))
  return root


def test_mnist_one_class_protocol_exact(mnist_files, tmp_path):
  cfg = _cfg(mnist_files, tmp_path / 'tfds')
  splits = DATASETS.get('mnist')('3', 28, cfg)
  assert splits.image_shape == (28, 28, 1) and not splits.has_masks
  # class 3 has 8 train images: 2 (20%) held out for val, 6 train; val has 2 of each class
  assert len(splits.train) == 6 and len(splits.val) == 20 and len(splits.test) == 20
  assert (field(splits.train, 'label') == 0).all()
  for r, src_index in zip(_all(splits.train), splits.train.indices):
    assert src_index % 10 == 3
    np.testing.assert_array_equal(r['image'][..., 0], _f(_pattern(int(src_index), (28, 28))))
  test = _all(splits.test)
  for i, r in enumerate(test):
    np.testing.assert_array_equal(r['image'][..., 0], _f(_pattern(100 + i, (28, 28))))
    assert r['label'] == int(i % 10 != 3) and r['kind'] == (0 if i % 10 == 3 else i % 10 + 1)
  np.testing.assert_array_equal(field(splits.test, 'label'), [r['label'] for r in test])
  # resized at preparation with Pillow's bilinear filter (torchvision's Resize)
  small = DATASETS.get('mnist')('3', 14, cfg).test[0]['image'][..., 0]
  ref = np.asarray(Image.fromarray(_pattern(100, (28, 28))).resize((14, 14), Image.BILINEAR))
  np.testing.assert_array_equal(small, _f(ref))


def test_missing_and_corrupt_mnist_files(mnist_files, tmp_path):
  with pytest.raises(UserError, match='data.manual_dir is not set'):
    DATASETS.get('mnist')('1', 28, _cfg('', tmp_path / 'a'))
  with pytest.raises(UserError, match=r'(?s)missing.*train-images-idx3-ubyte'):
    DATASETS.get('mnist')('1', 28, _cfg(tmp_path / 'nowhere', tmp_path / 'b'))
  os.remove(mnist_files / 't10k-labels-idx1-ubyte.gz')
  with pytest.raises(UserError, match=r't10k labels IDX file.*\n.*IDX files'):
    DATASETS.get('mnist')('1', 28, _cfg(mnist_files, tmp_path / 'c'))
  _write_idx(mnist_files / 't10k-labels-idx1-ubyte.gz', np.zeros(19, np.uint8))
  with pytest.raises(UserError, match=r'expected N×28×28 images and N labels'):
    DATASETS.get('mnist')('1', 28, _cfg(mnist_files, tmp_path / 'd'))
  # nothing partial is left behind: the prepared version folder does not exist
  assert not os.path.isdir(tmp_path / 'd' / 'vad_mnist' / '28px_gray' / '1.0.0')
  with pytest.raises(UserError, match="normal classes 0..9"):
    DATASETS.get('fashion_mnist')('11', 28, _cfg(mnist_files, tmp_path / 'e'))


def test_tfds_catalog_names():
  import tensorflow_datasets as tfds
  cfg = _cfg('', '', source='tfds')
  with tfds.testing.mock_data(num_examples=30):
    ref = tfds.data_source('mnist', split='test')
    splits = DATASETS.get('mnist')('2', 28, cfg)
    labels = np.array([int(ref[i]['label']) for i in range(len(ref))])
    np.testing.assert_array_equal(field(splits.test, 'label'), (labels != 2).astype(int))
    np.testing.assert_array_equal(splits.test[4]['image'], _f(ref[4]['image']))
    with pytest.raises(UserError, match='set image_size=28'):
      DATASETS.get('mnist')('2', 32, cfg)


def test_cifar_pickles(tmp_path):
  root = tmp_path / 'raw' / 'cifar-10-batches-py'
  root.mkdir(parents=True)
  k = 0
  for name in [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']:
    data = np.stack([_pattern(k + j, (3072,)) for j in range(10)])
    with open(root / name, 'wb') as f:
      pickle.dump({b'data': data, b'labels': list(range(10))}, f)
    k += 10
  splits = DATASETS.get('cifar10')('7', 32, _cfg(tmp_path / 'raw', tmp_path / 'tfds'))
  assert splits.image_shape == (32, 32, 3)
  first = _pattern(50, (3072,)).reshape(3, 32, 32).transpose(1, 2, 0)
  np.testing.assert_array_equal(splits.test[0]['image'], _f(first))
  assert len(splits.train) == 4 and set(field(splits.test, 'kind')) == {0} | set(range(1, 11)) - {8}
  with open(root / 'test_batch', 'wb') as f:
    f.write(b'not a pickle')
  with pytest.raises(UserError, match='test_batch'):
    DATASETS.get('cifar10')('7', 32, _cfg(tmp_path / 'raw', tmp_path / 'tfds2'))


@pytest.fixture
def mvtec_files(tmp_path):
  root = tmp_path / 'raw' / 'mvtec_anomaly_detection'
  for c, cat in enumerate(('bottle', 'grid')):
    for i in range(5):
      _image(root / cat / 'train' / 'good' / f'{i:03d}.png', _pattern(10 * c + i, (16, 16, 3)))
    for i in range(2):
      _image(root / cat / 'test' / 'good' / f'{i:03d}.png', _pattern(50 + i, (16, 16, 3)))
      _image(root / cat / 'test' / 'crack' / f'{i:03d}.png', _pattern(60 + i, (16, 16, 3)))
      mask = np.zeros((16, 16), np.uint8)
      mask[i:i + 3, 4:9] = 255
      _image(root / cat / 'ground_truth' / 'crack' / f'{i:03d}_mask.png', mask)
  return tmp_path / 'raw'


def test_mvtec_category_folders_exact(mvtec_files, tmp_path):
  splits = DATASETS.get('mvtec')('grid', 16, _cfg(mvtec_files, tmp_path / 'tfds'))
  assert splits.has_masks and splits.kind_names == ['normal', 'crack']
  assert (len(splits.train), len(splits.val), len(splits.test)) == (4, 1, 4)
  train_values = sorted(round(float(r['image'][0, 0, 0]) * 255) for r in _all(splits.train) +
                        _all(splits.val))
  assert train_values == sorted(int(_pattern(10 + i, (16, 16, 3))[0, 0, 0]) for i in range(5))
  test = _all(splits.test)
  assert [r['kind'] for r in test] == [1, 1, 0, 0]           # test/crack, then test/good
  for i, r in enumerate(test[:2]):
    np.testing.assert_array_equal(r['image'], _f(_pattern(60 + i, (16, 16, 3))))
    expected = np.zeros((16, 16))
    expected[i:i + 3, 4:9] = 1
    np.testing.assert_array_equal(r['mask'], expected)
  assert test[3]['mask'].sum() == 0
  with pytest.raises(UserError, match="category 'wood' was not among"):
    DATASETS.get('mvtec')('wood', 16, _cfg(mvtec_files, tmp_path / 'tfds'))
  os.remove(mvtec_files / 'mvtec_anomaly_detection/bottle/ground_truth/crack/001_mask.png')
  with pytest.raises(UserError, match=r'bottle/test/crack/001.png has no ground-truth mask'):
    DATASETS.get('mvtec')('grid', 16, _cfg(mvtec_files, tmp_path / 'tfds2'))


def test_corrupt_image_names_the_file(mvtec_files, tmp_path):
  bad = mvtec_files / 'mvtec_anomaly_detection/grid/train/good/002.png'
  bad.write_bytes(b'\x89PNG\r\n\x1a\n garbage')
  with pytest.raises(UserError, match=r'cannot read image .*grid/train/good/002.png'):
    DATASETS.get('mvtec')('grid', 16, _cfg(mvtec_files, tmp_path / 'tfds'))
  assert not os.path.isdir(tmp_path / 'tfds' / 'vad_mvtec' / '16px_rgb' / '1.0.0')


def test_ham10000_csv(tmp_path):
  root = tmp_path / 'raw'
  rows = []
  for i in range(24):
    dx = 'nv' if i < 16 else builders.HAM_CLASSES[1 + i % 6]
    folder = 'HAM10000_images_part_1' if i % 2 else 'HAM10000_images_part_2'
    _image(root / folder / f'ISIC_{i:07d}.jpg', _pattern(i, (12, 12, 3)))
    rows.append(f'HAM_{i},ISIC_{i:07d},{dx},histo,50,male,back')
  (root / 'HAM10000_metadata.csv').write_text(
      'lesion_id,image_id,dx,dx_type,age,sex,localization\n' + '\n'.join(rows) + '\n')
  splits = DATASETS.get('ham10000')('default', 12, _cfg(root, tmp_path / 'tfds'))
  # 16 NV: int(16 · 6600 / 6705) = 15 train + val (20% → 3 val), 1 NV + 8 others test
  assert (len(splits.train), len(splits.val), len(splits.test)) == (12, 3, 9)
  assert sorted(field(splits.test, 'kind')) == [0] + sorted(1 + i % 6 for i in range(16, 24))
  assert splits.kind_names == builders.HAM_CLASSES
  r = _all(splits.test)[-1]
  ref = np.asarray(Image.open(root / 'HAM10000_images_part_1' / 'ISIC_0000023.jpg'))
  np.testing.assert_array_equal(r['image'], _f(ref))     # JPEG decoded by Pillow
  (root / 'HAM10000_metadata.csv').write_text(
      'lesion_id,image_id,dx\nHAM_0,ISIC_0000099,nv\n')
  with pytest.raises(UserError, match=r'HAM10000_metadata.csv:2: image ISIC_0000099.jpg'):
    DATASETS.get('ham10000')('default', 12, _cfg(root, tmp_path / 'tfds2'))


def test_ddds_drivers(tmp_path):
  root = tmp_path / 'raw'
  for c, cls in enumerate(('normal', 'talking', 'texting')):
    for d in range(5):
      for i in range(2):
        _image(root / cls / f'driver{d}' / f'{i}.png', np.full((8, 8), 100 * c + 10 * d + i,
                                                               np.uint8))
  splits = DATASETS.get('ddds')('default', 8, _cfg(root, tmp_path / 'tfds'))
  assert splits.image_shape == (8, 8, 1) and splits.kind_names == ['normal', 'talking',
                                                                    'texting']
  # round(5 · 16/25) = 3 drivers' normal images (6) train + val; 2 drivers' normal + all
  # 20 distraction images test
  assert len(splits.train) + len(splits.val) == 6 and len(splits.test) == 24
  assert sorted(field(splits.test, 'kind')).count(0) == 4
  def driver(r):
    return round(float(r['image'][0, 0, 0]) * 255) // 10

  train_drivers = {driver(r) for r in _all(splits.train) + _all(splits.val)}
  test_normal = {driver(r) for r in _all(splits.test) if r['kind'] == 0}
  assert len(train_drivers) == 3 and len(test_normal) == 2
  assert not train_drivers & test_normal
  (root / 'normal').rename(root / 'normals')
  with pytest.raises(UserError, match='must hold a normal/ folder'):
    DATASETS.get('ddds')('default', 8, _cfg(root, tmp_path / 'tfds2'))


# --------------------------------------------------------------------------- videos

def _write_video(path, frames, rate=25):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with av.open(str(path), 'w') as c:
    s = c.add_stream('png', rate=rate)
    s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], 'rgb24'
    for f in frames:
      for p in s.encode(av.VideoFrame.from_ndarray(f, format='rgb24')):
        c.mux(p)
    for p in s.encode():
      c.mux(p)


@pytest.fixture
def ucsd_files(tmp_path):
  base = tmp_path / 'raw' / 'UCSD_Anomaly_Dataset.v1p2' / 'UCSDped2'
  for v in range(3):
    for t in range(6):
      _image(base / 'Train' / f'Train{v + 1:03d}' / f'{t + 1:03d}.tif', _pattern(10 * v + t,
                                                                               (12, 16)))
  for v in range(2):
    for t in range(5):
      _image(base / 'Test' / f'Test{v + 1:03d}' / f'{t + 1:03d}.tif', _pattern(50 + 10 * v + t,
                                                                             (12, 16)))
      mask = np.zeros((12, 16), np.uint8)
      if v == 0 and 1 <= t <= 2:
        mask[2:5, t:t + 4] = 255
      _image(base / 'Test' / f'Test{v + 1:03d}_gt' / f'{t + 1:03d}.bmp', mask)
  (base / 'Test' / 'UCSDped2.m').write_text(
      'TestVideoFile = {};\nTestVideoFile{end+1}.gt_frame = [2:3];\n'
      'TestVideoFile{end+1}.gt_frame = [1:1, 5:5];\n')
  return tmp_path / 'raw', base


def test_ucsd_archive_layout_exact(ucsd_files, tmp_path):
  root, base = ucsd_files
  splits = DATASETS.get('ucsd_ped2')('default', 12, _cfg(root, tmp_path / 'tfds', crop='0 2 12 12'))
  assert splits.image_shape == (2, 12, 12, 1) and splits.has_masks
  test = _all(splits.test)                                  # one record per frame
  assert [int(r['label']) for r in test] == [0, 1, 1, 0, 0, 1, 0, 0, 0, 1]
  for r in test:
    f = int(r['frame'])
    ref = _pattern(50 + 10 * int(r['video']) + f, (12, 16))[:, 2:14]       # the crop
    np.testing.assert_array_equal(r['image'][int(r['offset']), ..., 0], _f(ref))
  mask = np.zeros((12, 16))
  mask[2:5, 1:5] = 1
  np.testing.assert_array_equal(test[1]['mask'], mask[:, 2:14])
  # 3 training videos: 1 (20%, at least one) held out as normal validation video
  assert len(splits.val) == 6 and not field(splits.val, 'label').any()
  assert len(splits.train) == 2 * (5 + 4)                    # strides 1 and 2, 2 frames
  # a .m with a different number of videos, and frames that do not match the ranges
  (base / 'Test' / 'UCSDped2.m').write_text('TestVideoFile{end+1}.gt_frame = [2:3];\n')
  with pytest.raises(UserError, match='lists 1 videos but .* holds 2 Test folders'):
    DATASETS.get('ucsd_ped2')('default', 12, _cfg(root, tmp_path / 'tfds2'))
  (base / 'Test' / 'UCSDped2.m').write_text(
      'TestVideoFile{end+1}.gt_frame = [2:3];\nTestVideoFile{end+1}.gt_frame = [4:9];\n')
  with pytest.raises(UserError, match=r'Test002: anomalous range 4:9 lies outside its 5'):
    DATASETS.get('ucsd_ped2')('default', 12, _cfg(root, tmp_path / 'tfds3'))
  os.remove(base / 'Test' / 'Test001_gt' / '005.bmp')
  (base / 'Test' / 'UCSDped2.m').write_text(
      'TestVideoFile{end+1}.gt_frame = [2:3];\nTestVideoFile{end+1}.gt_frame = [1:1];\n')
  with pytest.raises(UserError, match=r'Test001: more frames than pixel masks \(4\)'):
    DATASETS.get('ucsd_ped2')('default', 12, _cfg(root, tmp_path / 'tfds4'))
  with pytest.raises(UserError, match=r"crop \(0, 0, 200, 300\).*does not fit"):
    DATASETS.get('ucsd_ped2')('default', 12, _cfg(root, tmp_path / 'tfds5', crop='0 0 200 300'))


def test_avenue_avi_and_mat(tmp_path):
  root = tmp_path / 'raw'
  train = [np.stack([_pattern(10 * v + t, (8, 10, 3)) for t in range(4)]) for v in range(2)]
  test = np.stack([_pattern(90 + t, (8, 10, 3)) for t in range(5)])
  for v, clip in enumerate(train):
    _write_video(root / 'Avenue Dataset' / 'training_videos' / f'{v + 1:02d}.avi', clip)
  _write_video(root / 'Avenue Dataset' / 'testing_videos' / '01.avi', test)
  masks = np.zeros((5, 8, 10), np.uint8)
  masks[3, 2:4, 5:8] = 1
  cell = np.empty((1, 5), dtype=object)
  for t in range(5):
    cell[0, t] = masks[t]
  os.makedirs(root / 'ground_truth_demo' / 'testing_label_mask')
  scipy.io.savemat(root / 'ground_truth_demo' / 'testing_label_mask' / '1_label.mat',
                   {'volLabel': cell})
  splits = DATASETS.get('avenue')('default', 8, _cfg(root, tmp_path / 'tfds', crop='0 1 8 8'))
  assert splits.image_shape == (2, 8, 8, 3) and splits.has_masks
  recs = _all(splits.test)
  assert [int(r['label']) for r in recs] == [0, 0, 0, 1, 0]
  for r in recs:
    ref = test[int(r['frame']), :, 1:9]
    np.testing.assert_array_equal(r['image'][int(r['offset'])], _f(ref))
    np.testing.assert_array_equal(r['mask'], masks[int(r['frame']), :, 1:9])
  # a corrupt video fails naming the file; a .mat with too few masks fails too
  (root / 'Avenue Dataset' / 'training_videos' / '02.avi').write_bytes(b'RIFF' + bytes(64))
  with pytest.raises(UserError, match=r'cannot decode video .*training_videos/02.avi'):
    DATASETS.get('avenue')('default', 8, _cfg(root, tmp_path / 'tfds2'))
  _write_video(root / 'Avenue Dataset' / 'training_videos' / '02.avi', train[1])
  scipy.io.savemat(root / 'ground_truth_demo' / 'testing_label_mask' / '1_label.mat',
                   {'volLabel': cell[:, :4]})
  with pytest.raises(UserError, match=r'01: more frames than pixel masks \(4\)'):
    DATASETS.get('avenue')('default', 8, _cfg(root, tmp_path / 'tfds3'))
  scipy.io.savemat(root / 'ground_truth_demo' / 'testing_label_mask' / '1_label.mat',
                   {'gt': cell})
  with pytest.raises(UserError, match=r"1_label.mat has no variable 'volLabel'"):
    DATASETS.get('avenue')('default', 8, _cfg(root, tmp_path / 'tfds4'))


def test_subway_video_and_events(tmp_path):
  root = tmp_path / 'raw'
  frames = np.stack([_pattern(t, (6, 8, 3)) for t in range(22)])
  # one frame every 30 s: exit trains on its first 5 minutes = 10 frames
  _write_video(root / 'subway_exit_turnstiles.avi', frames, rate=fractions.Fraction(1, 30))
  (root / 'exit_annotations.json').write_text(json.dumps({'a': [14], 'b': [20]}))
  cfg = _cfg(root, tmp_path / 'tfds', label_window=1, channels=3)
  splits = DATASETS.get('subway')('exit', 6, cfg)
  # 10 training frames: the last 20% (2) validate; 12 test frames, 10 … 21
  assert len(splits.val) == 2 and len(splits.test) == 12
  expected = [int(any(abs(f - e) <= 1 for e in (14, 20))) for f in range(10, 22)]
  assert [int(r['label']) for r in _all(splits.test)] == expected
  wide = DATASETS.get('subway')('exit', 6, _cfg(root, tmp_path / 'tfds', channels=3))
  assert field(wide.test, 'label').all()                      # ±15 covers all 12
  r = splits.test[3]
  ref = np.asarray(Image.fromarray(frames[13]).resize((6, 6), Image.BILINEAR))
  np.testing.assert_array_equal(r['image'][int(r['offset'])], _f(ref))
  with pytest.raises(UserError, match='no entrance video'):
    DATASETS.get('subway')('entrance', 6, _cfg(root, tmp_path / 'tfds2'))
  (root / 'exit_annotations.json').write_text('{"a": [14, "x"]}')
  with pytest.raises(UserError, match='exit_annotations.json'):
    DATASETS.get('subway')('exit', 6, _cfg(root, tmp_path / 'tfds3'))


def test_crop_option():
  assert frames.parse_crop('code', 'ucsd_ped2') == (80, 0, 160, 360)
  assert frames.parse_crop('1,2,3,4', 'avenue') == (1, 2, 3, 4) and frames.parse_crop('', 'x') == ()
  with pytest.raises(UserError, match="'top left height width'"):
    frames.parse_crop('1 2 3', 'avenue')
  with pytest.raises(UserError, match="data.crop='code' exists for"):
    frames.parse_crop('code', 'mnist')


# --------------------------------------------------------------------------- end to end

def test_seed_configs_train_on_real_files(ucsd_files, mnist_files, tmp_path):
  """The configs run unchanged on the real datasets: a ConvGRU AE on UCSD Ped2 files and a
  MemAE on MNIST IDX files, from preparation to the report."""
  from experiments.configs import conv_rnn, memae
  from vadjax.train import train_and_evaluate
  root, _ = ucsd_files
  c = conv_rnn.get_config('quick,dataset=ucsd_ped2,num_epochs=1,batch_size=4,'
                          'eval_batch_size=4,data.video.clip_length=2,data.crop=code,'
                          'data.workers=2')
  c.data.update(manual_dir=str(root), tfds_dir=str(tmp_path / 'tfds'))
  with pytest.raises(UserError, match=r"crop \(80, 0, 160, 360\)"):   # UCSD's frames, not ours
    train_and_evaluate(c, str(tmp_path / 'video'))
  c.data.crop = ''
  report = train_and_evaluate(c, str(tmp_path / 'video'))
  run = report['runs'][0]
  assert run['category'] == 'default' and run['steps'] == 3     # (5 + 4) · 2 clips / batch 4
  metrics = run['image']
  assert 0.0 <= metrics['auroc'] <= 1.0 and 0.0 <= metrics['pixel_auroc'] <= 1.0
  assert 'auroc_per_video_norm' in metrics and 'auroc_mean_per_video' in metrics
  c = memae.get_config('quick,dataset=mnist,categories=3,num_epochs=1,'
                       'batch_size=4,eval_batch_size=8')
  c.data.update(manual_dir=str(mnist_files), tfds_dir=str(tmp_path / 'tfds'), val_fraction=0.25)
  run = train_and_evaluate(c, str(tmp_path / 'mnist'))['runs'][0]
  assert run['name'] == 'mnist/3/seed0' and 0.0 <= run['image']['auroc'] <= 1.0
  assert set(run['per_kind_auroc']) == {f'class {c}' for c in range(10)} - {'class 3'}


def test_cli_missing_files_is_a_clear_error(tmp_path):
  import subprocess
  import sys
  cmd = [sys.executable, '-m', 'experiments.main',
         '--config=experiments/configs/conv_rnn.py:dataset=avenue',
         f'--config.data.manual_dir={tmp_path / "nothing"}',
         f'--config.data.tfds_dir={tmp_path / "tfds"}', f'--workdir={tmp_path / "w"}']
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=300)
  assert out.returncode == 2, out.stderr[-2000:]
  assert 'error: the files of avenue are missing' in out.stderr
  assert 'testing_label_mask/1_label.mat' in out.stderr          # the instructions
  assert 'Traceback' not in out.stderr


def _readme_dataset_commands():
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  with open(os.path.join(root, 'README.md')) as f:
    text = f.read()
  table = text.split('## Real datasets', 1)[1].split('\n## ', 1)[0]
  rows = [line for line in table.splitlines() if line.startswith('| `')]
  return [(line.split('`')[1], line.rsplit('--config=', 1)[1].split('`')[0]) for line in rows]


def test_readme_commands_build_their_models():
  """Every README dataset command loads, picks the dataset, and its model initialises on
  the shape that dataset yields (no files needed: shapes only)."""
  import importlib
  import jax
  from vadjax.train.experiment import Experiment
  commands = _readme_dataset_commands()
  assert {name for name, _ in commands} == set(real.CATEGORIES)
  for name, command in commands:
    path, _, variant = command.partition(':')
    module = importlib.import_module(path.replace('/', '.').removesuffix('.py'))
    c = module.get_config(variant)
    assert c.dataset == name, command
    channels = c.data.channels or (1 if name in real.GREY_BY_DEFAULT else 3)
    if c.data.patches.size:
      shape = (c.data.patches.size, c.data.patches.size, channels)
    elif name in real.VIDEOS:
      shape = (c.data.video.clip_length, c.image_size, c.image_size, channels)
    else:
      shape = (c.image_size, c.image_size, channels)
    c.num_devices = 1
    jax.eval_shape(Experiment(c).steps(shape).init, jax.random.PRNGKey(0))


def test_patch_protocol_and_per_frame_on_prepared_video(ucsd_files, tmp_path):
  """Seed 002's patch protocol and one-frame clips read prepared frames on demand."""
  from vadjax.data import patches
  root, _ = ucsd_files
  cfg = _cfg(root, tmp_path / 'tfds', video=dict(clip_length=1, clip_strides=(1,)))
  splits = DATASETS.get('ucsd_ped2')('default', 12, cfg)
  assert len(splits.train) == 2 * 6 and splits.train[0]['image'].shape == (1, 12, 12, 1)
  p = patches.patch_splits(splits, 'ucsd_ped2', 6, 6, 3)
  assert p.image_shape == (6, 6, 1) and len(p.test) == 10
  rec = p.test[1]
  # Test001's frame 2, resized from 16 to 12 wide; its top-left patch
  frame = np.asarray(Image.fromarray(_pattern(51, (12, 16))).resize((12, 12), Image.BILINEAR))
  np.testing.assert_array_equal(rec['image'][0, ..., 0], _f(frame[:6, :6]))
  assert int(rec['label']) == 1 and field(p.test, 'label').sum() == 4


def test_worker_processes_read_the_same_batches(ucsd_files, tmp_path):
  from vadjax.data import pipeline
  root, _ = ucsd_files
  splits = DATASETS.get('ucsd_ped2')('default', 12, _cfg(root, tmp_path / 'tfds'))
  ds = pipeline.train_dataset(splits.train, 4, 0, 2)
  plain = [b['image'] for b in ds]
  it = pipeline.train_iterator(ds, workers=2)
  first = [next(it)['image'] for _ in range(3)]
  state = it.get_state()
  resumed = pipeline.train_iterator(ds, workers=2)
  resumed.set_state(state)
  rest = [b['image'] for b in resumed]
  assert len(first) + len(rest) == len(plain)
  for a, b in zip(first + rest, plain):
    np.testing.assert_array_equal(a, b)


def test_data_benchmark_harness(tmp_path):
  import json
  import subprocess
  import sys
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = subprocess.run([sys.executable, '-m', 'experiments.bench_data', f'--workdir={tmp_path}',
                        '--train_videos=3', '--test_videos=1', '--frames=40',
                        '--image_size=32', '--workers=1', '--train_steps=2',
                        '--train_workers=0'],
                       cwd=root, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  result = json.loads((tmp_path / 'bench_data.json').read_text())
  assert result['frames'] == 160 and result['prepare_frames_per_s'] > 0
  assert result['train_clips_per_s'] > 0 and result['train_clips_per_s_1_workers'] > 0
  t = result['train_quick_conv_rnn']
  assert t['steps_per_s'] > 0 and t['clips_per_s'] == pytest.approx(4 * t['steps_per_s'],
                                                                   rel=1e-3)
  assert 0 <= t['input_wait_share'] < 1
