"""Pixel-level metrics from statistics accumulated batch by batch, in memory that does not
grow with the test split (ShanghaiTech's 40,791 test frames at 256² are ~2.7 billion
pixels: their maps and masks would need ~21 GB as float32).

Pixel AUROC and AUPRO come from three histograms over the same fixed bins:
  normal      count of normal pixels (mask 0) per bin
  anomalous   count of anomalous pixels (mask 1) per bin
  overlap     Σ over anomalous pixels of 1 / (size of their ground-truth region) per bin
With R regions in all, the per-region overlap (PRO) at threshold t is the mean over regions
of the share of the region's pixels scoring ≥ t = (overlap pixels ≥ t) / R: one histogram,
however many regions. Regions are the 8-connected components of each frame's mask, as in
the MVTec AD evaluation (Bergmann et al., IJCV 2021); AUPRO is the area under PRO against
the false-positive rate up to `limit` (0.3), divided by `limit`.

The bins are fixed in the float's representation, not in a range (raw pixel scores have
none known in advance): a float32 score's bits, mapped so that their order is the order of
the values (negatives flipped), keep their top `bits` bits (default 20: a bin spans 2⁻¹¹
of its value, ~0.05%, over every finite float). Thresholds at bin edges are exact points of
the exact curves; within a bin its pixels count as tied. The approximation is bounded and
reported with the metrics:
  AUROC   |binned − exact| ≤ Σ_b normal_b · anomalous_b / (2 · N · A)   (pairs in one bin)
  AUPRO   |binned − exact| ≤ Σ_b ΔFPR_b · ΔPRO_b / (2 · limit)          (the exact curve stays
          in each bin's box, the trapezoid is its diagonal)
tests/test_metrics.py checks both against scikit-learn and a brute-force AUPRO.
"""

import numpy as np
import scipy.ndimage as ndi

EIGHT = np.ones((3, 3), bool)        # 8-connectivity (MVTec AD's evaluation)


def bin_keys(scores: np.ndarray, bits: int) -> np.ndarray:
  """Order-preserving bin index of float32 scores: equal order of values and of keys."""
  scores = np.asarray(scores, np.float32) + np.float32(0)     # −0 → +0: one bin for zero
  u = np.ascontiguousarray(scores).view(np.uint32)
  u = np.where(u >> 31, ~u, u | np.uint32(1 << 31))
  return (u >> np.uint32(32 - bits)).astype(np.int64)


class PixelStats:
  """Accumulates (pixel scores, masks) batches; AUROC, AUPRO and their curves at the end."""

  def __init__(self, bits: int = 20, limit: float = 0.3):
    if not 8 <= bits <= 24:
      raise ValueError(f'bits must be in 8..24, got {bits}')
    self.bits, self.limit = bits, limit
    n = 1 << bits
    self.normal = np.zeros(n, np.int64)
    self.anomalous = np.zeros(n, np.int64)
    self.overlap = np.zeros(n, np.float64)
    self.regions = 0

  def update(self, scores, masks) -> None:
    """scores (N, H, W) float, masks (N, H, W) with anomalous pixels > 0.5."""
    scores = np.asarray(scores, np.float32)
    masks = np.asarray(masks) > 0.5
    if scores.shape != masks.shape:
      raise ValueError(f'pixel scores {scores.shape} and masks {masks.shape} differ')
    if not np.isfinite(scores).all():
      raise ValueError('pixel scores contain NaN or inf')
    keys = bin_keys(scores, self.bits)
    n = 1 << self.bits
    self.normal += np.bincount(keys[~masks], minlength=n)
    bad = keys[masks]
    if bad.size:
      self.anomalous += np.bincount(bad, minlength=n)
      weights = np.zeros(masks.shape, np.float64)
      for i, m in enumerate(masks):
        if m.any():
          regions, count = ndi.label(m, EIGHT)
          sizes = np.bincount(regions.ravel())
          weights[i][m] = 1.0 / sizes[regions[m]]
          self.regions += count
      self.overlap += np.bincount(keys[masks], weights=weights[masks], minlength=n)

  # ------------------------------------------------------------------ curves

  def _rates(self):
    """(fpr, tpr, pro) at every bin edge, from the highest threshold down, starting at 0."""
    def down(h):
      return np.concatenate([[0.0], np.cumsum(h[::-1], dtype=np.float64)])
    n, a = self.normal.sum(), self.anomalous.sum()
    if n == 0 or a == 0:
      raise ValueError('pixel metrics need both normal and anomalous pixels')
    return (down(self.normal) / n, down(self.anomalous) / a,
            down(self.overlap) / max(self.regions, 1))

  def roc(self):
    """(fpr, tpr) at the bin edges where either changes."""
    fpr, tpr, _ = self._rates()
    keep = np.concatenate([[True], (np.diff(fpr) > 0) | (np.diff(tpr) > 0)])
    return fpr[keep], tpr[keep]

  def auroc(self) -> float:
    fpr, tpr = self.roc()
    return float(np.trapezoid(tpr, fpr))

  def auroc_bound(self) -> float:
    n, a = self.normal.sum(), self.anomalous.sum()
    return float(np.sum(self.normal * self.anomalous.astype(np.float64)) / (2.0 * n * a))

  def pro(self):
    """(fpr, pro) at the bin edges where either changes."""
    fpr, _, pro = self._rates()
    keep = np.concatenate([[True], (np.diff(fpr) > 0) | (np.diff(pro) > 0)])
    return fpr[keep], pro[keep]

  def aupro(self) -> float:
    fpr, pro = self.pro()
    return integrate_to(fpr, pro, self.limit) / self.limit

  def aupro_bound(self) -> float:
    fpr, pro = self.pro()
    inside = fpr[1:] <= self.limit
    box = np.diff(fpr) * np.diff(pro)
    return float(np.sum(box[inside]) + (box[~inside][0] if (~inside).any() else 0.0)) / (
        2.0 * self.limit)

  def results(self) -> dict:
    return {'pixel_auroc': self.auroc(), 'pixel_aupro': self.aupro(),
            'pixel_auroc_bin_bound': self.auroc_bound(),
            'pixel_aupro_bin_bound': self.aupro_bound(),
            'pixel_regions': int(self.regions),
            'pixels': int(self.normal.sum() + self.anomalous.sum())}


def integrate_to(x, y, limit: float) -> float:
  """Trapezoid area under the polyline (x, y) (x non-decreasing) from x[0] to `limit`,
  the last segment cut at `limit` by linear interpolation."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  inside = x <= limit
  xs, ys = x[inside], y[inside]
  if (~inside).any() and len(xs):
    j = int(np.argmax(~inside))
    t = (limit - x[j - 1]) / (x[j] - x[j - 1])
    xs, ys = np.append(xs, limit), np.append(ys, y[j - 1] + t * (y[j] - y[j - 1]))
  return float(np.trapezoid(ys, xs))
