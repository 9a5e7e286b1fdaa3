"""What a scoring request may hold, and its decoding within limits (vadjax/serving/server.py).

A request's cost is bounded before it is paid: the body's size as it arrives, the JSON's
shape by its schema (pydantic's parser, which refuses nesting deeper than 200), each
image's pixels from its header before it is decoded (Pillow reads only the header on
open), the decoded pixels of the whole request, and a video's frames as they are decoded.
Every refusal is a `RequestError`: a status and a one-line message.
"""

import base64
import binascii
import dataclasses
import io
import os
import tempfile

import numpy as np
import pydantic
from PIL import Image

from vadjax.data import formats
from vadjax.registry import UserError


@dataclasses.dataclass(frozen=True)
class Limits:
  max_bytes: int = 16 << 20                 # request body
  max_pixels: int = 4096 * 4096             # decoded pixels of one frame
  max_request_pixels: int = 64 << 20        # decoded pixels of one request, all frames
  max_frames: int = 1024                    # frames of one request
  timeout_s: float = 30.0                   # a client that stops sending its body
  max_connections: int = 256                # open at once; more are answered 503

  def __post_init__(self):
    for field in dataclasses.fields(self):
      if not getattr(self, field.name) > 0:
        raise UserError(f'the server limit {field.name} must be positive, got '
                        f'{getattr(self, field.name)}')


class RequestError(Exception):
  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status = status


class ScoreRequest(pydantic.BaseModel):
  """A JSON scoring request: exactly one of `image`, `images` (scored each on its own) or
  `frames` (one video, in order: what clip models need), base64-encoded image files."""
  model_config = pydantic.ConfigDict(extra='forbid')
  image: str | None = None
  images: list[str] | None = None
  frames: list[str] | None = None
  threshold: str | float | None = pydantic.Field(
      None, description='a persisted threshold name or a number in the normalised space')
  run: str | None = pydantic.Field(None, description='a served run (GET /api/runs)')
  maps: bool = pydantic.Field(False, description='also return each frame as PNG and its '
                                                 'heat map as an 8-bit grey PNG')


IMAGE_TYPES = ('image/', 'application/octet-stream')
VIDEO_TYPES = ('video/',)


def parse_json(data: bytes) -> ScoreRequest:
  try:
    body = ScoreRequest.model_validate_json(data)
  except pydantic.ValidationError as e:
    err = e.errors()[0]
    where = '.'.join(map(str, err['loc']))
    raise RequestError(400, f'{where + ": " if where else ""}{err["msg"]}') from None
  keys = [k for k in ('image', 'images', 'frames') if getattr(body, k) is not None]
  if len(keys) != 1:
    raise RequestError(400, 'give exactly one of "image", "images" or "frames"')
  return body


def items_of(body: ScoreRequest) -> tuple[str, list[str]]:
  key = next(k for k in ('image', 'images', 'frames') if getattr(body, k) is not None)
  items = [body.image] if key == 'image' else getattr(body, key)
  if not items:
    raise RequestError(400, f'"{key}" holds no images')
  return key, items


class Decoder:
  """Encoded frames → prepared float32 frames (N, S, S, C) of a run's `FrameFormat`,
  within `limits`."""

  def __init__(self, fmt, limits: Limits):
    self.format, self.limits = fmt, limits

  def _check_count(self, n: int) -> None:
    if n > self.limits.max_frames:
      raise RequestError(413, f'{n} frames; the limit is {self.limits.max_frames} per '
                              f'request')

  def _size(self, data: bytes, name: str) -> int:
    """An image's pixels, read from its header alone."""
    try:
      with Image.open(io.BytesIO(data)) as im:
        pixels = im.width * im.height
    except Image.DecompressionBombError:
      raise RequestError(413, f'{name} is larger than Pillow will open') from None
    except Exception:  # noqa: BLE001  (Pillow raises many kinds for non-images)
      raise RequestError(400, f'{name} is not an image Pillow can read') from None
    if pixels > self.limits.max_pixels:
      raise RequestError(413, f'{name} has {pixels} pixels; the limit is '
                              f'{self.limits.max_pixels} per frame')
    return pixels

  def small(self, data: bytes) -> bool:
    """Whether an image decodes in well under a millisecond (≤ 256 KB, ≤ 512² pixels by
    its header), so that a request may decode it without a thread hop."""
    if len(data) > 256 << 10:
      return False
    try:
      with Image.open(io.BytesIO(data)) as im:
        return im.width * im.height <= 512 * 512
    except Exception:  # noqa: BLE001  (refused, with its reason, by `images`)
      return True

  def images(self, files: list[bytes], names: list[str]) -> np.ndarray:
    """Image files, every header checked before the first is decoded."""
    self._check_count(len(files))
    total = sum(self._size(d, n) for d, n in zip(files, names))
    if total > self.limits.max_request_pixels:
      raise RequestError(413, f'the request decodes to {total} pixels; the limit is '
                              f'{self.limits.max_request_pixels}')
    frames = []
    for data, name in zip(files, names):
      try:
        frames.append(self.format.decode(data, name))
      except UserError as e:
        raise RequestError(400, str(e)) from None
    return np.stack(frames)

  def base64_images(self, key: str, items: list[str]) -> np.ndarray:
    self._check_count(len(items))
    files = []
    for i, text in enumerate(items):
      try:
        files.append(base64.b64decode(text, validate=True))
      except (binascii.Error, ValueError):
        raise RequestError(400, f'{key}[{i}] is not valid base64') from None
    return self.images(files, [f'{key}[{i}]' for i in range(len(items))])

  def video(self, data: bytes) -> np.ndarray:
    """A video file's frames (PyAV), its frame size checked from the stream's header and
    the frame count and pixel budget as frames are decoded."""
    import av
    with tempfile.TemporaryDirectory(prefix='vadjax-upload-') as tmp:
      path = os.path.join(tmp, 'upload')
      with open(path, 'wb') as f:
        f.write(data)
      try:
        with av.open(path) as container:
          if not container.streams.video:
            raise RequestError(400, 'the body is not a video (no video stream)')
          s = container.streams.video[0]
          pixels = (s.codec_context.width or 0) * (s.codec_context.height or 0)
      except av.FFmpegError:
        raise RequestError(400, 'the body is not a video PyAV can read') from None
      if pixels > self.limits.max_pixels:
        raise RequestError(413, f'the video\'s frames have {pixels} pixels; the limit is '
                                f'{self.limits.max_pixels} per frame')
      budget = min(self.limits.max_frames,
                   self.limits.max_request_pixels // max(pixels, 1))
      frames = []
      try:
        for i, raw in enumerate(formats.iter_video(path)):
          if i >= budget:
            raise RequestError(413, f'the video has more than {budget} frames, the limit '
                                    f'for its frame size ({self.limits.max_frames} frames, '
                                    f'{self.limits.max_request_pixels} pixels)')
          frames.append(self.format.prepare(raw, f'frame {i}'))
      except (UserError, av.FFmpegError) as e:
        raise RequestError(400, f'the video cannot be decoded: {e}') from None
    if not frames:
      raise RequestError(400, 'the video has no frames')
    return np.stack(frames)
