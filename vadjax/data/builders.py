"""TFDS builders for the seeds' real datasets, from the files a user places locally.

No TensorFlow: `file_format='array_record'` and `tfds.features.Tensor` features only, read
back with random access through `as_data_source()` (Grain reads those directly). Every
dataset is a manual download (`MANUAL_DOWNLOAD_INSTRUCTIONS`); `prepare()` builds it once
per (size, channels, crop) into `data_dir` and later runs reuse it. TFDS writes into a
temporary folder and renames it only when every split is complete, so an error (missing or
corrupt file, frames that do not match their labels) never leaves a partial dataset.

Records, in generation order (`disable_shuffling`):
  image datasets   image uint8 (S, S, C), class int32, group int32 (MVTec category,
                   DDDS driver; -1 when none), mask uint8 (S, S) (MVTec)
  video datasets   one record per frame: image uint8 (S, S, C), mask uint8 (S, S);
                   `metadata['videos'][split]` lists each video's name, length, anomalous
                   frame ranges (the frame labels) and whether it has pixel ground truth.
`metadata` also holds the per-record classes and groups of image datasets, so protocols
can split without decoding a single image.

Frames are cropped (optional; `CODE_CROPS` are the seed 001 code's crops), converted to
grey with Pillow's ITU-R 601-2 luma (as torchvision's `Grayscale`) or to RGB, and resized
with Pillow's bilinear filter (as torchvision's `Resize`); masks with nearest neighbour.
"""

import contextlib
import csv
import dataclasses
import json
import logging as std_logging
import os
import re

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from PIL import Image

from vadjax.data import formats
from vadjax.registry import UserError

# seed 001 code (general/data.py): torchvision crop(top, left, height, width) before resizing
CODE_CROPS = {'ucsd_ped1': (14, 8, 144, 204), 'ucsd_ped2': (80, 0, 160, 360),
              'avenue': (60, 0, 300, 640), 'subway': (64, 8, 280, 488)}
MVTEC_CATEGORIES = ['bottle', 'cable', 'capsule', 'carpet', 'grid', 'hazelnut', 'leather',
                    'metal_nut', 'pill', 'screw', 'tile', 'toothbrush', 'transistor', 'wood',
                    'zipper']
HAM_CLASSES = ['nv', 'akiec', 'bcc', 'bkl', 'df', 'mel', 'vasc']   # NV (nevi) is normal


@dataclasses.dataclass
class FrameConfig(tfds.core.BuilderConfig):
  size: int = 64
  channels: int = 1
  crop: tuple = ()          # (top, left, height, width) in source pixels, or ()
  category: str = ''        # subway: 'entrance' | 'exit'


def frame_config(size: int, channels: int, crop=(), category: str = '') -> FrameConfig:
  name = '_'.join(filter(None, [category, f'{size}px', 'gray' if channels == 1 else 'rgb',
                                'crop' + 'x'.join(map(str, crop)) if crop else '']))
  return FrameConfig(name=name, size=size, channels=channels, crop=tuple(crop),
                     category=category)


def to_frame(a: np.ndarray, cfg: FrameConfig, name: str) -> np.ndarray:
  """uint8 (H, W[, 3]) → cropped, converted, resized uint8 (S, S, C)."""
  im = Image.fromarray(a)
  if cfg.crop:
    top, left, h, w = cfg.crop
    if top + h > im.height or left + w > im.width:
      raise UserError(f'{name}: crop {cfg.crop} (top, left, height, width) does not fit its '
                      f'{im.width}×{im.height} pixels; set data.crop to fit or to none')
    im = im.crop((left, top, left + w, top + h))
  im = im.convert('L' if cfg.channels == 1 else 'RGB')
  if im.size != (cfg.size, cfg.size):
    im = im.resize((cfg.size, cfg.size), Image.BILINEAR)
  out = np.asarray(im, np.uint8)
  return out[..., None] if out.ndim == 2 else out


