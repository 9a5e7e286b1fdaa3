"""TFDS builders for the seeds' real image datasets, from the files a user places locally,
and the frame conversion every real dataset shares (the video datasets are prepared into
vadjax/data/store.py with the same `FrameConfig`, `to_frame` and `to_mask`).

No TensorFlow: `file_format='array_record'` and `tfds.features.Tensor` features only, read
back with random access through `as_data_source()` (Grain reads those directly). Every
dataset is a manual download (`MANUAL_DOWNLOAD_INSTRUCTIONS`); `prepare()` builds it once
per (size, channels, crop) into `data_dir` and later runs reuse it. TFDS writes into a
temporary folder and renames it only when every split is complete, so an error (missing or
corrupt file, frames that do not match their labels) never leaves a partial dataset.

Records, in generation order (`disable_shuffling`): image uint8 (S, S, C), class int32,
group int32 (MVTec category, DDDS driver; -1 when none), mask uint8 (S, S) (MVTec).
`metadata` also holds the per-record classes and groups, so protocols can split without
decoding a single image.

Frames are cropped (optional; `CODE_CROPS` are the seed 001 code's crops), converted to
grey with Pillow's ITU-R 601-2 luma (as torchvision's `Grayscale`) or to RGB, and resized
with Pillow's bilinear filter (as torchvision's `Resize`); masks with nearest neighbour.
"""


import dataclasses
import os
import re

import numpy as np
import tensorflow_datasets as tfds
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


def parse_crop(text: str, name: str) -> tuple:
  text = (text or '').strip()
  if not text or text == 'none':
    return ()
  if text == 'code':
    if name not in CODE_CROPS:
      raise UserError(f"data.crop='code' exists for {sorted(CODE_CROPS)}, not {name}")
    return CODE_CROPS[name]
  try:
    crop = tuple(int(v) for v in text.replace(',', ' ').replace(';', ' ').split())
  except ValueError:
    crop = ()
  if len(crop) != 4 or min(crop) < 0 or crop[2] == 0 or crop[3] == 0:
    raise UserError(f"data.crop must be '', 'code' or 'top left height width', got {text!r}")
  return crop


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


class FrameBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Shared parts: config, features, manual dir checks."""
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}
  BUILDER_CONFIGS = [frame_config(64, 1)]
  HAS_MASK = False

  def _info(self):
    s, c = self.builder_config.size, self.builder_config.channels
    feats = {'image': tfds.features.Tensor(shape=(s, s, c), dtype=np.uint8),
             'class': tfds.features.Tensor(shape=(), dtype=np.int32),
             'group': tfds.features.Tensor(shape=(), dtype=np.int32)}
    if self.HAS_MASK:
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

  def _split_generators(self, dl_manager):
    return {split: self._generate_examples(examples)
            for split, examples in self._splits(self._manual(dl_manager)).items()}

  def _generate_examples(self, examples):
    """(key, record) pairs of a split; `_splits` of each dataset builds them."""
    yield from examples


def label_runs(labels) -> list[list[int]]:
  """0/1 labels → [[start, stop), ...] runs of 1s."""
  x = np.concatenate([[0], np.asarray(labels, np.int8) > 0, [0]]).astype(np.int8)
  edges = np.flatnonzero(np.diff(x))
  return [[int(a), int(b)] for a, b in zip(edges[::2], edges[1::2])]


def labels_from_runs(runs, length: int) -> np.ndarray:
  out = np.zeros(length, np.int32)
  for a, b in runs:
    out[a:b] = 1
  return out
