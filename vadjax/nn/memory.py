"""The MemAE memory module (seed 003, 003_5d307d41a5bbbd0c.txt, "Memory module"; METHODS.md §4).

Every query z (one per spatial / spatio-temporal position of the encoder output) is replaced
by ẑ = ŵM, a sparse combination of N memory items M (N × C):
  w  = softmax_i(sim(z, m_i))      sim = cosine (the paper, default) or dot product (the
                                   official code); `normalize='sparsemax'` replaces softmax
  ŵ_i = ReLU(w_i − λ)·w_i / (|w_i − λ| + ε)   continuous hard shrinkage, ε = 1e-12
  ŵ  = ŵ / max(‖ŵ‖₁, 1e-12)        L1 re-normalisation (skipped when λ = 0)
The entropy −Σ ŵ log ŵ of each query's weights is the sparsity loss.

All queries of a batch are addressed at once: one (Q × C)·(C × N) matmul, elementwise
shrinkage, one (Q × N)·(N × C) matmul — no loop over positions or samples.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vadjax.registry import UserError

SIMILARITIES = ('cosine', 'dot')
NORMALIZERS = ('softmax', 'sparsemax')
SHRINK_EPS = 1e-12          # ε of the shrinkage (seed 003; the official code's value)
NORM_EPS = 1e-12            # clamp of vector norms (as torch.nn.functional.normalize)


def _unit(x, axis=-1):
  return x / jnp.maximum(jnp.linalg.norm(x, axis=axis, keepdims=True), NORM_EPS)


def sparsemax(logits, axis: int = -1):
  """Sparsemax (Martins & Astudillo, 2016): the Euclidean projection onto the simplex.
  p = max(z − τ, 0) with τ from the k largest entries, k = max{k : 1 + k·z_(k) > Σ_{j≤k} z_(j)}.
  Differentiable almost everywhere through the sort (the support size k is constant)."""
  z = jnp.moveaxis(logits, axis, -1)
  z_sorted = -jnp.sort(-z, axis=-1)
  cumsum = jnp.cumsum(z_sorted, axis=-1)
  k = jnp.arange(1, z.shape[-1] + 1, dtype=z.dtype)
  support = (1 + k * z_sorted > cumsum).astype(jnp.int32)
  k_z = jnp.sum(support, axis=-1, keepdims=True)                   # ≥ 1 always
  tau = (jnp.take_along_axis(cumsum, k_z - 1, axis=-1) - 1) / k_z.astype(z.dtype)
  return jnp.moveaxis(jnp.maximum(z - tau, 0), -1, axis)


def hard_shrink(w, threshold: float):
  """Continuous hard shrinkage then L1 re-normalisation; identity at threshold 0."""
  if threshold <= 0:
    return w
  w = jax.nn.relu(w - threshold) * w / (jnp.abs(w - threshold) + SHRINK_EPS)
  return w / jnp.maximum(jnp.sum(jnp.abs(w), axis=-1, keepdims=True), NORM_EPS)


def address(queries, memory, similarity: str = 'cosine', normalize: str = 'softmax',
            shrink_threshold: float = 0.0005):
  """Addressing weights (Q, N) of queries (Q, C) over memory items (N, C)."""
  if similarity not in SIMILARITIES:
    raise UserError(f'memory similarity must be one of {SIMILARITIES}, got {similarity!r}')
  if normalize not in NORMALIZERS:
    raise UserError(f'memory normalize must be one of {NORMALIZERS}, got {normalize!r}')
  if similarity == 'cosine':
    queries, memory = _unit(queries), _unit(memory)
  logits = jnp.dot(queries, memory.T).astype(jnp.float32)
  w = jax.nn.softmax(logits, axis=-1) if normalize == 'softmax' else sparsemax(logits)
  return hard_shrink(w, shrink_threshold)


def entropy(weights, eps: float = 1e-12):
  """−Σ_i ŵ_i log ŵ_i per query (the official code adds 1e-12 inside the log)."""
  return -jnp.sum(weights * jnp.log(weights + eps), axis=-1)


class Memory(nn.Module):
  """Memory read at every position of a feature map (..., C) → (ẑ (..., C), ŵ (..., N)).

  Parameter `memory` (N, C), initialised U(−1/√C, 1/√C) as the official code.
  `shrink_threshold` λ: 0 gives MemAE-nonSpar; the default is 1/N for N = 2000 (the paper's
  λ ∈ [1/N, 3/N]; the models set λ relative to N, see vadjax.models.memae).
  """
  num_items: int = 2000
  similarity: str = 'cosine'
  normalize: str = 'softmax'
  shrink_threshold: float = 0.0005
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z):
    c = z.shape[-1]
    bound = 1.0 / jnp.sqrt(c)
    memory = self.param('memory', lambda key, shape: jax.random.uniform(
        key, shape, jnp.float32, -bound, bound), (self.num_items, c))
    queries = z.reshape(-1, c).astype(self.dtype)
    m = memory.astype(self.dtype)
    w = address(queries, m, self.similarity, self.normalize, self.shrink_threshold)
    z_hat = jnp.dot(w.astype(self.dtype), m)
    return z_hat.reshape(z.shape), w.reshape(*z.shape[:-1], self.num_items)
