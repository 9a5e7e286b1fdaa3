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
