"""Frame-level video evaluation (METHODS.md §0, video protocol; seed 003 "Normality score").

Per-frame scores are errors e(t) (higher = more anomalous). The normality score of seed 003
is p_u = 1 − (e − min_video e)/(max_video e − min_video e); its complement is the per-video
min–max normalised error. The literature pools frames three ways, all reported, named:
  auroc                 (c) one global normalisation over all frames (= the raw scores);
  auroc_per_video_norm  (a) min–max per video, then all frames concatenated (MemAE's code;
                        the usual "frame-level AUC"), with its EER `eer_per_video_norm`;
  auroc_mean_per_video  (b) the mean of per-video AUROCs, over videos with both classes.
and seed 001's regularity protocol (§4.9.1, eq. 4.1): s(t) = 1 − per-video min–max e(t),
smoothed with a Savitzky–Golay filter (window 15, polyorder 1; the window capped at the
video's length and made odd, as its code), scored as 1 − s(t), frames concatenated:
  auroc_regularity, eer_regularity.
Per-kind AUROCs on the per-video normalised scores (a): `per_kind_auroc_per_video_norm`.
"""

import numpy as np
import scipy.signal

from vadjax.eval import metrics


def normality(errors) -> np.ndarray:
  """p_u of one video's frame errors (1 = most normal); constant errors give 1."""
  e = np.asarray(errors, np.float64)
  span = e.max() - e.min()
  return np.ones_like(e) if span == 0 else 1 - (e - e.min()) / span


def per_video_normalized(scores, videos) -> np.ndarray:
  """1 − p_u per video: errors min–max scaled within each video."""
  out = np.empty(len(scores), np.float64)
  for v in np.unique(videos):
    sel = videos == v
    out[sel] = 1 - normality(scores[sel])
  return out


def savgol_window(length: int, window: int = 15, polyorder: int = 1) -> int:
  """The window actually used: at most the video's length, odd, above the polyorder."""
  w = min(window, length)
  w -= 1 - w % 2
  return w if w > polyorder else 0


def regularity(errors, window: int = 15, polyorder: int = 1) -> np.ndarray:
  """Seed 001's smoothed regularity s(t) of one video (1 = regular); videos shorter than
  polyorder + 2 frames are left unsmoothed."""
  s = normality(errors)
  w = savgol_window(len(s), window, polyorder)
  return scipy.signal.savgol_filter(s, w, polyorder) if w else s


def per_video_irregularity(scores, videos, window: int = 15, polyorder: int = 1):
  """1 − s(t) for every frame, each video smoothed on its own."""
  out = np.empty(len(scores), np.float64)
  for v in np.unique(videos):
    sel = videos == v
    out[sel] = 1 - regularity(scores[sel], window, polyorder)
  return out


def frame_metrics(labels, scores, videos, kinds=None, kind_names=None, window: int = 15,
                  polyorder: int = 1) -> dict:
  labels, scores, videos = np.asarray(labels), np.asarray(scores), np.asarray(videos)
  scaled = per_video_normalized(scores, videos)
  smooth = per_video_irregularity(scores, videos, window, polyorder)
  per_video = [metrics.auroc(labels[videos == v], scores[videos == v])
               for v in np.unique(videos) if len(np.unique(labels[videos == v])) == 2]
  out = {'auroc_per_video_norm': metrics.auroc(labels, scaled),
         'eer_per_video_norm': metrics.eer(labels, scaled),
         'auroc_mean_per_video': float(np.mean(per_video)) if per_video else float('nan'),
         'auroc_regularity': metrics.auroc(labels, smooth),
         'eer_regularity': metrics.eer(labels, smooth)}
  if kinds is not None:
    kinds, normal = np.asarray(kinds), labels == 0
    out['per_kind_auroc_per_video_norm'] = {
        kind_names[k]: metrics.auroc(labels[normal | (kinds == k)], scaled[normal | (kinds == k)])
        for k in np.unique(kinds[~normal])}
  return out