def to_mask(m: np.ndarray, cfg: FrameConfig) -> np.ndarray:
  """Any-channel non-zero mask → cropped, nearest-resized uint8 0/1 (S, S)."""
  m = (m.max(axis=-1) if m.ndim == 3 else m) > 0
  im = Image.fromarray(m.astype(np.uint8) * 255)
  if cfg.crop:
    top, left, h, w = cfg.crop
    im = im.crop((left, top, left + w, top + h))
  if im.size != (cfg.size, cfg.size):
    im = im.resize((cfg.size, cfg.size), Image.NEAREST)
  return (np.asarray(im) > 127).astype(np.uint8)


def find(root: str, pattern: str, want_dir: bool, what: str, instructions: str) -> str:
  """The first path under `root` (walking down, shallowest first) whose name matches."""
  rx = re.compile(pattern)
  for dirpath, dirnames, filenames in sorted(os.walk(root), key=lambda t: t[0].count(os.sep)):
    for n in sorted(dirnames if want_dir else filenames):
      if rx.fullmatch(n):
        return os.path.join(dirpath, n)
  raise UserError(f'no {what} (matching {pattern!r}) under {root}.\n{instructions}')


class _Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Shared parts: config, features, manual dir checks."""
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}
  BUILDER_CONFIGS = [frame_config(64, 1)]
  HAS_MASK = False
  IS_VIDEO = False

  def _info(self):
    s, c = self.builder_config.size, self.builder_config.channels
    feats = {'image': tfds.features.Tensor(shape=(s, s, c), dtype=np.uint8)}
    if not self.IS_VIDEO:     # video frame labels live in metadata (known after decoding)
      feats['class'] = tfds.features.Tensor(shape=(), dtype=np.int32)
      feats['group'] = tfds.features.Tensor(shape=(), dtype=np.int32)
    if self.HAS_MASK or self.IS_VIDEO:
      feats['mask'] = tfds.features.Tensor(shape=(s, s), dtype=np.uint8)
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(feats),
                                 disable_shuffling=True, metadata=tfds.core.MetadataDict())

  def _manual(self, dl_manager) -> str:
    try:
      return os.fspath(dl_manager.manual_dir)
    except AssertionError:
      raise UserError(f'the files of {self.name} are missing: the manual folder '
                      f'(data.manual_dir) does not exist or is empty.\n'
                      f'{self.MANUAL_DOWNLOAD_INSTRUCTIONS}'
                      ) from None

  # ----------------------------------------------------------------- image records

  def _image_examples(self, split: str, items):
    """items: (path or uint8 array, class, group, mask path or None) → records; the
    classes and groups go to metadata."""
    meta = self.info.metadata.setdefault('records', {})
    classes, groups = meta.setdefault(split, {'class': [], 'group': []}).values()
    s = self.builder_config.size
    for i, (image, cls, group, mask) in enumerate(items):
      name = image if isinstance(image, str) else f'{split}[{i}]'
      a = formats.read_image(image) if isinstance(image, str) else image
      rec = {'image': to_frame(a, self.builder_config, name), 'class': cls, 'group': group}
      if self.HAS_MASK:
        rec['mask'] = (to_mask(formats.read_image(mask), self.builder_config) if mask
                       else np.zeros((s, s), np.uint8))
      classes.append(int(cls))
      groups.append(int(group))
      yield i, rec

  # ----------------------------------------------------------------- video records

  def _video_examples(self, split: str, videos):
    """videos: (name, iterable of uint8 frames, labels or a function of the frame count,
    mask paths / arrays or None) → one record per frame; per-video facts to metadata."""
    listing = self.info.metadata.setdefault('videos', {}).setdefault(split, [])
    key, s = 0, self.builder_config.size
    for name, frames, labels, masks in videos:
      n = 0
      for n, frame in enumerate(frames, 1):
        rec = {'image': to_frame(frame, self.builder_config, f'{name} frame {n}'),
               'mask': np.zeros((s, s), np.uint8)}
        if masks is not None:
          if n > len(masks):
            raise UserError(f'{name}: more frames than pixel masks ({len(masks)}); frames '
                            f'and ground truth do not match')
          m = masks[n - 1]
          rec['mask'] = to_mask(formats.read_image(m) if isinstance(m, str) else m,
                                self.builder_config)
        yield key, rec
        key += 1
      if masks is not None and n != len(masks):
        raise UserError(f'{name}: {n} frames but {len(masks)} pixel masks; frames and ground '
                        f'truth do not match')
      lab = labels(n) if callable(labels) else np.asarray(labels)
      if len(lab) != n:
        raise UserError(f'{name}: {n} frames but {len(lab)} frame labels; frames and ground '
                        f'truth do not match')
      listing.append({'name': name, 'length': n, 'anomalous': _runs(lab),
                      'has_mask': masks is not None})

  def _split_generators(self, dl_manager):
    return {split: self._generate_examples(examples)
            for split, examples in self._splits(self._manual(dl_manager)).items()}

  def _generate_examples(self, examples):
    """(key, record) pairs of a split; `_splits` of each dataset builds them."""
    yield from examples


def _runs(labels) -> list[list[int]]:
  """0/1 labels → [[start, stop), ...] runs of 1s."""
  x = np.concatenate([[0], np.asarray(labels, np.int8) > 0, [0]]).astype(np.int8)
  edges = np.flatnonzero(np.diff(x))
  return [[int(a), int(b)] for a, b in zip(edges[::2], edges[1::2])]


def labels_from_runs(runs, length: int) -> np.ndarray:
  out = np.zeros(length, np.int32)
  for a, b in runs:
    out[a:b] = 1
  return out


# --------------------------------------------------------------------------- images

class VadMnist(_Builder, skip_registration=True):
  """MNIST from its four IDX files (one-class protocol: seed 002 §1.4, seed 003 Tab. 1)."""
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Place MNIST's four IDX files (gzip-compressed or not) in the manual folder (data.manual_dir):
  train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz
  t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz
from http://yann.lecun.com/exdb/mnist/ (or any mirror)."""
  CLASS_NAMES = [str(i) for i in range(10)]

  def _splits(self, root):
    self.info.metadata['class_names'] = self.CLASS_NAMES
    out = {}
    for split, prefix in (('train', 'train'), ('test', 't10k')):
      paths = [find(root, rf'{prefix}-{kind}[-.]idx{d}-ubyte(\.gz)?', False,
                    f'{prefix} {kind} IDX file', self.MANUAL_DOWNLOAD_INSTRUCTIONS)
               for kind, d in (('images', 3), ('labels', 1))]
      images, labels = formats.read_idx(paths[0]), formats.read_idx(paths[1])
      if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise UserError(f'{paths[0]} and {paths[1]}: expected N×28×28 images and N labels, '
                        f'got {images.shape} and {labels.shape}')
      out[split] = self._image_examples(
          split, ((im, int(c), -1, None) for im, c in zip(images, labels)))
    return out


