"""Readers for the published file formats of the real datasets (issue 8).

Every reader returns numpy arrays and raises `UserError` naming the file and what was
expected, so a corrupt or misplaced file never yields a silent partial dataset.

  IDX        MNIST / Fashion-MNIST `*-idx3-ubyte` images and `*-idx1-ubyte` labels (.gz too)
  pickle     CIFAR-10 python batches (`data_batch_1` … `test_batch`)
  images     PNG / JPEG / BMP / TIFF through Pillow (UCSD .tif frames, MVTec PNGs, HAM JPEGs)
  .m         UCSD's MATLAB ground-truth script (`TestVideoFile{end+1}.gt_frame = [61:180];`)
  .mat       CUHK Avenue's `testing_label_mask/<n>_label.mat` (`volLabel`, a cell of masks)
  video      .avi / .mp4 / … decoded with PyAV (FFmpeg)

Policy for every loader of a file a user gives vadjax: no code runs from a data file. No
`pickle.load`/`pickle.loads`, no `np.load` with `allow_pickle` set, no `torch.load` without
`weights_only=True`; a pickle format (CIFAR-10's batches) goes through an Unpickler that admits
only the classes the format holds. tests/test_faults.py greps the code for the unsafe calls.
"""

import faulthandler
import gzip
import os
import pickle
import re
import signal
import tempfile
import time
import tokenize
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from vadjax.registry import UserError

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')
VIDEO_EXTENSIONS = ('.avi', '.mp4', '.mov', '.mkv', '.mpg', '.mpeg', '.webm')
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: '>i2', 0x0C: '>i4', 0x0D: '>f4', 0x0E: '>f8'}


def files_with(folder: str, extensions) -> list[str]:
  """The files of `folder` with one of `extensions`, sorted (hidden files skipped)."""
  return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                if f.lower().endswith(extensions) and not f.startswith('.'))


def read_idx(path: str) -> np.ndarray:
  """An IDX file (LeCun's MNIST format; gzip-compressed or not) as an array."""
  opener = gzip.open if path.endswith('.gz') else open
  try:
    with opener(path, 'rb') as f:
      data = f.read()
  except (OSError, EOFError) as e:
    raise UserError(f'cannot read IDX file {path}: {e}') from None
  if len(data) < 4 or data[:2] != b'\0\0' or data[2] not in _IDX_TYPES:
    raise UserError(f'{path} is not an IDX file (expected the magic 0x0000 + a type byte)')
  ndim = data[3]
  if not 1 <= ndim <= 4 or len(data) < 4 + 4 * ndim:
    raise UserError(f'{path}: the IDX header says {ndim} dimensions and the file holds '
                    f'{len(data)} bytes; the file is corrupt or truncated')
  shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim))
  dtype = np.dtype(_IDX_TYPES[data[2]])
  body = data[4 + 4 * ndim:]
  if len(body) != int(np.prod(shape)) * dtype.itemsize:
    raise UserError(f'{path}: header says shape {shape} ({int(np.prod(shape))} values) but '
                    f'the file holds {len(body) // dtype.itemsize}; the file is truncated')
  return np.frombuffer(body, dtype).reshape(shape)


class _BatchUnpickler(pickle.Unpickler):
  """Unpickles only what a CIFAR-10 batch holds: containers, bytes, numbers and numpy
  arrays. Any other global (os.system, builtins.eval, ...) is refused before it is called,
  so a crafted file cannot run code (the policy in this module's docstring)."""
  ALLOWED = {(f'numpy.{core}.{module}', name) for core in ('core', '_core')
             for module, name in (('multiarray', '_reconstruct'), ('numeric', '_frombuffer'))}
  ALLOWED |= {('numpy', 'ndarray'), ('numpy', 'dtype'), ('_codecs', 'encode')}

  def find_class(self, module, name):
    if (module, name) in self.ALLOWED:
      return super().find_class(module, name)
    raise pickle.UnpicklingError(f'it refers to {module}.{name}, which a CIFAR-10 batch '
                                 'never holds (refused, nothing was run)')


def read_cifar_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
  """A CIFAR-10 python batch: (images uint8 (N, 32, 32, 3), labels int32 (N,))."""
  try:
    with open(path, 'rb') as f:
      batch = _BatchUnpickler(f, encoding='bytes').load()
    data = np.asarray(batch[b'data'], np.uint8)
    labels = np.asarray(batch[b'labels'], np.int32)
  except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError,
          IndexError, AttributeError, OverflowError, MemoryError) as e:
    raise UserError(f'cannot read CIFAR-10 batch {path}: {e}; expected a python pickle '
                    f'with b"data" (N×3072 uint8) and b"labels"') from None
  if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
    raise UserError(f'{path}: expected data of shape (N, 3072) and N labels, got '
                    f'{data.shape} and {len(labels)}')
  return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def read_image(path, name: str | None = None) -> np.ndarray:
  """An image (a path, or an open binary file called `name`) as uint8, (H, W) for grey
  files and (H, W, 3) otherwise (16-bit grey is rescaled to 8 bits)."""
  try:
    with Image.open(path) as im:
      im.load()
      if im.mode in ('I;16', 'I;16B', 'I'):
        a = np.asarray(im, np.float64)
        return np.round(a / (257.0 if a.max() > 255 else 1.0)).astype(np.uint8)
      mode = 'L' if im.mode in ('1', 'L', 'LA', 'P') and _is_grey(im) else 'RGB'
      return np.asarray(im.convert(mode), np.uint8)
  except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
          Image.DecompressionBombError) as e:
    raise UserError(f'cannot read image {name or path}: {e}; replace or delete the file'
                    ) from None


