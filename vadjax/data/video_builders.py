"""TFDS builders of the real video datasets (the shared parts: vadjax/data/frames.py)."""

import json
import os
import re

import numpy as np

from vadjax.data import formats
from vadjax.data.frames import FrameBuilder, find
from vadjax.registry import UserError


class _UcsdPed(FrameBuilder, skip_registration=True):
  IS_VIDEO = True
  PED = 0

  def _splits(self, root):
    n = self.PED
    base = find(root, f'UCSDped{n}', True, f'UCSDped{n} folder', self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    out = {}
    for split, folder in (('train', 'Train'), ('test', 'Test')):
      parent = os.path.join(base, folder)
      if not os.path.isdir(parent):
        raise UserError(f'{parent} is missing.\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}')
      vids = sorted(d for d in os.listdir(parent) if re.fullmatch(rf'{folder}\d+', d))
      if not vids:
        raise UserError(f'no {folder}NNN video folders in {parent}.\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}')
      ranges = None
      if split == 'test':
        m_file = os.path.join(parent, f'UCSDped{n}.m')
        if not os.path.isfile(m_file):
          raise UserError(f'the ground truth {m_file} is missing.\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}')
        ranges = formats.parse_ucsd_m(m_file)
        if len(ranges) != len(vids):
          raise UserError(f'{m_file} lists {len(ranges)} videos but {parent} holds '
                          f'{len(vids)} Test folders; they must match one to one')
      # a list, so each split's videos are fixed now (the generators run later)
      out[split] = self._video_examples(split, [self._video(parent, v, ranges, i)
                                                for i, v in enumerate(vids)])
    return out

  @staticmethod
  def _video(parent, name, ranges, i):
    paths = formats.files_with(os.path.join(parent, name), ('.tif', '.tiff'))
    if not paths:
      raise UserError(f'no .tif frames in {os.path.join(parent, name)}')
    gt_dir = os.path.join(parent, f'{name}_gt')
    masks = (formats.files_with(gt_dir, formats.IMAGE_EXTENSIONS)
             if ranges is not None and os.path.isdir(gt_dir) else None)
    labels = ((lambda t: formats.ranges_to_labels(ranges[i], t, f'{parent}/{name}'))
              if ranges is not None else (lambda t: np.zeros(t, np.int32)))
    return name, (formats.read_image(p) for p in paths), labels, masks


_UCSD_TEXT = """\
Extract UCSD_Anomaly_Dataset.tar.gz (http://www.svcl.ucsd.edu/projects/anomaly/dataset.html)
into the manual folder, keeping its layout:
  UCSDped{n}/Train/Train001/001.tif …
  UCSDped{n}/Test/Test001/001.tif …, UCSDped{n}/Test/Test001_gt/001.bmp … (where present)
  UCSDped{n}/Test/UCSDped{n}.m (the frame-level ground truth)"""


class VadUcsdPed1(_UcsdPed, skip_registration=True):
  """UCSD Ped1 (seed 001 §4.2.5): 34 train, 36 test videos of 200 frames, 158×238 grey."""
  PED = 1
  MANUAL_DOWNLOAD_INSTRUCTIONS = _UCSD_TEXT.format(n=1)


class VadUcsdPed2(_UcsdPed, skip_registration=True):
  """UCSD Ped2 (seed 001 §4.2.5): 16 train, 12 test videos, 240×360 grey."""
  PED = 2
  MANUAL_DOWNLOAD_INSTRUCTIONS = _UCSD_TEXT.format(n=2)


class VadAvenue(FrameBuilder, skip_registration=True):
  """CUHK Avenue (seed 001 §4.2.4): 16 training and 21 testing .avi videos; pixel masks per
  test frame in `testing_label_mask/<n>_label.mat` (frame label = any pixel anomalous)."""
  IS_VIDEO = True
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Extract Avenue_Dataset.zip and its ground truth (ground_truth_demo.zip,
http://www.cse.cuhk.edu.hk/leojia/projects/detectabnormal/dataset.html) into the manual folder:
  training_videos/01.avi … 16.avi, testing_videos/01.avi … 21.avi
  testing_label_mask/1_label.mat … 21_label.mat (variable volLabel)"""

  def _splits(self, root):
    out = {}
    for split, folder in (('train', 'training_videos'), ('test', 'testing_videos')):
      path = find(root, folder, True, f'{folder} folder', self.MANUAL_DOWNLOAD_INSTRUCTIONS)
      vids = formats.files_with(path, formats.VIDEO_EXTENSIONS)
      if not vids:
        raise UserError(f'no videos in {path}.\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}')
      masks_dir = (find(root, 'testing_label_mask', True, 'testing_label_mask folder',
                        self.MANUAL_DOWNLOAD_INSTRUCTIONS) if split == 'test' else None)
      out[split] = self._video_examples(split, [self._video(v, masks_dir) for v in vids])
    return out

  @staticmethod
  def _video(path, masks_dir):
    name = os.path.splitext(os.path.basename(path))[0]
    if masks_dir is None:
      return name, formats.iter_video(path), lambda t: np.zeros(t, np.int32), None
    mat = os.path.join(masks_dir, f'{int(name)}_label.mat') if name.isdigit() else ''
    if not os.path.isfile(mat):
      raise UserError(f'test video {path} has no ground truth {mat or name + "_label.mat"}')
    masks = formats.read_avenue_masks(mat)
    labels = masks.reshape(len(masks), -1).any(axis=1).astype(np.int32)
    return name, formats.iter_video(path), labels, masks


class VadSubway(FrameBuilder, skip_registration=True):
  """Subway Entrance / Exit (seed 001 §4.2.6): one long video each; the first 15 (entrance)
  or 5 (exit) minutes train, the rest tests. The ground truth is event frames; each labels
  the frames within ±`window` of it (the thesis: 15; the seed 001 code: 10 for entrance)."""
  IS_VIDEO = True
  TRAIN_MINUTES = {'entrance': 15.0, 'exit': 5.0}
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Place the Subway videos (Adam et al., PAMI 2008) and their event annotations in the manual folder:
  a video whose name contains `entrance` (or `exit`), e.g. subway_entrance_turnstiles.AVI
  entrance_annotations.json (or exit_…): anomalous event frame numbers (0-based, in the whole
  video) as a JSON list or a JSON object of lists (the seed 001 code's format), or a .txt
  file of frame numbers."""
  WINDOW = 15      # the stored labels' window; loading re-labels with data.label_window

  def _splits(self, root):
    cat = self.builder_config.category
    if cat not in self.TRAIN_MINUTES:
      raise UserError(f"subway categories are 'entrance' and 'exit', got {cat!r}")
    video = find(root, rf'(?i).*{cat}.*\.(avi|mp4|mov|mkv|mpg|mpeg)', False,
                 f'{cat} video', self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    notes = find(root, rf'(?i){cat}.*annotations?\.(json|txt)', False, f'{cat} annotations',
                 self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    events = read_events(notes)
    n_train = int(round(self.TRAIN_MINUTES[cat] * 60 * formats.video_fps(video)))
    window = self.WINDOW
    self.info.metadata.update(train_frames=n_train, events=events.tolist())

    def part(lo, hi):
      for i, frame in enumerate(formats.iter_video(video)):
        if i >= hi:
          return
        if i >= lo:
          yield frame

    def test_labels(t):
      return event_labels(events, n_train, t, window)

    big = np.iinfo(np.int64).max
    return {'train': self._video_examples('train', [(f'{cat}_train', part(0, n_train),
                                                     lambda t: np.zeros(t, np.int32), None)]),
            'test': self._video_examples('test', [(f'{cat}_test', part(n_train, big),
                                                   test_labels, None)])}


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
