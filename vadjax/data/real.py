"""The real datasets as `Splits`: protocols over the prepared data (image datasets: TFDS
builders, builders.py; video datasets: the frame store, store.py and video_datasets.py).

Config keys (`data.*`): `manual_dir` (the raw files; needed the first time only),
`tfds_dir` (prepared data; default ~/tensorflow_datasets), `channels` (0 = the dataset's
own: grey for UCSD, Subway, MNIST, Fashion-MNIST, DDDS; RGB otherwise), `crop` ('' none,
'code' the seed 001 code's crop, or 'top left height width' in source pixels),
`val_fraction`, `label_window` (Subway), `source` ('files', or 'tfds' for MNIST,
Fashion-MNIST, CIFAR-10 already prepared from the TFDS catalog in `tfds_dir`).

Protocols (SPLIT_SEED fixes every split; training seeds vary the model only):
  mnist, fashion_mnist, cifar10   one-class (METHODS.md §0): the category is the normal
        class; train = its images in the official train split, less a per-class
        `val_fraction` of that split held out as the labelled val set; test = the official
        test split, every other class anomalous.
  mvtec  per category: train = train/good less `val_fraction` (normal val); test = test/,
        with pixel masks (seed 001 §4.2.3: "utilized as such").
  ham10000  NV normal: 6600 NV images (seed 001 §4.2.1; the same share of smaller copies)
        train and validate, the other NV images and every other class test.
  ddds  the normal images of 16 of the 25 drivers (seed 001 §4.2.2; the same share of
        drivers when there are fewer, or of images when there are no driver folders) train
        and validate; everything else tests.
  ucsd_ped1, ucsd_ped2, avenue, subway, shanghaitech   videos as clips (video.ClipSource):
        train = training videos less `val_fraction` of them (normal val; a single training
        video is split in time), test = test videos per frame. Subway test labels are the
        frames within ±label_window of an event (seed 001 §4.2.6: 15). ShanghaiTech's
        category `all_scenes` is the standard protocol (every scene's videos together,
        seed 003 Tab. 2); a scene id (`01` … `13`) takes that scene's videos alone.
"""

import os

import jax
import numpy as np

from vadjax.data import builders, frames, store
from vadjax.data import video_datasets as vd
from vadjax.data.sources import DATASETS, Splits, known_categories, register_categories
from vadjax.data.video import ClipSource, Video
from vadjax.registry import UserError

SPLIT_SEED = 1234
GREY_BY_DEFAULT = {'mnist', 'fashion_mnist', 'ucsd_ped1', 'ucsd_ped2', 'subway', 'ddds'}
CATALOG = {'mnist': 'mnist', 'fashion_mnist': 'fashion_mnist', 'cifar10': 'cifar10'}


def tfds_dir(data_cfg) -> str:
  return os.path.expanduser(data_cfg.tfds_dir or '~/tensorflow_datasets')


def _builder(name: str, image_size: int, data_cfg, category: str = ''):
  channels = data_cfg.channels or (1 if name in GREY_BY_DEFAULT else 3)
  if channels not in (1, 3):
    raise UserError(f'data.channels must be 0 (the dataset default), 1 or 3, got {channels}')
  crop = frames.parse_crop(data_cfg.crop, name)
  cfg = builders.frame_config(image_size, channels, crop, category)
  return builders.prepare(name, cfg, tfds_dir(data_cfg), data_cfg.manual_dir)


class Records:
  """Records of a prepared image split at `indices`, as the source interface wants them:
  float32 images in [0, 1], 0/1 labels, kinds (and masks)."""

  def __init__(self, source, indices, kinds, masks: bool):
    self.source, self.indices = source, np.asarray(indices, np.int64)
    self.kinds, self.masks = np.asarray(kinds, np.int32), masks

  def __len__(self):
    return len(self.indices)

  def __getitem__(self, i):
    rec = self.source[int(self.indices[i])]
    out = {'image': np.asarray(rec['image'], np.float32) / 255.0,
           'label': np.int32(self.kinds[i] > 0), 'kind': self.kinds[i]}
    if self.masks:
      out['mask'] = np.asarray(rec['mask'], np.float32)
    return out

  def array(self, name):
    if name == 'label':
      return (self.kinds > 0).astype(np.int32)
    if name == 'kind':
      return self.kinds
    return np.stack([self[i][name] for i in range(len(self))])


