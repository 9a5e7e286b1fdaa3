"""The real video datasets' published layouts, listed as videos for the store
(vadjax/data/store.py prepares them; vadjax/data/real.py holds their protocols).

A listing reads folder names, counts and ground-truth files, never a frame: every error it
can find without decoding (a missing folder, a label file of the wrong length, masks that do
not match their frames in number) is a one-line `UserError` before preparation starts.
"""

import json
import os
import re

import numpy as np

from vadjax.data import formats
from vadjax.data.frames import find
from vadjax.data.store import Listing, VideoSpec
from vadjax.registry import UserError


def _zeros(n, masks=None):
  del masks
  return np.zeros(n, np.int32)


def _image_frames(paths):
  """frames(start) over a list of frame images."""
  return lambda start: (formats.read_image(p) for p in paths[start:])


def _video_frames(path, first: int = 0, stop: int | None = None):
  """frames(start) over frames first … stop − 1 of a video file."""
  def frames(start):
    for i, frame in enumerate(formats.iter_video(path, start=first + start), first + start):
      if stop is not None and i >= stop:
        return
      yield frame
  return frames


# --------------------------------------------------------------------------- UCSD

UCSD_INSTRUCTIONS = """\
Extract UCSD_Anomaly_Dataset.tar.gz (http://www.svcl.ucsd.edu/projects/anomaly/dataset.html)
into the manual folder, keeping its layout:
  UCSDped{n}/Train/Train001/001.tif …
  UCSDped{n}/Test/Test001/001.tif …, UCSDped{n}/Test/Test001_gt/001.bmp … (where present)
  UCSDped{n}/Test/UCSDped{n}.m (the frame-level ground truth)"""


def ucsd(n: int):
  """UCSD Ped1 (34 train, 36 test videos of 200 frames, 158×238 grey) or Ped2 (16 train,
  12 test videos, 240×360 grey), seed 001 §4.2.5."""
  instructions = UCSD_INSTRUCTIONS.format(n=n)

  def listing(root: str, cfg) -> Listing:
    del cfg
    base = find(root, f'UCSDped{n}', True, f'UCSDped{n} folder', instructions)
    out = {}
    for split, folder in (('train', 'Train'), ('test', 'Test')):
      parent = os.path.join(base, folder)
      if not os.path.isdir(parent):
        raise UserError(f'{parent} is missing.\n{instructions}')
      vids = sorted(d for d in os.listdir(parent) if re.fullmatch(rf'{folder}\d+', d))
      if not vids:
        raise UserError(f'no {folder}NNN video folders in {parent}.\n{instructions}')
      ranges, m_file = None, None
      if split == 'test':
        m_file = os.path.join(parent, f'UCSDped{n}.m')
        if not os.path.isfile(m_file):
          raise UserError(f'the ground truth {m_file} is missing.\n{instructions}')
        ranges = formats.parse_ucsd_m(m_file)
        if len(ranges) != len(vids):
          raise UserError(f'{m_file} lists {len(ranges)} videos but {parent} holds '
                          f'{len(vids)} Test folders; they must match one to one')
      out[split] = [_ucsd_video(parent, v, None if ranges is None else ranges[i], m_file)
                    for i, v in enumerate(vids)]
    return Listing(out)
  return listing, instructions


def _ucsd_video(parent, name, ranges, m_file) -> VideoSpec:
  folder = os.path.join(parent, name)
  paths = formats.files_with(folder, ('.tif', '.tiff'))
  if not paths:
    raise UserError(f'no .tif frames in {folder}')
  gt_dir = os.path.join(parent, f'{name}_gt')
  masks = (formats.files_with(gt_dir, formats.IMAGE_EXTENSIONS)
           if m_file is not None and os.path.isdir(gt_dir) else None)
  labels = ((lambda t, m: formats.ranges_to_labels(ranges, t, folder)) if m_file else _zeros)
  return VideoSpec(name, _image_frames(paths), labels,
                   (lambda: masks) if masks is not None else None,
                   files=paths + (masks or []), annotations=[m_file] if m_file else [],
                   length=len(paths))


# --------------------------------------------------------------------------- Avenue

AVENUE_INSTRUCTIONS = """\
Extract Avenue_Dataset.zip and its ground truth (ground_truth_demo.zip,
http://www.cse.cuhk.edu.hk/leojia/projects/detectabnormal/dataset.html) into the manual folder:
  training_videos/01.avi … 16.avi, testing_videos/01.avi … 21.avi
  testing_label_mask/1_label.mat … 21_label.mat (variable volLabel)"""


