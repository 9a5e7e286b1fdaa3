"""Detection metrics (seed 001 §4.3): ROC, PR, AUROC and AUPR through scikit-learn; EER and
the threshold metrics, which it lacks, here.

Convention: `labels` are 1 for anomalous, 0 for normal; `scores` are higher for more
anomalous samples. Tied scores are one threshold step.
"""

import numpy as np
from scipy import stats
from sklearn import metrics as skm


def _check(labels, scores):
  labels = np.asarray(labels).ravel().astype(np.int64)
  scores = np.asarray(scores, np.float64).ravel()
  if labels.shape != scores.shape:
    raise ValueError(f'labels {labels.shape} and scores {scores.shape} differ in length')
  if not np.all(np.isfinite(scores)):
    raise ValueError('scores contain NaN or inf')
  return labels, scores


def roc_curve(labels, scores):
  """(fpr, tpr, thresholds) at every distinct score, highest threshold first; starts at (0,0)
  with threshold +inf (scikit-learn)."""
  labels, scores = _check(labels, scores)
  return skm.roc_curve(labels, scores, drop_intermediate=False)


def auroc(labels, scores) -> float:
  labels, scores = _check(labels, scores)
  if labels.min() == labels.max():
    raise ValueError('AUROC needs both normal and anomalous samples')
  return float(skm.roc_auc_score(labels, scores))


def pr_curve(labels, scores):
  """(precision, recall, thresholds) at every distinct score, highest threshold first
  (scikit-learn's curve without its closing (1, 0) point)."""
  labels, scores = _check(labels, scores)
  precision, recall, thresholds = skm.precision_recall_curve(labels, scores)
  return precision[:-1][::-1], recall[:-1][::-1], thresholds[::-1]


def aupr(labels, scores) -> float:
  """Area under the PR curve as average precision: Σ (R_n − R_{n−1}) P_n (scikit-learn)."""
  labels, scores = _check(labels, scores)
  return float(skm.average_precision_score(labels, scores))


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
  return skm.confusion_matrix(np.ravel(labels), np.ravel(predicted), labels=[0, 1])


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
  """Mean, half-width of the Student-t confidence interval and sample standard deviation
  (what seed 004 reports over its repetitions); both None for n < 2."""
  v = np.asarray(values, np.float64)
  n = len(v)
  half = std = None
  if n > 1:
    std = float(v.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * std / np.sqrt(n))
  return {'mean': float(v.mean()), 'ci95': half, 'std': std, 'n': n}
