"""Frame-level video evaluation (METHODS.md §0, video protocol; seed 003 "Normality score").

Per-frame scores are errors e(t) (higher = more anomalous). The normality score of seed 003
is p_u = 1 − (e − min_video e)/(max_video e − min_video e); its complement is the per-video
min–max normalised error. The literature pools frames three ways, all reported, named:
  auroc                 (c) one global normalisation over all frames (= the raw scores);
  auroc_per_video_norm  (a) min–max per video, then all frames concatenated (MemAE's code;
                        the usual "frame-level AUC"), with its EER `eer_per_video_norm`;
  auroc_mean_per_video  (b) the mean of per-video AUROCs, over videos with both classes.
"""

import numpy as np

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


def frame_metrics(labels, scores, videos) -> dict:
  labels, scores, videos = np.asarray(labels), np.asarray(scores), np.asarray(videos)
  scaled = per_video_normalized(scores, videos)
  per_video = [metrics.auroc(labels[videos == v], scores[videos == v])
               for v in np.unique(videos) if len(np.unique(labels[videos == v])) == 2]
  return {'auroc_per_video_norm': metrics.auroc(labels, scaled),
          'eer_per_video_norm': metrics.eer(labels, scaled),
          'auroc_mean_per_video': float(np.mean(per_video)) if per_video else float('nan')}
