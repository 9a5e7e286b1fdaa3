"""What a user points a trained run at: an image, a folder of images, a video file, or a
folder of frames; and each frame made into what the run's model was trained on.

Frames are prepared as the training data was (vadjax/data/frames.py `to_frame`): the
dataset's crop (`data.crop`, real datasets), grey (ITU-R 601-2 luma) or RGB to the model's
channel count, Pillow's bilinear resize to `image_size`, scaled to [0, 1]. The embedded
datasets are drawn at their size; inputs of another size go through the same resize.

A folder is read one level deep: its images, its video files, and its sub-folders of images.
For a clip model (video) the images of one folder are one video, in name order (a folder
of frames); for an image model every image is scored on its own.
"""

import dataclasses
import io
import os

import numpy as np
from PIL import Image

from vadjax.data import formats, frames as frames_lib
from vadjax.registry import UserError


@dataclasses.dataclass
class Item:
  """One input: a video (frames in order) or a single image."""
  name: str
  paths: list[str]           # image files (one per frame), or the one video file
  video: bool                # a video file (decoded with PyAV)

  @property
  def sequence(self) -> bool:
    return self.video or len(self.paths) > 1


def find(path: str, sequences: bool) -> list[Item]:
  """The items at `path`; `sequences`: a folder of images is one video (clip models)."""
  if not os.path.exists(path):
    raise UserError(f'input {path!r} does not exist')
  if os.path.isfile(path):
    return [_file_item(path)]
  items, images = [], formats.files_with(path, formats.IMAGE_EXTENSIONS)
  if images:
    items += [Item(path, images, False)] if sequences else [Item(p, [p], False) for p in images]
  items += [Item(p, [p], True) for p in formats.files_with(path, formats.VIDEO_EXTENSIONS)]
  for sub in sorted(os.listdir(path)):
    folder = os.path.join(path, sub)
    if os.path.isdir(folder):
      images = formats.files_with(folder, formats.IMAGE_EXTENSIONS)
      if images and sequences:
        items.append(Item(folder, images, False))
      elif images:
        items += [Item(p, [p], False) for p in images]
  if not items:
    raise UserError(f'no images ({", ".join(formats.IMAGE_EXTENSIONS)}) or videos '
                    f'({", ".join(formats.VIDEO_EXTENSIONS)}) in {path!r} or its sub-folders')
  return items


def _file_item(path: str) -> Item:
  ext = os.path.splitext(path)[1].lower()
  if ext in formats.IMAGE_EXTENSIONS:
    return Item(path, [path], False)
  if ext in formats.VIDEO_EXTENSIONS:
    return Item(path, [path], True)
  raise UserError(f'{path}: not an image ({", ".join(formats.IMAGE_EXTENSIONS)}) or a video '
                  f'({", ".join(formats.VIDEO_EXTENSIONS)})')


class FrameFormat:
  """The frame a run's model was trained on: size, channels and the dataset's crop."""

  def __init__(self, config, channels: int):
    crop = frames_lib.parse_crop(config.data.crop, config.dataset)
    self.cfg = frames_lib.frame_config(config.image_size, channels, crop)
    self.shape = (config.image_size, config.image_size, channels)

  def prepare(self, raw: np.ndarray, name: str) -> np.ndarray:
    """uint8 (H, W[, 3]) → float32 (S, S, C) in [0, 1]."""
    return frames_lib.to_frame(raw, self.cfg, name).astype(np.float32) / 255.0

  def decode(self, data: bytes, name: str) -> np.ndarray:
    """An encoded image (PNG, JPEG, ...) → float32 (S, S, C)."""
    return self.prepare(formats.read_image(io.BytesIO(data), name), name)

  def frames(self, item: Item):
    """The frames of an item one by one, prepared: float32 (S, S, C) each."""
    if item.video:
      raw = ((f, f'{item.name} frame {i}') for i, f in enumerate(formats.iter_video(item.name)))
    else:
      raw = ((formats.read_image(p), p) for p in item.paths)
    return (self.prepare(a, name) for a, name in raw)

  def load(self, item: Item) -> np.ndarray:
    """Every frame of an item, prepared: float32 (N, S, S, C) (single images, short
    sequences; a video is read with `frames`)."""
    return np.stack(list(self.frames(item)))

  @staticmethod
  def length(item: Item) -> int | None:
    """An item's frame count where it is known without decoding."""
    return formats.video_length(item.name) if item.video else len(item.paths)


def png(frame: np.ndarray) -> bytes:
  """A prepared float frame (H, W, C) in [0, 1] as PNG bytes (grey or RGB)."""
  a = np.round(np.clip(frame, 0, 1) * 255).astype(np.uint8)
  buf = io.BytesIO()
  Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a).save(buf, format='PNG')
  return buf.getvalue()
