"""Score normalisation and decision thresholds (shared/METHODS.md §0).

All thresholds are computed on data the test set never touches: training normals and the
labelled validation split. They live in the normalised score space, so that evaluation and
later inference agree once the `ScoreNormalizer` is stored with the checkpoint.
"""

import dataclasses

import numpy as np

from vadjax.eval import metrics

THRESHOLDS = ('mean', 'buffered', 'gmean', 'f1max', 'quantile')


@dataclasses.dataclass
class ScoreNormalizer:
  """Min–max scaling fitted on normal training/validation scores (seed 001 §3.9)."""
  low: float
  high: float

  @classmethod
  def fit(cls, scores) -> 'ScoreNormalizer':
    s = np.asarray(scores, np.float64)
    return cls(float(s.min()), float(s.max()))

  def __call__(self, scores):
    return (np.asarray(scores, np.float64) - self.low) / max(self.high - self.low, 1e-12)

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def mean_threshold(train_normal_scores) -> float:
  """Seed 000 Tab. 4-5: the mean score of the normal training data (β)."""
  return float(np.mean(train_normal_scores))


def buffered_threshold(train_normal_scores, other_scores, other_kinds) -> float:
  """Seed 000 §4.1.2: β + (1/n) Σ_i |α_i − β| / 4, α_i the mean score of anomaly kind i.

  The seed takes α_i from the training data of the anomalous classes; we take them from the
  labelled validation split (never from test).
  """
  beta = mean_threshold(train_normal_scores)
  other_scores, other_kinds = np.asarray(other_scores), np.asarray(other_kinds)
  kinds = np.unique(other_kinds)
  if len(kinds) == 0:
    raise ValueError('the buffered threshold needs anomalous validation samples')
  alphas = np.array([other_scores[other_kinds == k].mean() for k in kinds])
  return float(beta + np.mean(np.abs(alphas - beta) / 4))


def gmean_threshold(labels, scores) -> float:
  """Seed 001 eq. 3.21: argmax over ROC thresholds of sqrt(TPR·(1 − FPR))."""
  fpr, tpr, thr = metrics.roc_curve(labels, scores)
  g = np.sqrt(tpr * (1 - fpr))[1:]          # skip the +inf start point
  # predicted anomalous = score >= thr; our rule is score > t, so step just below it
  return float(np.nextafter(thr[1:][int(np.argmax(g))], -np.inf))


def f1max_threshold(labels, scores) -> float:
  """The threshold that maximises F1 (anomaly positive) on a labelled validation set."""
  precision, recall, thr = metrics.pr_curve(labels, scores)
  f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall + 1e-300), 0)
  return float(np.nextafter(thr[int(np.argmax(f1))], -np.inf))


def quantile_threshold(normal_scores, contamination: float) -> float:
  """The (1 − contamination) quantile of normal scores, when no labelled anomalies exist."""
  if not 0 <= contamination < 1:
    raise ValueError(f'contamination must be in [0, 1), got {contamination}')
  return float(np.quantile(np.asarray(normal_scores), 1 - contamination))


def fit_thresholds(train_scores, val_scores, val_labels, val_kinds,
                   contamination: float) -> dict[str, float]:
  """Every threshold of `THRESHOLDS` from normal training scores and labelled val scores."""
  val_scores, val_labels = np.asarray(val_scores), np.asarray(val_labels)
  out = {'mean': mean_threshold(train_scores),
         'quantile': quantile_threshold(train_scores, contamination)}
  anomalous = val_labels == 1
  if anomalous.any():
    out['buffered'] = buffered_threshold(train_scores, val_scores[anomalous],
                                         np.asarray(val_kinds)[anomalous])
    if (~anomalous).any():
      out['gmean'] = gmean_threshold(val_labels, val_scores)
      out['f1max'] = f1max_threshold(val_labels, val_scores)
  return out
