"""t-SNE of frame features (seed 004's feature analysis): every per-frame vector, and one
vector per video aggregated by max, with the seed's settings (perplexity 10, 5000
iterations; scikit-learn's Barnes–Hut t-SNE)."""

import numpy as np
from sklearn.manifold import TSNE


def embed(x: np.ndarray, perplexity: float = 10.0, max_iter: int = 5000, seed: int = 0):
  """(N, D) → (N, 2). Perplexity is capped at (N − 1) / 3 (t-SNE needs perplexity < N; a
  few videos cannot carry the seed's 10)."""
  p = min(perplexity, max((len(x) - 1) / 3, 1.0))
  return TSNE(2, perplexity=p, max_iter=max_iter, init='pca', random_state=seed).fit_transform(
      np.asarray(x, np.float64)).astype(np.float32)


def per_video_max(features: np.ndarray, labels: np.ndarray, videos: np.ndarray):
  """Per video: the max over its frames of each feature, and 1 if any frame is anomalous."""
  ids = np.unique(videos)
  return (np.stack([features[videos == v].max(0) for v in ids]),
          np.array([int(labels[videos == v].max()) for v in ids]))


def embeddings(features, labels, videos, perplexity=10.0, max_iter=5000, seed=0) -> dict:
  """Both of the seed's t-SNE views: per frame and per video (max-aggregated)."""
  video_x, video_labels = per_video_max(features, labels, videos)
  return {'frames': embed(features, perplexity, max_iter, seed), 'frame_labels': labels,
          'videos': embed(video_x, perplexity, max_iter, seed), 'video_labels': video_labels}
