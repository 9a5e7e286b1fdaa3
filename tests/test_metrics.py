"""Metrics and thresholds against scikit-learn and hand-computed examples."""

import numpy as np
import pytest
from sklearn import metrics as skm

from vadjax.eval import metrics, thresholds


def _cases():
  rng = np.random.default_rng(0)
  for n in (7, 50, 400):
    labels = rng.integers(0, 2, n)
    labels[:2] = [0, 1]
    yield labels, rng.normal(size=n) + labels          # continuous scores
    yield labels, np.round(rng.normal(size=n) + labels, 1)   # many ties
    yield labels, rng.integers(0, 3, n).astype(float)        # heavy ties


@pytest.mark.parametrize('labels,scores', list(_cases()))
def test_curves_by_counting(labels, scores):
  """ROC and PR curves (scikit-learn, in our order: highest threshold first) equal counts at
  every distinct score, and AUROC the probability that an anomaly outscores a normal."""
  ts = np.unique(scores)[::-1]
  tp = np.array([np.sum((scores >= t) & (labels == 1)) for t in ts])
  fp = np.array([np.sum((scores >= t) & (labels == 0)) for t in ts])
  fpr, tpr, thr = metrics.roc_curve(labels, scores)
  np.testing.assert_allclose(fpr, np.r_[0, fp / fp[-1]])
  np.testing.assert_allclose(tpr, np.r_[0, tp / tp[-1]])
  np.testing.assert_array_equal(thr[1:], ts)
  precision, recall, pr_thr = metrics.pr_curve(labels, scores)
  np.testing.assert_allclose(precision, tp / (tp + fp))
  np.testing.assert_allclose(recall, tp / tp[-1])
  np.testing.assert_array_equal(pr_thr, ts)
  pos, neg = scores[labels == 1], scores[labels == 0]
  pairs = (pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean()
  assert metrics.auroc(labels, scores) == pytest.approx(pairs, abs=1e-12)
  ap = np.sum(np.diff(np.r_[0, recall]) * precision)
  assert metrics.aupr(labels, scores) == pytest.approx(ap, abs=1e-12)


@pytest.mark.parametrize('labels,scores', list(_cases()))
def test_threshold_metrics_match_sklearn(labels, scores):
  t = float(np.median(scores))
  pred = (scores > t).astype(int)
  m = metrics.threshold_metrics(labels, scores, t)
  assert m['accuracy'] == pytest.approx(skm.accuracy_score(labels, pred))
  assert m['precision'] == pytest.approx(skm.precision_score(labels, pred, zero_division=0))
  assert m['recall'] == pytest.approx(skm.recall_score(labels, pred))
  assert m['f1'] == pytest.approx(skm.f1_score(labels, pred))
  assert m['confusion'] == skm.confusion_matrix(labels, pred, labels=[0, 1]).tolist()
  n = metrics.threshold_metrics(labels, scores, t, positive='normal')
  assert n['precision'] == pytest.approx(skm.precision_score(labels, pred, pos_label=0))
  assert n['recall'] == pytest.approx(skm.recall_score(labels, pred, pos_label=0))


def test_eer_hand_computed():
  # 4 normals, 4 anomalies; one normal above one anomaly: at threshold between them
  # FPR = FNR = 1/4.
  labels = [0, 0, 0, 0, 1, 1, 1, 1]
  scores = [0.1, 0.2, 0.3, 0.65, 0.6, 0.7, 0.8, 0.9]
  assert metrics.eer(labels, scores) == pytest.approx(0.25)
  assert metrics.eer([0, 0, 1, 1], [0, 1, 2, 3]) == 0.0
  # EER from sklearn's curve by brute force on a random case
  rng = np.random.default_rng(1)
  y = rng.integers(0, 2, 300)
  s = rng.normal(size=300) + 1.5 * y
  fpr, tpr, _ = skm.roc_curve(y, s)
  i = np.argmin(np.abs(fpr - (1 - tpr)))
  assert metrics.eer(y, s) == pytest.approx((fpr[i] + 1 - tpr[i]) / 2, abs=0.02)


def test_thresholds_hand_computed():
  train = np.array([1.0, 2.0, 3.0])                      # beta = 2
  other = np.array([6.0, 10.0, 4.0, 4.0])                 # kind 5 mean 8, kind 7 mean 4
  kinds = np.array([5, 5, 7, 7])
  # buffer = (|8-2|/4 + |4-2|/4) / 2 = (1.5 + 0.5) / 2 = 1
  assert thresholds.buffered_threshold(train, other, kinds) == pytest.approx(3.0)
  assert thresholds.mean_threshold(train) == 2.0
  assert thresholds.quantile_threshold(np.arange(101.0), 0.1) == pytest.approx(90.0)
  labels = np.array([0, 0, 0, 1, 1, 0, 1])
  scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.55, 0.9])
  # G-mean: thresholds >=0.4 gives TPR 1, FPR 1/4 -> sqrt(0.75); best
  g = thresholds.gmean_threshold(labels, scores)
  assert 0.3 <= g < 0.4
  assert metrics.threshold_metrics(labels, scores, g)['recall'] == 1.0
  # F1-max: at >= 0.4: P = 3/4, R = 1 -> F1 = 6/7; at >= 0.9: F1 = 1/2
  f = thresholds.f1max_threshold(labels, scores)
  assert metrics.threshold_metrics(labels, scores, f)['f1'] == pytest.approx(6 / 7)


