"""Embedded datasets that ship with scikit-learn / scikit-image (no download).

digits    scikit-learn's 1797 handwritten digits (8×8, 16 grey levels), bilinearly resized to
          `image_size`; the one-class protocol of shared/METHODS.md §0: the category is the
          normal class, every other class is anomalous.
textures  scikit-image's `brick`, `grass`, `gravel` photographs (512×512 grey): normal crops
          for training; test crops with drawn defects (scratch, blob, hole, stain) and their
          pixel masks, an MVTec-like task. Train, val and test crops come from disjoint
          horizontal bands of the photograph, so no test pixel is ever seen in training.
"""

import functools

import numpy as np
import scipy.ndimage as ndi
import skimage.data
import skimage.draw
import skimage.transform

from vadjax.data.sources import DATASETS, ArraySource, Splits, register_categories
from vadjax.registry import UserError

SPLIT_SEED = 1234   # the data split is fixed; training seeds vary the model only

DIGIT_CLASSES = [str(i) for i in range(10)]
TEXTURES = ['brick', 'grass', 'gravel']
DEFECTS = ['scratch', 'blob', 'hole', 'stain']


def _resize(images: np.ndarray, size: int) -> np.ndarray:
  if images.shape[1] == size:
    return images
  return np.stack([skimage.transform.resize(im, (size, size), order=1, mode='edge',
                                            anti_aliasing=False) for im in images])


@functools.lru_cache(maxsize=4)
def labelled_digits(image_size: int):
  """scikit-learn's 1,797 8×8 digits at `image_size`, (N, S, S, 1) in [0, 1], and their
  classes 0-9."""
  from sklearn.datasets import load_digits  # bundled with scikit-learn
  d = load_digits()
  images = _resize(d.images.astype(np.float32) / 16.0, image_size).astype(np.float32)
  return np.clip(images, 0.0, 1.0)[..., None], d.target.astype(np.int32)


def _split_indices(targets: np.ndarray, val_fraction: float, test_fraction: float):
  """Per-class deterministic split into train / val / test index arrays."""
  rng = np.random.default_rng(SPLIT_SEED)
  parts = ([], [], [])
  for c in np.unique(targets):
    idx = rng.permutation(np.flatnonzero(targets == c))
    n_test = int(round(len(idx) * test_fraction))
    n_val = int(round(len(idx) * val_fraction))
    parts[2].append(idx[:n_test])
    parts[1].append(idx[n_test:n_test + n_val])
    parts[0].append(idx[n_test + n_val:])
  return [np.sort(np.concatenate(p)) for p in parts]


@DATASETS.register('digits')
def build_digits(category: str, image_size: int, data_cfg) -> Splits:
  """One-class digits: train on class `category`, test on all classes."""
  if category not in DIGIT_CLASSES:
    raise UserError(f'digits has classes 0..9, got normal class {category!r}')
  images, targets = labelled_digits(image_size)
  normal = int(category)
  train_idx, val_idx, test_idx = _split_indices(targets, data_cfg.val_fraction,
                                                data_cfg.test_fraction)

  def make(idx, normal_only=False):
    if normal_only:
      idx = idx[targets[idx] == normal]
    t = targets[idx]
    return ArraySource(image=images[idx], label=(t != normal).astype(np.int32),
                       kind=np.where(t == normal, 0, t + 1).astype(np.int32))

  return Splits(make(train_idx, True), make(val_idx), make(test_idx),
                kind_names=['normal'] + [f'digit {c}' for c in DIGIT_CLASSES],
                has_masks=False, image_shape=(image_size, image_size, 1))


register_categories('digits', lambda: list(DIGIT_CLASSES))


# ----------------------------------------------------------------------------- textures

def _contrast_value(patch: np.ndarray, rng) -> float:
  """A grey level that stands out against the patch (dark on bright, bright on dark)."""
  m = float(patch.mean())
  return float(np.clip((0.1 if m > 0.5 else 0.9) + rng.normal(0, 0.05), 0, 1))