class VadFashionMnist(VadMnist, skip_registration=True):
  """Fashion-MNIST: MNIST's IDX layout, ten clothing classes."""
  MANUAL_DOWNLOAD_INSTRUCTIONS = VadMnist.MANUAL_DOWNLOAD_INSTRUCTIONS.replace(
      "MNIST's", "Fashion-MNIST's").replace(
          'http://yann.lecun.com/exdb/mnist/ (or any mirror)',
          'https://github.com/zalandoresearch/fashion-mnist (data/fashion)')
  CLASS_NAMES = ['t-shirt', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt',
                 'sneaker', 'bag', 'ankle boot']


class VadCifar10(_Builder, skip_registration=True):
  """CIFAR-10 from its python pickle batches."""
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Extract cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html) into the manual
folder: cifar-10-batches-py/data_batch_1 … data_batch_5 and test_batch."""
  CLASS_NAMES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse',
                 'ship', 'truck']

  def _splits(self, root):
    self.info.metadata['class_names'] = self.CLASS_NAMES
    names = {'train': [f'data_batch_{i}' for i in range(1, 6)], 'test': ['test_batch']}
    out = {}
    for split, files in names.items():
      batches = [formats.read_cifar_batch(find(root, f, False, f'CIFAR-10 batch {f}',
                                               self.MANUAL_DOWNLOAD_INSTRUCTIONS))
                 for f in files]
      images = np.concatenate([b[0] for b in batches])
      labels = np.concatenate([b[1] for b in batches])
      out[split] = self._image_examples(
          split, ((im, int(c), -1, None) for im, c in zip(images, labels)))
    return out


class VadMvtec(_Builder, skip_registration=True):
  """MVTec AD: per category, train/good and test/<defect> PNGs with ground_truth masks."""
  HAS_MASK = True
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Extract mvtec_anomaly_detection.tar.xz (https://www.mvtec.com/company/research/datasets/mvtec-ad)
into the manual folder, one folder per category (any subset of the 15):
  <category>/train/good/*.png
  <category>/test/good/*.png, <category>/test/<defect>/*.png
  <category>/ground_truth/<defect>/<image stem>_mask.png"""

  def _splits(self, root):
    cats = {}
    for dirpath, dirnames, _ in os.walk(root):
      for d in dirnames:
        if d in MVTEC_CATEGORIES and os.path.isdir(os.path.join(dirpath, d, 'train', 'good')):
          cats.setdefault(d, os.path.join(dirpath, d))
    if not cats:
      raise UserError(f'no MVTec category folder (<category>/train/good) under {root}.\n'
                      f'{self.MANUAL_DOWNLOAD_INSTRUCTIONS}')
    names, groups = ['good'], sorted(cats)
    train, test = [], []
    for g, cat in enumerate(groups):
      base = cats[cat]
      train += [(p, 0, g, None) for p in self._pngs(os.path.join(base, 'train', 'good'))]
      test_dir = os.path.join(base, 'test')
      if not os.path.isdir(test_dir):
        raise UserError(f'{test_dir} is missing.\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}')
      for defect in sorted(os.listdir(test_dir)):
        if not os.path.isdir(os.path.join(test_dir, defect)):
          continue
        paths = self._pngs(os.path.join(test_dir, defect))
        if defect == 'good':
          test += [(p, 0, g, None) for p in paths]
          continue
        names.append(f'{cat}/{defect}')
        for p in paths:
          stem = os.path.splitext(os.path.basename(p))[0]
          mask = os.path.join(base, 'ground_truth', defect, f'{stem}_mask.png')
          if not os.path.isfile(mask):
            raise UserError(f'{p} has no ground-truth mask {mask}; MVTec gives one per '
                            f'defective test image')
          test.append((p, len(names) - 1, g, mask))
    self.info.metadata.update(class_names=names, group_names=groups)
    return {'train': self._image_examples('train', train),
            'test': self._image_examples('test', test)}

  @staticmethod
  def _pngs(folder):
    paths = formats.files_with(folder, formats.IMAGE_EXTENSIONS)
    if not paths:
      raise UserError(f'no images in {folder}')
    return paths


