"""The real image datasets' TFDS builders by name, and their preparation from a user's files
(the builders: image_builders.py; what they share and how: frames.py). The video datasets
are prepared into the resumable frame store instead (store.py, video_datasets.py)."""

import contextlib
import logging as std_logging

import tensorflow_datasets as tfds
from absl import logging

from vadjax.data import image_builders as img
from vadjax.data.frames import (CODE_CROPS, HAM_CLASSES, MVTEC_CATEGORIES, FrameConfig,
                                frame_config, to_frame, to_mask)
from vadjax.registry import UserError

__all__ = ['BUILDERS', 'CODE_CROPS', 'HAM_CLASSES', 'MVTEC_CATEGORIES', 'frame_config',
           'make_builder', 'prepare', 'to_frame', 'to_mask']

BUILDERS = {'mnist': img.VadMnist, 'fashion_mnist': img.VadFashionMnist,
            'cifar10': img.VadCifar10, 'mvtec': img.VadMvtec, 'ham10000': img.VadHam10000,
            'ddds': img.VadDdds}


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