def _draw_defect(crop: np.ndarray, kind: str, rng) -> tuple[np.ndarray, np.ndarray]:
  """Draws one defect on a copy of `crop` (S×S in [0,1]); returns (image, mask)."""
  s = crop.shape[0]
  img = crop.copy()
  mask = np.zeros_like(crop, dtype=bool)
  cy, cx = rng.uniform(0.2 * s, 0.8 * s, size=2)
  if kind == 'scratch':
    length, width = rng.uniform(0.3, 0.7) * s, rng.uniform(1.0, 2.5)
    a = rng.uniform(0, np.pi)
    d, n = np.array([np.sin(a), np.cos(a)]), np.array([np.cos(a), -np.sin(a)])
    c = np.array([cy, cx])
    corners = [c + sd * length / 2 * d + sn * width / 2 * n for sd in (-1, 1) for sn in (-1, 1)]
    corners = np.array([corners[0], corners[1], corners[3], corners[2]])
    rr, cc = skimage.draw.polygon(corners[:, 0], corners[:, 1], (s, s))
    mask[rr, cc] = True
    img[mask] = _contrast_value(crop, rng)
  elif kind == 'blob':
    ry, rx = rng.uniform(0.06, 0.15, size=2) * s
    rr, cc = skimage.draw.ellipse(cy, cx, ry, rx, (s, s), rotation=rng.uniform(0, np.pi))
    mask[rr, cc] = True
    img[mask] = _contrast_value(crop, rng) + rng.normal(0, 0.03, size=mask.sum())
  elif kind == 'hole':
    r = rng.uniform(0.05, 0.12) * s
    rr, cc = skimage.draw.disk((cy, cx), r, shape=(s, s))
    mask[rr, cc] = True
    yy, xx = np.mgrid[:s, :s]
    dist = np.hypot(yy - cy, xx - cx) / r
    img[mask] = (0.02 + 0.15 * dist[mask] ** 4)   # dark centre, lighter rim
  elif kind == 'stain':
    field = ndi.gaussian_filter(rng.normal(size=(s, s)), s / 10)
    yy, xx = np.mgrid[:s, :s]
    field -= 0.02 * np.hypot(yy - cy, xx - cx) / s * field.std() * 50
    mask = field > np.quantile(field, 1 - rng.uniform(0.05, 0.12))
    soft = ndi.gaussian_filter(mask.astype(np.float32), 1.0)
    tint = rng.uniform(0.35, 0.6)
    img = img * (1 - soft * (1 - tint))
  else:
    raise ValueError(kind)
  return np.clip(img, 0, 1).astype(np.float32), mask.astype(np.float32)


def _crops(photo: np.ndarray, rows: tuple[int, int], n: int, crop: int, rng):
  lo, hi = rows
  if hi - lo < crop:
    raise UserError(f'textures: a band of {hi - lo} rows cannot hold {crop}-pixel crops; '
                    f'lower data.textures.crop_size (at most {hi - lo})')
  ys = rng.integers(lo, hi - crop + 1, size=n)
  xs = rng.integers(0, photo.shape[1] - crop + 1, size=n)
  return np.stack([photo[y:y + crop, x:x + crop] for y, x in zip(ys, xs)])


def _labelled_crops(photo, rows, n, crop, image_size, rng, anomalous_fraction=0.5):
  base = _crops(photo, rows, n, crop, rng)
  kinds = np.zeros(n, np.int32)
  n_bad = int(round(n * anomalous_fraction))
  kinds[:n_bad] = 1 + np.arange(n_bad) % len(DEFECTS)
  images, masks = [], []
  for c, k in zip(base, kinds):
    if k:
      c, m = _draw_defect(c, DEFECTS[k - 1], rng)
    else:
      m = np.zeros_like(c)
    images.append(c)
    masks.append(m)
  images, masks = _resize(np.stack(images), image_size), _resize(np.stack(masks), image_size)
  return ArraySource(image=images[..., None].astype(np.float32),
                     label=(kinds > 0).astype(np.int32), kind=kinds,
                     mask=(masks > 0.5).astype(np.float32))


@functools.lru_cache(maxsize=8)
def _textures(category: str, image_size: int, crop: int, num_train: int, num_val: int,
              num_test: int) -> Splits:
  photo = getattr(skimage.data, category)().astype(np.float32) / 255.0
  h = photo.shape[0]
  bands = [(0, int(0.6 * h)), (int(0.6 * h), int(0.75 * h)), (int(0.75 * h), h)]
  rng = np.random.default_rng([SPLIT_SEED, TEXTURES.index(category)])
  train = _resize(_crops(photo, bands[0], num_train, crop, rng), image_size)
  train_src = ArraySource(image=train[..., None].astype(np.float32),
                          label=np.zeros(num_train, np.int32),
                          kind=np.zeros(num_train, np.int32),
                          mask=np.zeros((num_train, image_size, image_size), np.float32))
  val = _labelled_crops(photo, bands[1], num_val, crop, image_size, rng)
  test = _labelled_crops(photo, bands[2], num_test, crop, image_size, rng)
  return Splits(train_src, val, test, kind_names=['normal'] + DEFECTS, has_masks=True,
                image_shape=(image_size, image_size, 1))


@DATASETS.register('textures')
def build_textures(category: str, image_size: int, data_cfg) -> Splits:
  if category not in TEXTURES:
    raise UserError(f'textures has categories {", ".join(TEXTURES)}, got {category!r}')
  t = data_cfg.textures
  return _textures(category, image_size, t.crop_size, t.num_train, t.num_val, t.num_test)


register_categories('textures', lambda: list(TEXTURES))
