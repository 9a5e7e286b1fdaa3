"""TFDS builders of the real image datasets (the shared parts: vadjax/data/frames.py)."""

import csv
import os

import numpy as np

from vadjax.data import formats
from vadjax.data.frames import HAM_CLASSES, MVTEC_CATEGORIES, FrameBuilder, find
from vadjax.registry import UserError


class VadMnist(FrameBuilder, skip_registration=True):
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


class VadCifar10(FrameBuilder, skip_registration=True):
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


class VadMvtec(FrameBuilder, skip_registration=True):
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


class VadHam10000(FrameBuilder, skip_registration=True):
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


class VadDdds(FrameBuilder, skip_registration=True):
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
