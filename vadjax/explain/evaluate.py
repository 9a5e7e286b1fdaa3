"""How well an explanation localises an anomaly and how faithful it is to the score
(beyond seed 001 §4.10, which judged explanations by pictures only).

- pixel AUROC: per anomalous image, the ROC AUC of its map against its pixel mask
  (scikit-learn), averaged over images: an explanation's scale is per image, so maps are
  never ranked across images.
- AUPRO (Bergmann et al., MVTec AD): maps min–max scaled per image; for each threshold, the
  false-positive rate over the normal pixels of all images and the mean overlap with each
  connected defect region; the area under PRO(FPR) up to FPR 0.3, divided by 0.3
  (vadjax/eval/pixel.py computes it for evaluation and explanations alike).
- by defect contrast: pixel AUROC over the images whose defect is darker (brighter) on
  average than a 3-pixel ring around it; z⁺ and gradient × input give dark pixels little
  relevance (docs/explanations.md).
- deletion / insertion (Petsiuk et al. 2018): the score as the map's top pixels are replaced
  by a background (deletion: a faithful map makes it fall fast, lower area is better) or
  copied into the background (insertion: higher is better); areas over the fraction of
  pixels changed, on a grid of `steps` fractions, every image of a curve scored in one batch.
"""

import numpy as np
from scipy import ndimage
from sklearn import metrics as skm

from vadjax.eval.pixel import PixelStats


def pixel_auroc(maps, masks) -> float:
  """Mean over images whose mask has both classes of their map's pixel AUROC."""
  values = [skm.roc_auc_score(m.ravel() > 0.5, s.ravel()) for s, m in zip(maps, masks)
            if 0 < (m > 0.5).sum() < m.size]
  return float(np.mean(values)) if values else float('nan')


def defect_contrast(images, masks, ring: int = 3) -> np.ndarray:
  """Per image: +1 if its defect (mask > 0.5) is brighter on average (over channels) than
  the `ring`-pixel band around it, −1 if darker, 0 without a defect or a band."""
  out = np.zeros(len(masks), int)
  for i, (im, m) in enumerate(zip(np.asarray(images), np.asarray(masks) > 0.5)):
    band = ndimage.binary_dilation(m, iterations=ring) & ~m
    if m.any() and band.any():
      grey = im.mean(-1) if im.ndim == 3 else im
      out[i] = 1 if grey[m].mean() > grey[band].mean() else -1
  return out


def _per_image_scaled(maps):
  maps = np.asarray(maps, np.float64)
  low = maps.min(axis=(1, 2), keepdims=True)
  span = maps.max(axis=(1, 2), keepdims=True) - low
  return (maps - low) / np.where(span > 0, span, 1.0)


def aupro(maps, masks, max_fpr: float = 0.3) -> float:
  """Area under PRO(FPR) for FPR in [0, max_fpr], over max_fpr (1 is perfect), of the
  per-image scaled maps (vadjax/eval/pixel.py, the evaluation's own AUPRO)."""
  stats = PixelStats(limit=max_fpr)
  stats.update(_per_image_scaled(maps), masks)
  if not stats.regions or not stats.normal.any():
    return float('nan')
  return stats.aupro()


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