def _is_grey(im) -> bool:
  if im.mode != 'P':
    return True
  rgb = np.asarray(im.convert('RGB'))
  return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


def parse_ucsd_m(path: str) -> list[list[tuple[int, int]]]:
  """UCSD's `UCSDped1.m` / `UCSDped2.m`: per test video, its anomalous frame ranges
  (1-based, inclusive), e.g. `TestVideoFile{end+1}.gt_frame = [5:90, 140:200];`."""
  try:
    with open(path) as f:
      text = f.read()
  except (OSError, UnicodeDecodeError) as e:
    raise UserError(f'cannot read UCSD ground truth {path}: {e}') from None
  videos = []
  for line_no, line in enumerate(text.splitlines(), 1):
    if 'gt_frame' not in line:
      continue
    m = re.search(r'gt_frame\s*=\s*\[([^\]]*)\]', line)
    if not m:
      raise UserError(f'{path}:{line_no}: expected `...gt_frame = [a:b, c:d];`, got {line!r}')
    ranges = []
    for part in filter(None, (p.strip() for p in m.group(1).split(','))):
      bounds = part.split(':')
      if len(bounds) != 2 or not all(b.strip().isdigit() for b in bounds):
        raise UserError(f'{path}:{line_no}: expected ranges like 61:180, got {part!r}')
      ranges.append((int(bounds[0]), int(bounds[1])))
    videos.append(ranges)
  if not videos:
    raise UserError(f'{path} holds no `gt_frame = [...]` lines; is it the UCSD .m file?')
  return videos


def ranges_to_labels(ranges, length: int, name: str) -> np.ndarray:
  """Per-frame 0/1 labels from 1-based inclusive frame ranges."""
  labels = np.zeros(length, np.int32)
  for a, b in ranges:
    if not 1 <= a <= b <= length:
      raise UserError(f'{name}: anomalous range {a}:{b} lies outside its {length} frames; '
                      f'frames and ground truth do not match')
    labels[a - 1:b] = 1
  return labels


def read_mat(path: str, key: str):
  """Variable `key` of a MATLAB v4–v7.2 .mat file (scipy.io)."""
  import scipy.io
  try:
    data = scipy.io.loadmat(path)
  except NotImplementedError:
    raise UserError(f'{path} is a MATLAB v7.3 (HDF5) file; re-save it with '
                    f"save('{os.path.basename(path)}', '{key}', '-v7') in MATLAB") from None
  except (OSError, ValueError, TypeError) as e:
    raise UserError(f'cannot read MATLAB file {path}: {e}') from None
  if key not in data:
    found = sorted(k for k in data if not k.startswith('__'))
    raise UserError(f'{path} has no variable {key!r} (found {found})')
  return data[key]


def _wait(pid: int, timeout_s: float):
  """The child's wait status, or None after killing it at the timeout."""
  deadline = time.monotonic() + timeout_s
  while time.monotonic() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
      return status
    time.sleep(0.005)
  os.kill(pid, signal.SIGKILL)
  os.waitpid(pid, 0)
  return None


def isolated(read, path: str, timeout_s: float = 60) -> np.ndarray:
  """`read(path)` → a numeric array, run in a forked child: scipy's MATLAB reader can crash
  the process (a segmentation fault) on a damaged file, which must end as a one-line error
  instead. The array comes back as .npy without pickles."""
  with tempfile.TemporaryDirectory() as tmp:
    out, err = os.path.join(tmp, 'out.npy'), os.path.join(tmp, 'err.txt')
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')       # JAX's warning about fork in a threaded process
      pid = os.fork()
    if pid == 0:
      faulthandler.disable()              # the parent reports a crash in one line
      code = 0
      try:
        np.save(out, read(path), allow_pickle=False)
      except BaseException as e:  # noqa: BLE001  (reported by the parent)
        with open(err, 'w') as f:
          f.write(str(e) if isinstance(e, UserError) else f'cannot read {path}: {e}')
        code = 3
      os._exit(code)
    status = _wait(pid, timeout_s)
    if status is None:
      raise UserError(f'cannot read {path}: the reader did not finish in {timeout_s} s; the '
                      'file is corrupt')
    if os.WIFSIGNALED(status):
      raise UserError(f'cannot read {path}: the reader crashed '
                      f'({signal.Signals(os.WTERMSIG(status)).name}); the file is corrupt')
    if os.WEXITSTATUS(status):
      with open(err) as f:
        raise UserError(' '.join(f.read().split()))
    return np.load(out, allow_pickle=False)


