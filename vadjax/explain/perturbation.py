"""The perturbation explainers of seed 001 §3.8: LIME (eq. 3.19), KernelSHAP (eq. 3.20) and
the rectangle counterfactual (§3.8.4), over superpixels, every perturbed image scored in
one jitted batch (the seed's Keras code scored one sample at a time).

An image's features are its superpixels (`segment`). A coalition z ∈ {0, 1}^M keeps the
superpixels with z = 1 and replaces the others by a background (`background`). Both LIME
and KernelSHAP fit a weighted linear surrogate of the score on coalitions; they differ in
the weights and constraints:

- LIME (Ribeiro et al. 2016, as the `lime` package does it): z uniform on {0, 1}^M with
  the first row all ones, weights sqrt(exp(−d²/w²)) of the cosine distance d to the all-ones
  row (w = 0.25), a ridge surrogate (α = 1, intercept): the coefficients.
- KernelSHAP (Lundberg & Lee 2017): weights π(z) = (M − 1) / (C(M, |z|)·|z|·(M − |z|)),
  the surrogate constrained to φ0 = f(∅) and φ0 + Σ φ = f(x); with every coalition
  enumerated its solution is the exact Shapley values, otherwise coalitions are sampled
  with probability ∝ π (in complementary pairs), with equal weights.
"""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage
from skimage import segmentation
from sklearn.linear_model import Ridge

from vadjax.registry import UserError

SEGMENTATIONS = ('quickshift', 'slic')
BACKGROUNDS = ('mean', 'blur', 'recon', 'black')


def segment(image: np.ndarray, method: str = 'quickshift', n_segments: int = 50):
  """(H, W) superpixel labels 0..M−1 of an image (H, W, C) in [0, 1]: quickshift with the
  `lime` package's defaults (kernel 4, max distance 200, ratio 0.2), whose kernel is sized
  for 224² images, so scaled with the side here (at least 1: ~25 superpixels at 32², ~40 at
  64² and 224²); or SLIC with `n_segments`."""
  image = np.asarray(image, np.float64)
  if method == 'quickshift':
    rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image
    kernel = max(1.0, 4.0 * min(image.shape[:2]) / 224)
    labels = segmentation.quickshift(rgb, kernel_size=kernel, max_dist=200, ratio=0.2,
                                     rng=0)
  elif method == 'slic':
    labels = segmentation.slic(image, n_segments=n_segments, compactness=0.1 if
                               image.shape[-1] == 1 else 10.0, channel_axis=-1,
                               start_label=0)
  else:
    raise UserError(f'unknown segmentation {method!r}; choose one of {", ".join(SEGMENTATIONS)}')
  _, labels = np.unique(labels, return_inverse=True)
  return labels.reshape(image.shape[:2]).astype(np.int32)


def background(image: np.ndarray, kind: str, segments=None, recon=None) -> np.ndarray:
  """What a switched-off feature shows: each superpixel's mean colour ('mean', LIME's
  default), a Gaussian blur (σ = 1/16 of the side), the model's reconstruction of the image
  ('recon': normal content) or black."""
  image = np.asarray(image, np.float32)
  if kind == 'mean':
    if segments is None:
      raise UserError("background 'mean' needs the superpixels")
    n = segments.max() + 1
    means = np.stack([ndimage.mean(image[..., c], segments, np.arange(n))
                      for c in range(image.shape[-1])], axis=-1)
    return means[segments].astype(np.float32)
  if kind == 'blur':
    sigma = image.shape[0] / 16
    return ndimage.gaussian_filter(image, (sigma, sigma, 0)).astype(np.float32)
  if kind == 'recon':
    if recon is None:
      raise UserError("background 'recon' needs a model that reconstructs its input")
    return np.asarray(recon, np.float32)
  if kind == 'black':
    return np.zeros_like(image)
  raise UserError(f'unknown background {kind!r}; choose one of {", ".join(BACKGROUNDS)}')


@jax.jit
def compose(image, fill, segments, z):
  """Images (S, H, W, C) keeping the superpixels of each coalition row z (S, M)."""
  keep = jnp.take(z, segments, axis=1)[..., None] > 0
  return jnp.where(keep, image[None], fill[None])


def coalition_scores(explained, image, fill, segments, z) -> np.ndarray:
  """The score of every coalition's image, (S,): composed on device in one program (the
  coalitions padded to 32 features, so one program serves every image), then scored in
  `explained.chunk`-sized jitted batches."""
  z = np.asarray(z, np.float32)
  z = jnp.asarray(np.pad(z, ((0, 0), (0, -z.shape[1] % 32))))
  images = compose(jnp.asarray(image), jnp.asarray(fill), jnp.asarray(segments), z)
  return np.asarray(explained.score(images), np.float64)


def lime_weights(z: np.ndarray, kernel_width: float = 0.25) -> np.ndarray:
  """LIME's proximity π_x: sqrt(exp(−d²/w²)), d the cosine distance to the all-ones row."""
  z = np.asarray(z, np.float64)
  cos = z.sum(1) / (np.sqrt(z.sum(1)) * np.sqrt(z.shape[1]) + 1e-300)
  d = 1.0 - cos
  return np.sqrt(np.exp(-(d ** 2) / kernel_width ** 2))