def _split_off(indices, fraction: float, rng):
  """(rest, held out): a `fraction` of `indices`, drawn by `rng`."""
  idx = rng.permutation(np.asarray(indices, np.int64))
  n = int(round(len(idx) * fraction))
  return np.sort(idx[n:]), np.sort(idx[:n])


# --------------------------------------------------------------------------- images

def _one_class(name, category, image_size, data_cfg) -> Splits:
  classes = builders.BUILDERS[name].CLASS_NAMES
  if category not in [str(i) for i in range(len(classes))]:
    raise UserError(f'{name} has normal classes 0..{len(classes) - 1} ({", ".join(classes)}), '
                    f'got {category!r}')
  normal = int(category)
  if data_cfg.source == 'tfds':
    import tensorflow_datasets as tfds
    sources = {s: tfds.data_source(CATALOG[name], split=s, data_dir=tfds_dir(data_cfg))
               for s in ('train', 'test')}
    targets = {s: np.array([int(r['label']) for r in src], np.int32)
               for s, src in sources.items()}
    image_shape = sources['train'][0]['image'].shape
    if image_shape[:2] != (image_size, image_size):
      raise UserError(f'the TFDS catalog {CATALOG[name]} holds {image_shape[0]}×'
                      f'{image_shape[1]} images; set image_size={image_shape[0]} or use '
                      f"data.source='files'")
  elif data_cfg.source == 'files':
    b = _builder(name, image_size, data_cfg)
    sources = b.as_data_source()
    targets = {s: np.asarray(b.info.metadata['records'][s]['class'], np.int32)
               for s in ('train', 'test')}
    image_shape = (image_size, image_size, b.builder_config.channels)
  else:
    raise UserError(f"data.source must be 'files' or 'tfds', got {data_cfg.source!r}")
  rng = np.random.default_rng(SPLIT_SEED)
  train, val = [], []
  for c in range(len(classes)):
    rest, held = _split_off(np.flatnonzero(targets['train'] == c), data_cfg.val_fraction, rng)
    train.append(rest if c == normal else rest[:0])
    val.append(held)
  train, val = np.sort(np.concatenate(train)), np.sort(np.concatenate(val))

  def kinds(t):
    return np.where(t == normal, 0, t + 1)

  test_idx = np.arange(len(targets['test']))
  return Splits(Records(sources['train'], train, kinds(targets['train'][train]), False),
                Records(sources['train'], val, kinds(targets['train'][val]), False),
                Records(sources['test'], test_idx, kinds(targets['test']), False),
                kind_names=['normal'] + [f'class {c}' for c in classes], has_masks=False,
                image_shape=tuple(image_shape))