def test_normalizer_and_ci():
  n = thresholds.ScoreNormalizer.fit([2.0, 4.0, 6.0])
  np.testing.assert_allclose(n([2.0, 6.0, 8.0]), [0.0, 1.0, 1.5])
  r = metrics.mean_ci([1.0, 2.0, 3.0])
  # t_{0.975, 2} = 4.3027; s = 1; half = 4.3027 / sqrt(3)
  assert r['mean'] == 2.0 and r['ci95'] == pytest.approx(4.302653 / np.sqrt(3), rel=1e-5)
  assert r['std'] == pytest.approx(1.0)            # the sample std, ddof 1
  assert metrics.mean_ci([0.5])['ci95'] is None


def test_bad_input_errors():
  with pytest.raises(ValueError, match='NaN'):
    metrics.auroc([0, 1], [0.0, np.nan])
  with pytest.raises(ValueError, match='both normal and anomalous'):
    metrics.ranking_metrics([0, 0], [0.1, 0.2])


# ---- pixel metrics from per-batch statistics (vadjax/eval/pixel.py) ----

def _exact_aupro(scores, masks, limit=0.3):
  """By definition, at every distinct score: the false-positive rate over all normal pixels
  and the mean over 8-connected regions (scikit-image) of the share of their pixels at or
  above it; the area up to `limit` (the last segment interpolated), over `limit`."""
  from skimage import measure
  masks = masks > 0.5
  regions = []
  for s, m in zip(scores, masks):
    lab = measure.label(m, connectivity=2)
    regions += [np.sort(s[lab == r]) for r in range(1, lab.max() + 1)]
  normal = np.sort(scores[~masks])
  ts = np.unique(scores)[::-1]
  above = lambda v: (len(v) - np.searchsorted(v, ts, side='left')) / len(v)   # noqa: E731
  fpr = np.r_[0, above(normal)]
  pro = np.r_[0, np.mean([above(r) for r in regions], axis=0)]
  inside = fpr <= limit
  xs, ys = fpr[inside], pro[inside]
  j = int(np.argmax(~inside))
  end = pro[j - 1] + (limit - fpr[j - 1]) / (fpr[j] - fpr[j - 1]) * (pro[j] - pro[j - 1])
  return np.trapezoid(np.r_[ys, end], np.r_[xs, limit]) / limit