def lime_surrogate(z, y, weights, alpha: float = 1.0) -> np.ndarray:
  """The weighted ridge surrogate's coefficients (eq. 3.19, Ω = the ridge penalty)."""
  return Ridge(alpha=alpha, fit_intercept=True).fit(z, y, sample_weight=weights).coef_


def lime(explained, image, segments, fill, num_samples: int, rng) -> np.ndarray:
  """LIME's weight of each superpixel for the score of `image`, (M,)."""
  m = int(segments.max()) + 1
  z = rng.integers(0, 2, (num_samples, m))
  z[0] = 1
  y = coalition_scores(explained, image, fill, segments, z)
  return lime_surrogate(z, y, lime_weights(z))


def shapley_kernel(m: int, size) -> np.ndarray:
  """Eq. 3.20: π(z') = (M − 1) / (C(M, |z'|)·|z'|·(M − |z'|)), 0 < |z'| < M."""
  size = np.asarray(size)
  comb = np.array([math.comb(m, int(s)) for s in size.ravel()], np.float64).reshape(size.shape)
  return (m - 1) / (comb * size * (m - size))


def coalitions(m: int, num_samples: int, rng) -> tuple[np.ndarray, np.ndarray]:
  """(z, weights): every coalition but ∅ and the full one with the exact kernel weights
  when 2^M − 2 ≤ num_samples; else num_samples coalitions sampled ∝ π, in complementary
  pairs, with equal weights."""
  if m < 2:
    raise UserError(f'KernelSHAP needs at least 2 features, the image has {m} superpixel(s)')
  if m <= 30 and 2 ** m - 2 <= num_samples:
    z = np.array(list(itertools.product((0, 1), repeat=m)))[1:-1]
    return z, shapley_kernel(m, z.sum(1))
  sizes = np.arange(1, m)
  p = shapley_kernel(m, sizes) * np.array([math.comb(m, int(s)) for s in sizes], np.float64)
  half = (num_samples + 1) // 2
  drawn = rng.choice(sizes, size=half, p=p / p.sum())
  z = np.zeros((half, m), np.int64)
  for row, s in zip(z, drawn):
    row[rng.choice(m, size=s, replace=False)] = 1
  z = np.concatenate([z, 1 - z])[:num_samples]
  return z, np.full(len(z), 1.0 / len(z))


def shap_solve(z, y, weights, f_empty: float, f_full: float) -> np.ndarray:
  """The constrained weighted least squares of KernelSHAP: φ minimising
  Σ π(z)(y − f(∅) − z·φ)² subject to Σ φ = f(x) − f(∅) (the last φ eliminated)."""
  z, y, w = (np.asarray(a, np.float64) for a in (z, y, weights))
  total = f_full - f_empty
  a = z[:, :-1] - z[:, -1:]
  b = y - f_empty - z[:, -1] * total
  aw = a * w[:, None]
  phi, *_ = np.linalg.lstsq(aw.T @ a, aw.T @ b, rcond=None)
  return np.append(phi, total - phi.sum())


def kernel_shap(explained, image, segments, fill, num_samples: int, rng) -> np.ndarray:
  """KernelSHAP's Shapley value of each superpixel for the score of `image`, (M,)."""
  m = int(segments.max()) + 1
  z, w = coalitions(m, num_samples, rng)
  ends = np.stack([np.zeros(m), np.ones(m)])
  y = coalition_scores(explained, image, fill, segments, np.concatenate([ends, z]))
  return shap_solve(z, y[2:], w, y[0], y[1])


def rectangle_counterfactual(explained, image, fill, sizes=(0.25, 0.125)):
  """§3.8.4: every square of the given sizes (fractions of the side, stride half a side)
  replaced by the background, all scored in one batch. Returns (map, best): the map holds,
  per pixel, the largest score drop of a square covering it; `best` the square (top, left,
  side) whose replacement lowers the score most."""
  h, w = image.shape[:2]
  squares = []
  for frac in sizes:
    side = max(1, int(round(frac * min(h, w))))
    step = max(1, side // 2)
    tops = sorted(set(list(range(0, h - side + 1, step)) + [h - side]))
    lefts = sorted(set(list(range(0, w - side + 1, step)) + [w - side]))
    squares += [(t, l, side) for t in tops for l in lefts]
  masks = np.ones((len(squares), h, w), bool)
  for mask, (t, l, side) in zip(masks, squares):
    mask[t:t + side, l:l + side] = False
  x, f = jnp.asarray(image), jnp.asarray(fill)
  altered = jnp.where(jnp.asarray(masks)[..., None], x[None], f[None])
  base = float(explained.score(x[None])[0])
  drop = base - np.asarray(explained.score(altered), np.float64)
  out = np.full((h, w), -np.inf)
  for d, (t, l, side) in zip(drop, squares):
    np.maximum(out[t:t + side, l:l + side], d, out=out[t:t + side, l:l + side])
  return out.astype(np.float32), squares[int(np.argmax(drop))]