def avenue(root: str, cfg) -> Listing:
  """CUHK Avenue (seed 001 §4.2.4): 16 training and 21 testing .avi videos; pixel masks per
  test frame in `testing_label_mask/<n>_label.mat` (frame label = any pixel anomalous)."""
  del cfg
  out = {}
  for split, folder in (('train', 'training_videos'), ('test', 'testing_videos')):
    path = find(root, folder, True, f'{folder} folder', AVENUE_INSTRUCTIONS)
    vids = formats.files_with(path, formats.VIDEO_EXTENSIONS)
    if not vids:
      raise UserError(f'no videos in {path}.\n{AVENUE_INSTRUCTIONS}')
    masks_dir = (find(root, 'testing_label_mask', True, 'testing_label_mask folder',
                      AVENUE_INSTRUCTIONS) if split == 'test' else None)
    out[split] = [_avenue_video(v, masks_dir) for v in vids]
  return Listing(out)


def _avenue_video(path, masks_dir) -> VideoSpec:
  name = os.path.splitext(os.path.basename(path))[0]
  if masks_dir is None:
    return VideoSpec(name, _video_frames(path), _zeros, files=[path],
                     length=lambda: formats.video_length(path))
  mat = os.path.join(masks_dir, f'{int(name)}_label.mat') if name.isdigit() else ''
  if not os.path.isfile(mat):
    raise UserError(f'test video {path} has no ground truth {mat or name + "_label.mat"}')
  return VideoSpec(name, _video_frames(path),
                   lambda n, m: m.reshape(len(m), -1).any(axis=1).astype(np.int32),
                   lambda: formats.read_avenue_masks(mat),          # one video's at a time
                   files=[path], annotations=[mat],
                   length=lambda: formats.video_length(path))


# --------------------------------------------------------------------------- Subway

SUBWAY_INSTRUCTIONS = """\
Place the Subway videos (Adam et al., PAMI 2008) and their event annotations in the manual folder:
  a video whose name contains `entrance` (or `exit`), e.g. subway_entrance_turnstiles.AVI
  entrance_annotations.json (or exit_…): anomalous event frame numbers (0-based, in the whole
  video) as a JSON list or a JSON object of lists (the seed 001 code's format), or a .txt
  file of frame numbers."""
SUBWAY_TRAIN_MINUTES = {'entrance': 15.0, 'exit': 5.0}
SUBWAY_WINDOW = 15      # the stored labels' window; loading re-labels with data.label_window


def subway(root: str, cfg) -> Listing:
  """Subway Entrance / Exit (seed 001 §4.2.6): one long video each; the first 15 (entrance)
  or 5 (exit) minutes train, the rest tests. The ground truth is event frames; each labels
  the frames within ±`window` of it (the thesis: 15; the seed 001 code: 10 for entrance)."""
  cat = cfg.category
  if cat not in SUBWAY_TRAIN_MINUTES:
    raise UserError(f"subway categories are 'entrance' and 'exit', got {cat!r}")
  video = find(root, rf'(?i).*{cat}.*\.(avi|mp4|mov|mkv|mpg|mpeg)', False, f'{cat} video',
               SUBWAY_INSTRUCTIONS)
  notes = find(root, rf'(?i){cat}.*annotations?\.(json|txt)', False, f'{cat} annotations',
               SUBWAY_INSTRUCTIONS)
  events = read_events(notes)
  n_train = int(round(SUBWAY_TRAIN_MINUTES[cat] * 60 * formats.video_fps(video)))
  total = formats.video_length(video)
  test_labels = lambda t, m: event_labels(events, n_train, t, SUBWAY_WINDOW)   # noqa: E731
  return Listing(
      {'train': [VideoSpec(f'{cat}_train', _video_frames(video, 0, n_train), _zeros,
                           files=[video], length=min(n_train, total or n_train))],
       'test': [VideoSpec(f'{cat}_test', _video_frames(video, n_train), test_labels,
                          files=[video], annotations=[notes],
                          length=total - n_train if total else None)]},
      meta={'train_frames': n_train, 'events': events.tolist()})


def event_labels(events, first: int, length: int, window: int) -> np.ndarray:
  """Labels of frames first … first + length − 1: 1 within ±window of an event frame."""
  f = np.arange(first, first + length)
  lo = np.searchsorted(events, f - window, side='left')
  hi = np.searchsorted(events, f + window, side='right')
  return (hi > lo).astype(np.int32)


def read_events(path: str) -> np.ndarray:
  """Event frame numbers from a JSON list / object of lists, or whitespace/comma text."""
  try:
    with open(path) as f:
      text = f.read()
    if path.lower().endswith('.json'):
      data = json.loads(text)
      values = ([v for vs in data.values() for v in vs] if isinstance(data, dict) else data)
    else:
      values = text.replace(',', ' ').split()
    events = np.array(sorted(int(v) for v in values), np.int64)
  except (OSError, ValueError, TypeError, AttributeError) as e:
    raise UserError(f'cannot read event annotations {path}: {e}; expected frame numbers as a '
                    f'JSON list, a JSON object of lists, or text') from None
  if (events < 0).any():
    raise UserError(f'{path}: negative frame numbers')
  return events