def _pixel_fixture(seed, ties=False):
  rng = np.random.default_rng(seed)
  masks = np.zeros((30, 24, 24), np.float32)
  for i in range(30):
    for _ in range(rng.integers(0, 4)):        # 0–3 boxes, some touching, of 1–64 pixels
      y, x = rng.integers(0, 22, 2)
      h, w = rng.integers(1, 9, 2)
      masks[i, y:y + h, x:x + w] = 1
  scores = masks * rng.uniform(0.1, 2.0) + rng.gamma(2.0, 0.3, masks.shape) - 0.4
  if ties:
    scores = np.round(scores, 1)               # heavy ties, negative scores too
  return scores.astype(np.float32), masks


@pytest.mark.parametrize('seed,ties', [(0, False), (1, False), (2, True)])
def test_binned_pixel_metrics_equal_exact_ones(seed, ties):
  """AUROC against scikit-learn and AUPRO against the definition: |Δ| ≤ 1e-3, and within
  the bound the statistics report; the same whatever the batches."""
  from vadjax.eval.pixel import PixelStats
  scores, masks = _pixel_fixture(seed, ties)
  stats = PixelStats()
  for i in range(0, len(scores), 7):
    stats.update(scores[i:i + 7], masks[i:i + 7])
  r = stats.results()
  auroc = skm.roc_auc_score(masks.ravel() > 0.5, scores.ravel())
  aupro = _exact_aupro(scores, masks)
  assert abs(r['pixel_auroc'] - auroc) <= min(1e-3, r['pixel_auroc_bin_bound'] + 1e-12)
  assert abs(r['pixel_aupro'] - aupro) <= min(1e-3, r['pixel_aupro_bin_bound'] + 1e-12)
  if ties:                          # tied values share a bin: counted half, as sklearn does
    assert r['pixel_auroc'] == pytest.approx(auroc, abs=1e-12)
  whole = PixelStats()
  whole.update(scores, masks)
  assert whole.results() == pytest.approx(r, rel=1e-12)
  from skimage import measure
  assert r['pixel_regions'] == sum(measure.label(m > 0.5, connectivity=2).max() for m in masks)
  # a coarse binning shows its error, bounded
  coarse = PixelStats(bits=10)
  coarse.update(scores, masks)
  assert abs(coarse.auroc() - auroc) <= coarse.auroc_bound() + 1e-12
  assert abs(coarse.aupro() - aupro) <= coarse.aupro_bound() + 1e-12


def test_bin_keys_keep_the_order_of_every_float():
  from vadjax.eval.pixel import bin_keys
  rng = np.random.default_rng(0)
  x = (rng.normal(size=20000) * 10.0 ** rng.uniform(-38, 38, 20000)).astype(np.float32)
  x = np.r_[x[np.isfinite(x)], 0.0, -0.0, 1e-45, -1e-45, 3.4e38, -3.4e38].astype(np.float32)
  order = np.argsort(x, kind='stable')
  for bits in (8, 16, 20, 24):
    keys = bin_keys(x, bits)
    assert np.all(np.diff(keys[order]) >= 0) and keys.min() >= 0 and keys.max() < 2 ** bits
  assert bin_keys(np.float32([0.0, -0.0]), 20)[0] == bin_keys(np.float32([0.0, -0.0]), 20)[1]


def test_pixel_stats_refuse_bad_input():
  from vadjax.eval.pixel import PixelStats
  stats = PixelStats()
  with pytest.raises(ValueError, match='differ'):
    stats.update(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)))
  with pytest.raises(ValueError, match='NaN'):
    stats.update(np.full((1, 4, 4), np.nan), np.zeros((1, 4, 4)))
  stats.update(np.zeros((1, 4, 4)), np.zeros((1, 4, 4)))
  with pytest.raises(ValueError, match='both normal and anomalous'):
    stats.auroc()
