"""The source interface every dataset plugs into.

A *source* is what `tfds.builder(...).as_data_source(split)` returns and what Grain reads:
an object with `__len__` and `__getitem__(i) -> dict of numpy arrays`. Records hold

  image  float32 (H, W, C) in [0, 1]       label  int32, 0 normal / 1 anomalous
  kind   int32, the anomaly type (0 = normal; digit classes: class index + 1)
  mask   float32 (H, W), pixel ground truth (only when `Splits.has_masks`)

A dataset builder returns `Splits`: `train` (normal samples only), `val` (labelled, held out
from test; used for validation loss on its normal part and for thresholds that need labels)
and `test` (labelled).
"""

import dataclasses
from typing import Callable, Protocol

import numpy as np

from vadjax.registry import Registry, UserError

DATASETS = Registry('dataset')
_CATEGORIES: dict[str, Callable[[], list[str]]] = {}
_ALONE: dict[str, list[str]] = {}


class Source(Protocol):
  def __len__(self) -> int: ...
  def __getitem__(self, index: int) -> dict[str, np.ndarray]: ...


class ArraySource:
  """A random-access source over equal-length numpy arrays (embedded data, fixtures)."""

  def __init__(self, **fields: np.ndarray):
    lengths = {k: len(v) for k, v in fields.items()}
    if len(set(lengths.values())) != 1:
      raise ValueError(f'fields have different lengths: {lengths}')
    self.fields = fields

  def __len__(self) -> int:
    return len(next(iter(self.fields.values())))

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    return {k: v[index] for k, v in self.fields.items()}

  def array(self, name: str) -> np.ndarray:
    return self.fields[name]


class Subset:
  """The records of `source` at `indices` (works for any random-access source)."""

  def __init__(self, source, indices):
    self.source, self.indices = source, np.asarray(indices, np.int64)

  def __len__(self) -> int:
    return len(self.indices)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    return self.source[int(self.indices[index])]

  def __getattr__(self, name):      # `array` where the source has it (labels without reading)
    if name == 'array' and hasattr(self.source, 'array'):
      return lambda field_name: self.source.array(field_name)[self.indices]
    raise AttributeError(name)


def field(source, name: str) -> np.ndarray:
  """One small per-record field (label, kind, video) of every record of a source, as an
  array; sources with `array` give it without reading a frame."""
  if hasattr(source, 'array'):       # array sources, clip sources (without building clips)
    return source.array(name)
  return np.stack([source[i][name] for i in range(len(source))])


def normal_part(source):
  """The normal records (label 0) of a labelled source."""
  return Subset(source, np.flatnonzero(field(source, 'label') == 0))


@dataclasses.dataclass
class Splits:
  train: Source
  val: Source
  test: Source
  kind_names: list[str]          # kind id -> name ('normal' first)
  has_masks: bool
  image_shape: tuple[int, int, int]
  digest: str = ''               # the prepared source files' digest (stored real videos)

  def check(self, name: str) -> None:
    for split in ('train', 'val', 'test'):
      if len(getattr(self, split)) == 0:
        raise UserError(f'dataset {name!r} has an empty {split} split; check the category '
                        f'and split fractions in the config')


def register_categories(name: str, fn: Callable[[], list[str]], alone=()) -> None:
  """`fn()`: the categories a protocol loops over ('all'); `alone`: more that may be
  chosen by name (ShanghaiTech's single scenes beside the standard all-scenes protocol)."""
  _CATEGORIES[name] = fn
  _ALONE[name] = list(alone)


def categories(name: str) -> list[str]:
  """What `categories='all'` runs."""
  DATASETS.get(name)  # clear error for unknown names
  return _CATEGORIES[name]()


def known_categories(name: str) -> list[str]:
  """Every category that may be chosen by name."""
  return categories(name) + _ALONE[name]