def _mvtec(category, image_size, data_cfg) -> Splits:
  if category not in builders.MVTEC_CATEGORIES:
    raise UserError(f'mvtec categories are {", ".join(builders.MVTEC_CATEGORIES)}, '
                    f'got {category!r}')
  b = _builder('mvtec', image_size, data_cfg)
  meta = b.info.metadata
  if category not in meta['group_names']:
    raise UserError(f'MVTec category {category!r} was not among the files prepared from '
                    f'{data_cfg.manual_dir or tfds_dir(data_cfg)} (found '
                    f'{meta["group_names"]}); set categories= to those, or add its folder '
                    f'and delete {b.data_dir} to prepare again')
  g = meta['group_names'].index(category)
  src = b.as_data_source()
  rec = {s: {k: np.asarray(v, np.int32) for k, v in meta['records'][s].items()}
         for s in ('train', 'test')}
  names = [n for n in meta['class_names'][1:] if n.startswith(category + '/')]
  local = {meta['class_names'].index(n): i + 1 for i, n in enumerate(names)}
  train_idx = np.flatnonzero(rec['train']['group'] == g)
  train_idx, val_idx = _split_off(train_idx, data_cfg.val_fraction,
                                  np.random.default_rng(SPLIT_SEED))
  test_idx = np.flatnonzero(rec['test']['group'] == g)
  test_kinds = np.array([local.get(int(c), 0) for c in rec['test']['class'][test_idx]])
  return Splits(Records(src['train'], train_idx, np.zeros(len(train_idx)), True),
                Records(src['train'], val_idx, np.zeros(len(val_idx)), True),
                Records(src['test'], test_idx, test_kinds, True),
                kind_names=['normal'] + [n.split('/', 1)[1] for n in names], has_masks=True,
                image_shape=(image_size, image_size, b.builder_config.channels))


def _normal_vs_rest(name, category, image_size, data_cfg) -> Splits:
  """HAM10000 and DDDS: training normals chosen as the seed says; the rest tests."""
  if category != 'default':
    raise UserError(f"{name} has one category, 'default'; got {category!r}")
  b = _builder(name, image_size, data_cfg)
  meta = b.info.metadata
  cls = np.asarray(meta['records']['data']['class'], np.int32)
  groups = np.asarray(meta['records']['data']['group'], np.int32)
  rng = np.random.default_rng(SPLIT_SEED)
  normal = np.flatnonzero(cls == 0)
  if name == 'ham10000':
    n_train = min(6600, int(len(normal) * 6600 / 6705))
    chosen = rng.permutation(normal)[:n_train]
  elif (groups >= 0).any():
    drivers = np.unique(groups[groups >= 0])
    n_drivers = max(1, int(round(len(drivers) * 16 / 25)))
    picked = rng.permutation(drivers)[:n_drivers]
    chosen = normal[np.isin(groups[normal], picked)]
  else:
    chosen = rng.permutation(normal)[:int(round(len(normal) * 16 / 25))]
  train_idx, val_idx = _split_off(chosen, data_cfg.val_fraction, rng)
  test_idx = np.setdiff1d(np.arange(len(cls)), chosen)
  src = b.as_data_source('data')
  return Splits(Records(src, train_idx, np.zeros(len(train_idx)), False),
                Records(src, val_idx, np.zeros(len(val_idx)), False),
                Records(src, test_idx, cls[test_idx], False),
                kind_names=list(meta['class_names']), has_masks=False,
                image_shape=(image_size, image_size, b.builder_config.channels))


# --------------------------------------------------------------------------- videos

VIDEOS = {'ucsd_ped1': vd.ucsd(1), 'ucsd_ped2': vd.ucsd(2),
          'avenue': (vd.avenue, vd.AVENUE_INSTRUCTIONS),
          'subway': (vd.subway, vd.SUBWAY_INSTRUCTIONS),
          'shanghaitech': (vd.shanghaitech, vd.SHANGHAITECH_INSTRUCTIONS)}
ALL_SCENES = 'all_scenes'


def video_store(name: str, image_size: int, data_cfg, category: str = '') -> store.Store:
  """The prepared frames of a real video dataset (prepared from data.manual_dir on first
  use, or again when its files changed; vadjax/data/store.py)."""
  channels = data_cfg.channels or (1 if name in GREY_BY_DEFAULT else 3)
  if channels not in (1, 3):
    raise UserError(f'data.channels must be 0 (the dataset default), 1 or 3, got {channels}')
  crop = frames.parse_crop(data_cfg.crop, name)
  cfg = builders.frame_config(image_size, channels, crop, category if name == 'subway' else '')
  listing, instructions = VIDEOS[name]
  return store.open_store(name, cfg, tfds_dir(data_cfg), data_cfg.manual_dir,
                          lambda root: listing(root, cfg), instructions,
                          process_index=jax.process_index())