def read_avenue_masks(path: str) -> np.ndarray:
  """CUHK Avenue's `<n>_label.mat`: `volLabel`, a 1×T cell of H×W masks → (T, H, W) uint8."""
  return isolated(_avenue_masks, path)


def _avenue_masks(path: str) -> np.ndarray:
  cells = read_mat(path, 'volLabel')
  try:
    masks = np.stack([np.asarray(c) for c in np.asarray(cells, dtype=object).ravel()])
  except ValueError as e:
    raise UserError(f'{path}: volLabel masks differ in shape ({e})') from None
  return (masks > 0).astype(np.uint8)


def read_video(path: str) -> np.ndarray:
  """All frames of a video file as uint8 (T, H, W, 3), decoded with PyAV."""
  return np.stack(list(iter_video(path)))


def iter_video(path: str, container_format: str | None = None, start: int = 0):
  """Yields the frames of a video as uint8 (H, W, 3) arrays, in order, from frame `start`
  on (earlier frames are decoded and dropped unconverted): a file, a stream URL (rtsp://,
  http://, ...) or a device with its FFmpeg `container_format` ('v4l2')."""
  import av   # PyAV: FFmpeg bindings; imported here so image-only users need no FFmpeg
  if '://' not in path and container_format is None and not os.path.isfile(path):
    raise UserError(f'video {path} does not exist')
  n = 0
  try:
    with av.open(path, format=container_format) as container:
      if not container.streams.video:
        raise UserError(f'{path} holds no video stream')
      for frame in container.decode(video=0):
        n += 1
        if n > start:
          yield frame.to_ndarray(format='rgb24')
  except (av.error.FFmpegError, ValueError, OverflowError, MemoryError) as e:
    raise UserError(f'cannot decode video {path} (after {n} frames): {e}; the file is '
                    f'corrupt or not a video') from None
  if n == 0:
    raise UserError(f'video {path} has no frames; the file is corrupt or empty')


def video_length(path: str) -> int | None:
  """The frame count a video file's header states (None when it states none); a hint for
  progress bars, never trusted for labels."""
  import av
  try:
    with av.open(path) as container:
      return int(container.streams.video[0].frames) or None
  except (av.error.FFmpegError, IndexError, ValueError):
    return None


def video_fps(path: str) -> float:
  import av
  try:
    with av.open(path) as container:
      rate = container.streams.video[0].average_rate or container.streams.video[0].base_rate
  except (av.error.FFmpegError, IndexError) as e:
    raise UserError(f'cannot open video {path}: {e}') from None
  return float(rate) if rate else 25.0


def write_video(path: str, frames, rate: float = 25.0, codec: str = 'libx264') -> None:
  """Writes uint8 RGB frames (H, W, 3) to a video file with PyAV (H.264 in yuv420p, so
  the frame sides must be even; 'png' keeps them lossless)."""
  import av
  with av.open(path, 'w') as container:
    stream = None
    for frame in frames:
      if stream is None:
        stream = container.add_stream(codec, rate=round(rate))
        stream.height, stream.width = frame.shape[:2]
        stream.pix_fmt = 'rgb24' if codec == 'png' else 'yuv420p'
      container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format='rgb24')))
    if stream is not None:
      container.mux(stream.encode())


class NpyRows:
  """The rows of a numeric `.npy` file (`np.save`'s format), read one at a time with
  positioned reads: a (T, H, W) mask volume or a (T, D) feature table of any length costs
  one row of memory. The header is checked (numeric dtype, C order, the size the shape
  implies); object arrays (pickles) are refused."""

  def __init__(self, path: str):
    self.path = path
    try:
      with open(path, 'rb') as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
          shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
          shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        self.offset = f.tell()
    except (OSError, ValueError, SyntaxError, TypeError, KeyError, OverflowError,
            MemoryError, tokenize.TokenError) as e:
      raise UserError(f'cannot read {path}: {e}; expected a .npy array') from None
    if dtype.hasobject or dtype.kind not in 'biuf' or fortran or not shape:
      raise UserError(f'{path}: expected a numeric C-order array, got dtype {dtype}, shape '
                      f'{shape}{" (Fortran order)" if fortran else ""}')
    self.shape, self.dtype = tuple(shape), dtype
    self.row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
    size = os.path.getsize(path)
    if size < self.offset + self.row_bytes * shape[0]:
      raise UserError(f'{path}: its header says shape {self.shape} ({dtype}) but the file '
                      f'holds {size} bytes; it is truncated')

  def __len__(self) -> int:
    return self.shape[0]

  def read(self, start: int, stop: int) -> np.ndarray:
    """Rows start … stop − 1."""
    start, stop = max(start, 0), min(stop, len(self))
    with open(self.path, 'rb') as f:
      data = os.pread(f.fileno(), self.row_bytes * max(stop - start, 0),
                      self.offset + self.row_bytes * start)
    return np.frombuffer(data, self.dtype).reshape((max(stop - start, 0),) + self.shape[1:])

  def __getitem__(self, i: int) -> np.ndarray:
    if not -len(self) <= i < len(self):
      raise IndexError(i)
    return self.read(i % len(self), i % len(self) + 1)[0]
