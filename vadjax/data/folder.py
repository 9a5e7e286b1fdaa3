"""`folder`: a user's own images, from a folder layout (no code to write).

  <root>/normal/*.png|jpg|jpeg|bmp|tif|tiff      normal images (any sizes)
  <root>/anomalous/<type>/*.<ext>                 anomalous images, one folder per type
  <root>/masks/<type>/<stem>.<ext>                optional pixel masks (non-zero = anomalous),
                                                  named as their anomalous image

Set `data.folder_root` (and `image_size`, `data.channels` 1 or 3, or 0 to decide from the
images: grey if all of them are). Splits, deterministic (`SPLIT_SEED`): the normal images
are split into train / val / test by `data.val_fraction` and `data.test_fraction`; the
anomalous ones into val / test in the proportion val_fraction : test_fraction. Masks are
used (pixel metrics) only if every anomalous image has one; normal images get empty masks.
Images are resized to image_size × image_size with Pillow (bilinear; masks nearest) into
[0, 1], as the real datasets are (builders.to_frame).

  python -m experiments.main --config=experiments/configs/reconstruction.py:dataset=folder,image_size=64 \\
      --config.data.folder_root=/path/to/my_data --workdir=runs/my_data

`folder_video`: a user's own videos.

  <root>/normal/<video>             normal videos: a folder of frame images (sorted by name)
                                    or a video file (.avi, .mp4, ... decoded with PyAV)
  <root>/anomalous/<video>          videos with anomalous frames, same forms
  <root>/labels/<video>.txt         per-frame labels of each anomalous video: one 0 or 1 per
                                    frame (whitespace or commas)
  <root>/masks/<video>/*.png        optional pixel masks, one per frame (non-zero anomalous)

Whole videos are split like images: normal videos into train / val / test by
`data.val_fraction` / `data.test_fraction`, anomalous ones into val / test. The first run
decodes every frame once, resized with Pillow's bilinear filter to image_size (RGB, or grey
with data.channels=1), into the frame store under `data.tfds_dir` (vadjax/data/store.py:
resumable, read back frame by frame, prepared again when the folder's files change); models
see clips (data.video.clip_length, data.video.clip_strides) as on `walkway`, and memory does
not grow with the length of the footage.

  python -m experiments.main --config=experiments/configs/conv_rnn.py:cpu,dataset=folder_video \\
      --config.data.folder_root=/path/to/my_videos --workdir=runs/my_videos
"""

import hashlib
import os

import jax
import numpy as np

from vadjax.data import builders, formats, real, store
from vadjax.data.sources import DATASETS, ArraySource, Splits, register_categories
from vadjax.data.video import ClipSource
from vadjax.registry import UserError

SPLIT_SEED = 1234
LAYOUT = ('expected <root>/normal/*.png (or jpg, bmp, tif), <root>/anomalous/<type>/*.png '
          'and optionally <root>/masks/<type>/<same name>.png')


def _images_in(folder: str) -> list[str]:
  return formats.files_with(folder, formats.IMAGE_EXTENSIONS)


def scan(root: str) -> tuple[list[str], dict[str, list[str]], dict[str, str]]:
  """(normal paths, {type: anomalous paths}, {anomalous path: mask path}) of a folder."""
  if not root:
    raise UserError('dataset folder needs data.folder_root, e.g. '
                    '--config.data.folder_root=/path/to/data; ' + LAYOUT)
  normal_dir = os.path.join(root, 'normal')
  if not os.path.isdir(normal_dir):
    raise UserError(f'{normal_dir} is not a folder; {LAYOUT}')
  normal = _images_in(normal_dir)
  if not normal:
    raise UserError(f'no images in {normal_dir}; {LAYOUT}')
  anomalous, masks = {}, {}
  anomalous_dir = os.path.join(root, 'anomalous')
  if os.path.isdir(anomalous_dir):
    for kind in sorted(os.listdir(anomalous_dir)):
      if os.path.isdir(os.path.join(anomalous_dir, kind)):
        paths = _images_in(os.path.join(anomalous_dir, kind))
        if paths:
          anomalous[kind] = paths
  if not anomalous:
    raise UserError(f'no anomalous images under {anomalous_dir}: the validation and test '
                    f'splits need some; {LAYOUT}')
  for kind, paths in anomalous.items():
    mask_dir = os.path.join(root, 'masks', kind)
    if not os.path.isdir(mask_dir):
      continue
    by_stem = {os.path.splitext(os.path.basename(p))[0]: p for p in _images_in(mask_dir)}
    stems = {os.path.splitext(os.path.basename(p))[0] for p in paths}
    orphans = sorted(set(by_stem) - stems)
    if orphans:
      raise UserError(f'masks {orphans[:3]} in {mask_dir} have no image of the same name in '
                      f'{os.path.join(anomalous_dir, kind)}')
    for p in paths:
      stem = os.path.splitext(os.path.basename(p))[0]
      if stem in by_stem:
        masks[p] = by_stem[stem]
  return normal, anomalous, masks


