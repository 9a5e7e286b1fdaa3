"""How well an explanation localises an anomaly and how faithful it is to the score
(beyond seed 001 §4.10, which judged explanations by pictures only).

- pixel AUROC: per anomalous image, the ROC AUC of its map against its pixel mask
  (scikit-learn), averaged over images: an explanation's scale is per image, so maps are
  never ranked across images.
- AUPRO (Bergmann et al., MVTec AD): maps min–max scaled per image; for each threshold, the
  false-positive rate over the normal pixels of all images and the mean overlap with each
  connected defect region (scikit-image labels); the area under PRO(FPR) up to FPR 0.3,
  divided by 0.3.
- deletion / insertion (Petsiuk et al. 2018): the score as the map's top pixels are replaced
  by a background (deletion: a faithful map makes it fall fast, lower area is better) or
  copied into the background (insertion: higher is better); areas over the fraction of
  pixels changed, on a grid of `steps` fractions, every image of a curve scored in one batch.
"""

import numpy as np
from skimage import measure
from sklearn import metrics as skm


def pixel_auroc(maps, masks) -> float:
  """Mean over images whose mask has both classes of their map's pixel AUROC."""
  values = [skm.roc_auc_score(m.ravel() > 0.5, s.ravel()) for s, m in zip(maps, masks)
            if 0 < (m > 0.5).sum() < m.size]
  return float(np.mean(values)) if values else float('nan')


def _per_image_scaled(maps):
  maps = np.asarray(maps, np.float64)
  low = maps.min(axis=(1, 2), keepdims=True)
  span = maps.max(axis=(1, 2), keepdims=True) - low
  return (maps - low) / np.where(span > 0, span, 1.0)


def pro_curve(maps, masks, thresholds: int = 200):
  """(fpr, pro) at `thresholds` thresholds over the per-image scaled maps, fpr descending."""
  maps, masks = _per_image_scaled(maps), np.asarray(masks) > 0.5
  regions = []
  for s, m in zip(maps, masks):
    labels = measure.label(m, connectivity=2)
    regions += [np.sort(s[labels == r]) for r in range(1, labels.max() + 1)]
  normal = np.sort(maps[~masks])
  if not regions or not normal.size:
    return None, None
  ts = np.linspace(0.0, 1.0, thresholds)
  # counts of values >= t by binary search on the sorted values
  above = lambda v: (len(v) - np.searchsorted(v, ts, side='left')) / len(v)
  fpr = above(normal)
  pro = np.mean([above(r) for r in regions], axis=0)
  return fpr, pro


def aupro(maps, masks, max_fpr: float = 0.3, thresholds: int = 200) -> float:
  """Area under PRO(FPR) for FPR in [0, max_fpr], over max_fpr (1 is perfect)."""
  fpr, pro = pro_curve(maps, masks, thresholds)
  if fpr is None:
    return float('nan')
  fpr, pro = fpr[::-1], pro[::-1]          # thresholds descending: both non-decreasing
  end = np.interp(max_fpr, fpr, pro)
  keep = fpr < max_fpr
  xs, ys = np.r_[fpr[keep], max_fpr], np.r_[pro[keep], end]
  return float(np.trapezoid(ys, xs) / max_fpr)


def _orders(maps):
  flat = np.asarray(maps, np.float64).reshape(len(maps), -1)
  return np.argsort(-flat, axis=1, kind='stable')


def deletion_insertion(score, images, maps, fill, steps: int = 16) -> tuple[np.ndarray, np.ndarray]:
  """Per image (deletion area, insertion area) of the score over the fraction of pixels
  moved in the map's order; `score` maps images (K, H, W, C) → (K,), `fill` is (N, H, W, C)."""
  images, fill = np.asarray(images, np.float32), np.asarray(fill, np.float32)
  n, h, w = images.shape[:3]
  fractions = np.linspace(0.0, 1.0, steps + 1)
  counts = np.round(fractions * h * w).astype(int)
  deletion, insertion = np.zeros(n), np.zeros(n)
  for i, order in enumerate(_orders(maps)):
    rank = np.empty(h * w, int)
    rank[order] = np.arange(h * w)
    moved = (rank[None] < counts[:, None]).reshape(-1, h, w, 1)        # (steps+1, H, W, 1)
    deleted = np.where(moved, fill[i][None], images[i][None])
    inserted = np.where(moved, images[i][None], fill[i][None])
    s = np.asarray(score(np.concatenate([deleted, inserted])), np.float64)
    deletion[i] = np.trapezoid(s[:steps + 1], fractions)
    insertion[i] = np.trapezoid(s[steps + 1:], fractions)
  return deletion, insertion