def _time_split(v: Video, fraction: float) -> tuple[Video, Video]:
  n_val = int(round(len(v.frames) * fraction))
  cut = len(v.frames) - n_val
  head = Video(v.frames.part(0, cut), v.labels[:cut], v.kinds[:cut], None, v.name)
  tail = Video(v.frames.part(cut, n_val), v.labels[cut:], v.kinds[cut:], None, v.name + '_val')
  return head, tail


def _scene(videos: list[Video], category: str, split: str) -> list[Video]:
  """ShanghaiTech: the videos of one scene (`<scene>_<n>`), or all of them."""
  if category == ALL_SCENES:
    return videos
  chosen = [v for v in videos if v.name.split('_')[0] == category]
  if not chosen:
    raise UserError(f'ShanghaiTech scene {category} has no {split} videos among the prepared '
                    f'files; choose another scene or categories={ALL_SCENES}')
  return chosen


def _video_dataset(name, category, image_size, data_cfg) -> Splits:
  if category not in known_categories(name):
    raise UserError(f'{name} categories are {", ".join(known_categories(name))}; got '
                    f'{category!r}')
  st = video_store(name, image_size, data_cfg, category)
  relabel = None
  if name == 'subway':          # re-label the test frames with data.label_window
    events, first = np.asarray(st.meta['events'], np.int64), st.meta['train_frames']
    relabel = lambda v, labels: vd.event_labels(events, first, len(labels),   # noqa: E731
                                                data_cfg.label_window)
  train, test = st.videos('train'), st.videos('test', relabel)
  if name == 'shanghaitech':
    train, test = _scene(train, category, 'training'), _scene(test, category, 'test')
  if len(train) == 1:
    head, tail = _time_split(train[0], data_cfg.val_fraction)
    train, val = [head], [tail]
  else:
    n_val = max(1, int(round(len(train) * data_cfg.val_fraction)))
    rng = np.random.default_rng(SPLIT_SEED)
    held = set(rng.permutation(len(train))[:n_val].tolist())
    val = [v for i, v in enumerate(train) if i in held]
    train = [v for i, v in enumerate(train) if i not in held]
  length, channels = data_cfg.video.clip_length, st.manifest['channels']
  return Splits(ClipSource(train, length, data_cfg.video.clip_strides),
                ClipSource(val, length, per_frame=True), ClipSource(test, length, per_frame=True),
                kind_names=['normal', 'anomalous'],
                has_masks=all(v.masks is not None for v in test),
                image_shape=(length, image_size, image_size, channels),
                digest=st.digest)


CATEGORIES = {
    'mnist': [str(i) for i in range(10)], 'fashion_mnist': [str(i) for i in range(10)],
    'cifar10': [str(i) for i in range(10)], 'mvtec': list(builders.MVTEC_CATEGORIES),
    'ham10000': ['default'], 'ddds': ['default'], 'ucsd_ped1': ['default'],
    'ucsd_ped2': ['default'], 'avenue': ['default'], 'subway': ['entrance', 'exit'],
    'shanghaitech': [ALL_SCENES]}
ALONE = {'shanghaitech': vd.SHANGHAITECH_SCENES}     # each scene alone, by name


def _register():
  for name in ('mnist', 'fashion_mnist', 'cifar10'):
    DATASETS.register(name)(lambda cat, size, cfg, name=name: _one_class(name, cat, size, cfg))
  DATASETS.register('mvtec')(_mvtec)
  for name in ('ham10000', 'ddds'):
    DATASETS.register(name)(
        lambda cat, size, cfg, name=name: _normal_vs_rest(name, cat, size, cfg))
  for name in VIDEOS:
    DATASETS.register(name)(
        lambda cat, size, cfg, name=name: _video_dataset(name, cat, size, cfg))
  for name, cats in CATEGORIES.items():
    register_categories(name, lambda cats=cats: list(cats), ALONE.get(name, ()))


_register()