def _split(n: int, val_fraction: float, test_fraction: float, rng):
  idx = rng.permutation(n)
  n_test, n_val = int(round(n * test_fraction)), int(round(n * val_fraction))
  return np.sort(idx[n_test + n_val:]), np.sort(idx[n_test:n_test + n_val]), np.sort(idx[:n_test])


@DATASETS.register('folder')
def build_folder(category: str, image_size: int, data_cfg) -> Splits:
  if category != 'default':
    raise UserError(f"folder has one category, 'default'; got {category!r}")
  normal, anomalous, masks = scan(data_cfg.folder_root)
  paths = normal + [p for kind in anomalous.values() for p in kind]
  decoded = [formats.read_image(p) for p in paths]
  channels = data_cfg.channels or (1 if all(a.ndim == 2 for a in decoded) else 3)
  if channels not in (1, 3):
    raise UserError(f'data.channels must be 0 (auto), 1 or 3, got {channels}')
  cfg = builders.frame_config(image_size, channels)     # the real datasets' resize
  kinds = np.array([0] * len(normal) + [i + 1 for i, k in enumerate(anomalous)
                                        for _ in anomalous[k]], np.int32)
  images = np.stack([builders.to_frame(a, cfg, p) for a, p in zip(decoded, paths)])
  images = images.astype(np.float32) / 255.0
  del decoded
  n_anomalous = len(paths) - len(normal)
  has_masks = len(masks) == n_anomalous
  mask_arr = np.zeros((len(paths), image_size, image_size), np.float32)
  if has_masks:
    for i, p in enumerate(paths[len(normal):], start=len(normal)):
      mask_arr[i] = builders.to_mask(formats.read_image(masks[p]), cfg)

  rng = np.random.default_rng(SPLIT_SEED)
  tr, va, te = _split(len(normal), data_cfg.val_fraction, data_cfg.test_fraction, rng)
  share = data_cfg.val_fraction / max(data_cfg.val_fraction + data_cfg.test_fraction, 1e-9)
  _, a_va, a_te = _split(n_anomalous, share, 1 - share, rng)
  a_va, a_te = a_va + len(normal), a_te + len(normal)

  def make(idx):
    fields = dict(image=images[idx], label=(kinds[idx] > 0).astype(np.int32), kind=kinds[idx])
    if has_masks:
      fields['mask'] = mask_arr[idx]
    return ArraySource(**fields)

  return Splits(make(tr), make(np.concatenate([va, a_va])), make(np.concatenate([te, a_te])),
                kind_names=['normal', *anomalous], has_masks=has_masks,
                image_shape=(image_size, image_size, channels))


register_categories('folder', lambda: ['default'])


# --------------------------------------------------------------------------- videos

VIDEO_LAYOUT = ('expected <root>/normal/<video> and <root>/anomalous/<video>, each video a '
                'folder of frame images or a video file (.avi, .mp4, ...), per-frame labels '
                'of every anomalous video in <root>/labels/<video>.txt (one 0 or 1 per frame) '
                'and optionally pixel masks in <root>/masks/<video>/ (one image per frame)')


def _video_items(folder: str) -> list[str]:
  if not os.path.isdir(folder):
    return []
  return sorted(os.path.join(folder, n) for n in os.listdir(folder) if not n.startswith('.')
                and (os.path.isdir(os.path.join(folder, n))
                     or n.lower().endswith(formats.VIDEO_EXTENSIONS)))


def _video_name(path: str) -> str:
  base = os.path.basename(path)
  return base if os.path.isdir(path) else os.path.splitext(base)[0]


def _frame_labels(root: str, name: str, n: int) -> np.ndarray:
  path = os.path.join(root, 'labels', f'{name}.txt')
  if not os.path.isfile(path):
    raise UserError(f'anomalous video {name!r} has no label file {path} (one 0 or 1 per '
                    f'frame)')
  try:
    with open(path) as f:
      labels = np.array([int(v) for v in f.read().replace(',', ' ').split()], np.int32)
  except ValueError as e:
    raise UserError(f'{path}: expected one 0 or 1 per frame ({e})') from None
  if len(labels) != n or not np.isin(labels, (0, 1)).all():
    raise UserError(f'{path}: expected {n} labels of 0 or 1 (one per frame of {name!r}), got '
                    f'{len(labels)} values {sorted(set(labels.tolist()))[:5]}')
  return labels


