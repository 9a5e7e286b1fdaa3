"""Detection metrics in numpy (seed 001 §4.3): AUROC, AUPR, EER, and the threshold metrics.

Convention: `labels` are 1 for anomalous, 0 for normal; `scores` are higher for more
anomalous samples. Tied scores are handled as one threshold step (as scikit-learn does).
"""

import numpy as np
from scipy import stats


def _check(labels, scores):
  labels = np.asarray(labels).ravel().astype(np.int64)
  scores = np.asarray(scores, np.float64).ravel()
  if labels.shape != scores.shape:
    raise ValueError(f'labels {labels.shape} and scores {scores.shape} differ in length')
  if not np.all(np.isfinite(scores)):
    raise ValueError('scores contain NaN or inf')
  return labels, scores


def roc_curve(labels, scores):
  """(fpr, tpr, thresholds) at every distinct score, highest threshold first; starts at (0,0)."""
  labels, scores = _check(labels, scores)
  order = np.argsort(-scores, kind='mergesort')
  s, y = scores[order], labels[order]
  last_of_run = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
  tp = np.cumsum(y)[last_of_run]
  fp = (last_of_run + 1) - tp
  P, N = max(tp[-1], 1), max(fp[-1], 1)
  return np.r_[0.0, fp / N], np.r_[0.0, tp / P], np.r_[np.inf, s[last_of_run]]


def auroc(labels, scores) -> float:
  fpr, tpr, _ = roc_curve(labels, scores)
  return float(np.trapezoid(tpr, fpr))


def pr_curve(labels, scores):
  """(precision, recall, thresholds), highest threshold first."""
  labels, scores = _check(labels, scores)
  order = np.argsort(-scores, kind='mergesort')
  s, y = scores[order], labels[order]
  last_of_run = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
  tp = np.cumsum(y)[last_of_run]
  predicted = last_of_run + 1
  return tp / predicted, tp / max(tp[-1], 1), s[last_of_run]


def aupr(labels, scores) -> float:
  """Area under the PR curve as average precision: Σ (R_n − R_{n−1}) P_n."""
  precision, recall, _ = pr_curve(labels, scores)
  return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def eer(labels, scores) -> float:
  """Equal error rate: where FPR = FNR on the ROC curve, linearly interpolated."""
  fpr, tpr, _ = roc_curve(labels, scores)
  fnr = 1 - tpr
  d = fpr - fnr                       # increases from -1 to +1 along the curve
  i = int(np.argmax(d >= 0))
  if i == 0 or d[i] == 0:
    return float(fpr[i])
  t = -d[i - 1] / (d[i] - d[i - 1])
  return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def confusion(labels, predicted) -> np.ndarray:
  """2×2 confusion matrix [[TN, FP], [FN, TP]] (rows true, columns predicted)."""
  labels = np.asarray(labels).ravel().astype(int)
  predicted = np.asarray(predicted).ravel().astype(int)
  m = np.zeros((2, 2), np.int64)
  np.add.at(m, (labels, predicted), 1)
  return m


def threshold_metrics(labels, scores, threshold: float, positive: str = 'anomaly') -> dict:
  """Accuracy, precision, recall, F1 and confusion matrix when score > threshold = anomaly.

  `positive` picks the class that precision/recall/F1 are about: 'anomaly' (the usual
  choice) or 'normal' (seed 000 Tab. 4-4/4-5 report the normal class "1" as positive).
  """
  labels, scores = _check(labels, scores)
  predicted = (scores > threshold).astype(int)
  if positive == 'normal':
    labels, predicted = 1 - labels, 1 - predicted
  elif positive != 'anomaly':
    raise ValueError(f"positive must be 'anomaly' or 'normal', got {positive!r}")
  m = confusion(labels, predicted)
  tn, fp, fn, tp = m.ravel()
  precision = tp / (tp + fp) if tp + fp else 0.0
  recall = tp / (tp + fn) if tp + fn else 0.0
  f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
  return {'threshold': float(threshold), 'accuracy': float((tp + tn) / m.sum()),
          'precision': float(precision), 'recall': float(recall), 'f1': float(f1),
          'confusion': m.tolist(), 'positive': positive}


def ranking_metrics(labels, scores) -> dict:
  labels = np.asarray(labels)
  if labels.min() == labels.max():
    raise ValueError('AUROC needs both normal and anomalous samples in the evaluation split')
  return {'auroc': auroc(labels, scores), 'aupr': aupr(labels, scores),
          'eer': eer(labels, scores)}


def mean_ci(values, confidence: float = 0.95) -> dict:
  """Mean and half-width of the Student-t confidence interval (None for n < 2)."""
  v = np.asarray(values, np.float64)
  n = len(v)
  half = None
  if n > 1:
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * v.std(ddof=1) / np.sqrt(n))
  return {'mean': float(v.mean()), 'ci95': half, 'n': n}