class VadHam10000(_Builder, skip_registration=True):
  """HAM10000 dermatoscopy: images + metadata CSV; NV is the normal class (seed 001 §4.2.1)."""
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Place HAM10000 (https://doi.org/10.7910/DVN/DBW86T) in the manual folder:
  HAM10000_metadata.csv (columns lesion_id, image_id, dx, ...)
  HAM10000_images_part_1/*.jpg and HAM10000_images_part_2/*.jpg (any folders below it)"""

  def _splits(self, root):
    csv_path = find(root, r'HAM10000_metadata(\.csv)?', False, 'HAM10000 metadata CSV',
                    self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    images = {}
    for dirpath, _, files in os.walk(root):
      for f in files:
        if f.lower().endswith(('.jpg', '.jpeg', '.png')):
          images.setdefault(os.path.splitext(f)[0], os.path.join(dirpath, f))
    items = []
    with open(csv_path, newline='') as f:
      reader = csv.DictReader(f)
      missing_cols = {'image_id', 'dx'} - set(reader.fieldnames or ())
      if missing_cols:
        raise UserError(f'{csv_path} lacks the columns {sorted(missing_cols)}')
      for line, row in enumerate(reader, 2):
        dx = row['dx'].strip().lower()
        if dx not in HAM_CLASSES:
          raise UserError(f'{csv_path}:{line}: unknown dx {dx!r}; expected one of '
                          f'{HAM_CLASSES}')
        if row['image_id'] not in images:
          raise UserError(f'{csv_path}:{line}: image {row["image_id"]}.jpg is not under '
                          f'{root}')
        items.append((images[row['image_id']], HAM_CLASSES.index(dx), -1, None))
    self.info.metadata['class_names'] = HAM_CLASSES
    return {'data': self._image_examples('data', items)}


class VadDdds(_Builder, skip_registration=True):
  """Daytime Driver Distraction: one folder per class (`normal` first), optionally one
  sub-folder per driver (seed 001 §4.2.2: 16 drivers' normal images for training)."""
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Place the Driver Distraction images in the manual folder, one folder per class:
  normal/, talking/, texting/, operating_gps/ (any names; `normal` is required),
each holding images, or one sub-folder per driver holding that driver's images."""

  def _splits(self, root):
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if 'normal' not in classes or len(classes) < 2:
      raise UserError(f'{root} must hold a normal/ folder and at least one anomalous class '
                      f'folder, found {classes}.\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}')
    classes.remove('normal')
    classes = ['normal', *classes]
    drivers, items = [], []
    for c, name in enumerate(classes):
      folder = os.path.join(root, name)
      subdirs = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
      groups = [(d, os.path.join(folder, d)) for d in subdirs] or [(None, folder)]
      for driver, path in groups:
        if driver is not None and driver not in drivers:
          drivers.append(driver)
        g = drivers.index(driver) if driver is not None else -1
        paths = formats.files_with(path, formats.IMAGE_EXTENSIONS)
        if not paths:
          raise UserError(f'no images in {path}')
        items += [(p, c, g, None) for p in paths]
    self.info.metadata.update(class_names=classes, group_names=drivers)
    return {'data': self._image_examples('data', items)}


# --------------------------------------------------------------------------- videos

class _UcsdPed(_Builder, skip_registration=True):
  IS_VIDEO = True
  PED = 0

  def _splits(self, root):
    n = self.PED
    base = find(root, f'UCSDped{n}', True, f'UCSDped{n} folder', self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    out = {}
    for split, folder in (('train', 'Train'), ('test', 'Test')):
      parent = os.path.join(base, folder)
      if not os.path.isdir(parent):
        raise UserError(f'{parent} is missing.\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}')
      vids = sorted(d for d in os.listdir(parent) if re.fullmatch(rf'{folder}\d+', d))
      if not vids:
        raise UserError(f'no {folder}NNN video folders in {parent}.\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}')
      ranges = None
      if split == 'test':
        m_file = os.path.join(parent, f'UCSDped{n}.m')
        if not os.path.isfile(m_file):
          raise UserError(f'the ground truth {m_file} is missing.\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}')
        ranges = formats.parse_ucsd_m(m_file)
        if len(ranges) != len(vids):
          raise UserError(f'{m_file} lists {len(ranges)} videos but {parent} holds '
                          f'{len(vids)} Test folders; they must match one to one')
      # a list, so each split's videos are fixed now (the generators run later)
      out[split] = self._video_examples(split, [self._video(parent, v, ranges, i)
                                                for i, v in enumerate(vids)])
    return out

  @staticmethod
  def _video(parent, name, ranges, i):
    paths = formats.files_with(os.path.join(parent, name), ('.tif', '.tiff'))
    if not paths:
      raise UserError(f'no .tif frames in {os.path.join(parent, name)}')
    gt_dir = os.path.join(parent, f'{name}_gt')
    masks = (formats.files_with(gt_dir, formats.IMAGE_EXTENSIONS)
             if ranges is not None and os.path.isdir(gt_dir) else None)
    labels = ((lambda t: formats.ranges_to_labels(ranges[i], t, f'{parent}/{name}'))
              if ranges is not None else (lambda t: np.zeros(t, np.int32)))
    return name, (formats.read_image(p) for p in paths), labels, masks


_UCSD_TEXT = """\
Extract UCSD_Anomaly_Dataset.tar.gz (http://www.svcl.ucsd.edu/projects/anomaly/dataset.html)
into the manual folder, keeping its layout:
  UCSDped{n}/Train/Train001/001.tif …
  UCSDped{n}/Test/Test001/001.tif …, UCSDped{n}/Test/Test001_gt/001.bmp … (where present)
  UCSDped{n}/Test/UCSDped{n}.m (the frame-level ground truth)"""


class VadUcsdPed1(_UcsdPed, skip_registration=True):
  """UCSD Ped1 (seed 001 §4.2.5): 34 train, 36 test videos of 200 frames, 158×238 grey."""
  PED = 1
  MANUAL_DOWNLOAD_INSTRUCTIONS = _UCSD_TEXT.format(n=1)


class VadUcsdPed2(_UcsdPed, skip_registration=True):
  """UCSD Ped2 (seed 001 §4.2.5): 16 train, 12 test videos, 240×360 grey."""
  PED = 2
  MANUAL_DOWNLOAD_INSTRUCTIONS = _UCSD_TEXT.format(n=2)


class VadAvenue(_Builder, skip_registration=True):
  """CUHK Avenue (seed 001 §4.2.4): 16 training and 21 testing .avi videos; pixel masks per
  test frame in `testing_label_mask/<n>_label.mat` (frame label = any pixel anomalous)."""
  IS_VIDEO = True
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Extract Avenue_Dataset.zip and its ground truth (ground_truth_demo.zip,
http://www.cse.cuhk.edu.hk/leojia/projects/detectabnormal/dataset.html) into the manual folder:
  training_videos/01.avi … 16.avi, testing_videos/01.avi … 21.avi
  testing_label_mask/1_label.mat … 21_label.mat (variable volLabel)"""

  def _splits(self, root):
    out = {}
    for split, folder in (('train', 'training_videos'), ('test', 'testing_videos')):
      path = find(root, folder, True, f'{folder} folder', self.MANUAL_DOWNLOAD_INSTRUCTIONS)
      vids = formats.files_with(path, formats.VIDEO_EXTENSIONS)
      if not vids:
        raise UserError(f'no videos in {path}.\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}')
      masks_dir = (find(root, 'testing_label_mask', True, 'testing_label_mask folder',
                        self.MANUAL_DOWNLOAD_INSTRUCTIONS) if split == 'test' else None)
      out[split] = self._video_examples(split, [self._video(v, masks_dir) for v in vids])
    return out

  @staticmethod
  def _video(path, masks_dir):
    name = os.path.splitext(os.path.basename(path))[0]
    if masks_dir is None:
      return name, formats.iter_video(path), lambda t: np.zeros(t, np.int32), None
    mat = os.path.join(masks_dir, f'{int(name)}_label.mat') if name.isdigit() else ''
    if not os.path.isfile(mat):
      raise UserError(f'test video {path} has no ground truth {mat or name + "_label.mat"}')
    masks = formats.read_avenue_masks(mat)
    labels = masks.reshape(len(masks), -1).any(axis=1).astype(np.int32)
    return name, formats.iter_video(path), labels, masks


class VadSubway(_Builder, skip_registration=True):
  """Subway Entrance / Exit (seed 001 §4.2.6): one long video each; the first 15 (entrance)
  or 5 (exit) minutes train, the rest tests. The ground truth is event frames; each labels
  the frames within ±`window` of it (the thesis: 15; the seed 001 code: 10 for entrance)."""
  IS_VIDEO = True
  TRAIN_MINUTES = {'entrance': 15.0, 'exit': 5.0}
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Place the Subway videos (Adam et al., PAMI 2008) and their event annotations in the manual folder:
  a video whose name contains `entrance` (or `exit`), e.g. subway_entrance_turnstiles.AVI
  entrance_annotations.json (or exit_…): anomalous event frame numbers (0-based, in the whole
  video) as a JSON list or a JSON object of lists (the seed 001 code's format), or a .txt
  file of frame numbers."""
  WINDOW = 15      # the stored labels' window; loading re-labels with data.label_window

  def _splits(self, root):
    cat = self.builder_config.category
    if cat not in self.TRAIN_MINUTES:
      raise UserError(f"subway categories are 'entrance' and 'exit', got {cat!r}")
    video = find(root, rf'(?i).*{cat}.*\.(avi|mp4|mov|mkv|mpg|mpeg)', False,
                 f'{cat} video', self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    notes = find(root, rf'(?i){cat}.*annotations?\.(json|txt)', False, f'{cat} annotations',
                 self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    events = read_events(notes)
    n_train = int(round(self.TRAIN_MINUTES[cat] * 60 * formats.video_fps(video)))
    window = self.WINDOW
    self.info.metadata.update(train_frames=n_train, events=events.tolist())

    def part(lo, hi):
      for i, frame in enumerate(formats.iter_video(video)):
        if i >= hi:
          return
        if i >= lo:
          yield frame

    def test_labels(t):
      return event_labels(events, n_train, t, window)

    big = np.iinfo(np.int64).max
    return {'train': self._video_examples('train', [(f'{cat}_train', part(0, n_train),
                                                     lambda t: np.zeros(t, np.int32), None)]),
            'test': self._video_examples('test', [(f'{cat}_test', part(n_train, big),
                                                   test_labels, None)])}


def event_labels(events, first: int, length: int, window: int) -> np.ndarray:
  """Labels of frames first … first + length − 1: 1 within ±window of an event frame."""
  f = np.arange(first, first + length)
  lo = np.searchsorted(events, f - window, side='left')
  hi = np.searchsorted(events, f + window, side='right')
  return (hi > lo).astype(np.int32)


def read_events(path: str) -> np.ndarray:
  """Event frame numbers from a JSON list / object of lists, or whitespace/comma text."""
  try:
    with open(path) as f:
      text = f.read()
    if path.lower().endswith('.json'):
      data = json.loads(text)
      values = ([v for vs in data.values() for v in vs] if isinstance(data, dict) else data)
    else:
      values = text.replace(',', ' ').split()
    events = np.array(sorted(int(v) for v in values), np.int64)
  except (OSError, ValueError, TypeError, AttributeError) as e:
    raise UserError(f'cannot read event annotations {path}: {e}; expected frame numbers as a '
                    f'JSON list, a JSON object of lists, or text') from None
  if (events < 0).any():
    raise UserError(f'{path}: negative frame numbers')
  return events


BUILDERS = {'mnist': VadMnist, 'fashion_mnist': VadFashionMnist, 'cifar10': VadCifar10,
            'mvtec': VadMvtec, 'ham10000': VadHam10000, 'ddds': VadDdds,
            'ucsd_ped1': VadUcsdPed1, 'ucsd_ped2': VadUcsdPed2, 'avenue': VadAvenue,
            'subway': VadSubway}


def make_builder(name: str, cfg: FrameConfig, data_dir: str):
  """The builder of dataset `name` for `cfg` (not prepared)."""
  cls = BUILDERS[name]
  # TFDS refuses a custom config named as one of the builder's own: pass that one by name
  known = {c.name for c in cls.BUILDER_CONFIGS}
  return cls(config=cfg.name if cfg.name in known else cfg, data_dir=data_dir,
             file_format='array_record')


def prepare(name: str, cfg: FrameConfig, data_dir: str, manual_dir: str):
  """The builder of dataset `name` for `cfg`, prepared (built from `manual_dir` on first
  use) in `data_dir`."""
  builder = make_builder(name, cfg, data_dir)
  if not builder.is_prepared():
    if not manual_dir:
      raise UserError(f'dataset {name!r} is not prepared in {data_dir} and data.manual_dir '
                      f'is not set; point it at the raw files.\n'
                      f'{builder.MANUAL_DOWNLOAD_INSTRUCTIONS}')
    logging.info('preparing %s (%s) from the files in %s into %s; nothing is downloaded',
                 name, cfg.name, manual_dir, data_dir)
    with _no_download_chatter():
      builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
          manual_dir=manual_dir))
  return builder


class _DropDownloadLines(std_logging.Filter):
  """TFDS says 'Downloading and preparing dataset' for files a user placed: drop it."""

  def filter(self, record):
    return 'Downloading and preparing' not in str(record.msg)


@contextlib.contextmanager
def _no_download_chatter():
  loggers = [std_logging.getLogger(n) for n in ('absl', 'tensorflow_datasets')]
  drop = _DropDownloadLines()
  for lg in loggers:
    lg.addFilter(drop)
  try:
    yield
  finally:
    for lg in loggers:
      lg.removeFilter(drop)