def _video_spec(root: str, path: str, anomalous: bool) -> store.VideoSpec:
  """One of a user's videos for the store; what can be checked without decoding is."""
  name = _video_name(path)
  if os.path.isdir(path):
    files = formats.files_with(path, formats.IMAGE_EXTENSIONS)
    if not files:
      raise UserError(f'no frame images in {path}; {VIDEO_LAYOUT}')
    frames, length = (lambda start: (formats.read_image(f) for f in files[start:])), len(files)
  else:
    files, length = [path], formats.video_length(path)
    frames = lambda start: formats.iter_video(path, start=start)     # noqa: E731
  label_file = os.path.join(root, 'labels', f'{name}.txt')
  if anomalous and not os.path.isfile(label_file):
    _frame_labels(root, name, 0)                 # the one-line error
  labels = ((lambda n, m: _frame_labels(root, name, n)) if anomalous
            else (lambda n, m: np.zeros(n, np.int32)))
  mask_dir = os.path.join(root, 'masks', name)
  masks = (formats.files_with(mask_dir, formats.IMAGE_EXTENSIONS) if os.path.isdir(mask_dir)
           else None)
  if masks is not None and length is not None and len(masks) != length:
    raise UserError(f'{mask_dir} holds {len(masks)} masks for the {length} frames of '
                    f'{path}; give one mask per frame')
  return store.VideoSpec(name, frames, labels, (lambda: masks) if masks is not None else None,
                         files=files + (masks or []),
                         annotations=[label_file] if anomalous else [], length=length)


def _listing(root: str) -> store.Listing:
  normal = _video_items(os.path.join(root, 'normal'))
  anomalous = _video_items(os.path.join(root, 'anomalous'))
  if not normal or not anomalous:
    raise UserError(f'{root}: found {len(normal)} normal and {len(anomalous)} anomalous '
                    f'videos, need both; {VIDEO_LAYOUT}')
  return store.Listing({'normal': [_video_spec(root, p, False) for p in normal],
                        'anomalous': [_video_spec(root, p, True) for p in anomalous]})


@DATASETS.register('folder_video')
def build_folder_video(category: str, image_size: int, data_cfg) -> Splits:
  """A user's own videos, prepared once into the frame store (vadjax/data/store.py) at the
  run's size; splits like `folder`, by whole videos (module docstring)."""
  if category != 'default':
    raise UserError(f"folder_video has one category, 'default'; got {category!r}")
  root = data_cfg.folder_root
  if not root or not os.path.isdir(root):
    raise UserError(f'dataset folder_video needs data.folder_root to be a folder, got '
                    f'{root!r}; {VIDEO_LAYOUT}')
  channels = data_cfg.channels or 3
  if channels not in (1, 3):
    raise UserError(f'data.channels must be 0 (RGB), 1 or 3, got {channels}')
  root = os.path.abspath(os.path.expanduser(root))
  scope = (f'{os.path.basename(root.rstrip(os.sep)) or "root"}-'
           f'{hashlib.sha256(root.encode()).hexdigest()[:8]}')
  st = store.open_store('folder_video', builders.frame_config(image_size, channels),
                        real.tfds_dir(data_cfg), root, _listing, VIDEO_LAYOUT, scope=scope,
                        process_index=jax.process_index())
  normal, anomalous = st.videos('normal', masks='zeros_if_none'), st.videos('anomalous')
  rng = np.random.default_rng(SPLIT_SEED)
  tr, va, te = _split(len(normal), data_cfg.val_fraction, data_cfg.test_fraction, rng)
  share = data_cfg.val_fraction / max(data_cfg.val_fraction + data_cfg.test_fraction, 1e-9)
  _, a_va, a_te = _split(len(anomalous), share, 1 - share, rng)
  train = [normal[i] for i in tr]
  val = [normal[i] for i in va] + [anomalous[i] for i in a_va]
  test = [normal[i] for i in te] + [anomalous[i] for i in a_te]
  if not train or not val or not test:
    raise UserError(f'{root}: {len(normal)} normal and {len(anomalous)} anomalous videos '
                    f'give {len(train)} train, {len(val)} val and {len(test)} test videos; '
                    f'add videos or change data.val_fraction / data.test_fraction')
  length = data_cfg.video.clip_length
  return Splits(ClipSource(train, length, data_cfg.video.clip_strides),
                ClipSource(val, length, per_frame=True), ClipSource(test, length, per_frame=True),
                kind_names=['normal', 'anomalous'],
                has_masks=all(v.masks is not None for v in test),
                image_shape=(length, image_size, image_size, channels))


register_categories('folder_video', lambda: ['default'])