# --------------------------------------------------------------------------- ShanghaiTech

SHANGHAITECH_INSTRUCTIONS = """\
Extract the ShanghaiTech Campus dataset (https://svip-lab.github.io/dataset/campus_dataset.html)
into the manual folder, keeping its layout:
  training/videos/01_001.avi … 13_xxx.avi        (330 videos, <scene>_<nnn>.avi)
  testing/frames/01_0014/000.jpg …               (107 videos, a folder of frames each)
  testing/test_frame_mask/01_0014.npy …          (per-frame 0/1 labels)
  testing/test_pixel_mask/01_0014.npy …          (per-pixel 0/1 masks, frames × H × W)"""
SHANGHAITECH_SCENES = [f'{i:02d}' for i in range(1, 14)]


def _numbered(path: str):
  stem = os.path.splitext(os.path.basename(path))[0]
  return (0, int(stem), stem) if stem.isdigit() else (1, 0, stem)


def shanghaitech(root: str, cfg) -> Listing:
  """ShanghaiTech Campus (Liu et al., CVPR 2018; seed 003 Tab. 2): 13 scenes, 330 training
  videos (274,515 frames, 856×480) and 107 test videos (40,791 frames) with frame labels and
  pixel masks. Every scene is prepared together; categories choose scenes at loading."""
  del cfg
  train_dir = find(root, 'videos', True, 'training/videos folder', SHANGHAITECH_INSTRUCTIONS)
  test_root = os.path.join(os.path.dirname(os.path.dirname(train_dir)), 'testing')
  frames_dir, labels_dir, masks_dir = (os.path.join(test_root, d) for d in
                                       ('frames', 'test_frame_mask', 'test_pixel_mask'))
  for d in (frames_dir, labels_dir, masks_dir):
    if not os.path.isdir(d):
      raise UserError(f'{d} is missing.\n{SHANGHAITECH_INSTRUCTIONS}')
  videos = [p for p in formats.files_with(train_dir, formats.VIDEO_EXTENSIONS)
            if re.fullmatch(r'\d\d_\d+', os.path.splitext(os.path.basename(p))[0])]
  if not videos:
    raise UserError(f'no <scene>_<nnn>.avi videos in {train_dir}.\n{SHANGHAITECH_INSTRUCTIONS}')
  tests = sorted(d for d in os.listdir(frames_dir)
                 if re.fullmatch(r'\d\d_\d+', d) and os.path.isdir(os.path.join(frames_dir, d)))
  if not tests:
    raise UserError(f'no <scene>_<nnnn> frame folders in {frames_dir}.\n'
                    f'{SHANGHAITECH_INSTRUCTIONS}')
  train = [VideoSpec(os.path.splitext(os.path.basename(p))[0], _video_frames(p), _zeros,
                     files=[p], length=lambda p=p: formats.video_length(p)) for p in videos]
  test = [_shanghaitech_test(frames_dir, labels_dir, masks_dir, v) for v in tests]
  return Listing({'train': train, 'test': test})


def _shanghaitech_test(frames_dir, labels_dir, masks_dir, name) -> VideoSpec:
  folder = os.path.join(frames_dir, name)
  paths = sorted(formats.files_with(folder, formats.IMAGE_EXTENSIONS), key=_numbered)
  if not paths:
    raise UserError(f'no frame images in {folder}')
  label_file, mask_file = (os.path.join(d, f'{name}.npy') for d in (labels_dir, masks_dir))
  for f in (label_file, mask_file):
    if not os.path.isfile(f):
      raise UserError(f'test video {name} has no ground truth {f}')
  labels = formats.NpyRows(label_file)
  masks = formats.NpyRows(mask_file)
  for what, rows in (('frame labels', labels), ('pixel masks', masks)):
    if len(rows) != len(paths):
      raise UserError(f'{name}: {len(paths)} frames but {len(rows)} {what} in {rows.path}; '
                      f'frames and ground truth do not match')
  if len(labels.shape) != 1 or len(masks.shape) != 3:
    raise UserError(f'{name}: expected frame labels of shape (T,) and pixel masks of shape '
                    f'(T, H, W); got {labels.shape} in {label_file} and {masks.shape} in '
                    f'{mask_file}')

  def frame_labels(n, m):
    values = labels.read(0, len(labels))
    if not np.isin(values, (0, 1)).all():
      raise UserError(f'{label_file}: frame labels must be 0 or 1')
    return values.astype(np.int32)

  return VideoSpec(name, _image_frames(paths), frame_labels, lambda: masks,
                   files=paths + [mask_file], annotations=[label_file], length=len(paths))
