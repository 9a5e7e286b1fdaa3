"""Kernel gradients of a conv as matmuls over the batch (vadjax/nn/conv_forms.py chooses
them): patches of the input (im2col) where the input has few channels or the map is large,
shifted copies of the cotangent where the conv has fewer output than input channels."""

import jax.numpy as jnp
from jax import lax


def patches(xp, kernel, stride, out):
  """The patch matrix of a padded input: its k² (strided) shifted views side by side,
  (B, ho, wo, kh·kw·C), taps row-major as the kernel's (kh, kw, C, O) layout."""
  (kh, kw), (sh, sw), (ho, wo) = kernel, stride, out
  return jnp.concatenate([xp[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
                          for i in range(kh) for j in range(kw)], axis=-1)


# Output maps from 16×16 on take the im2col kernel gradient; on smaller ones the tap-wise
# einsums were as fast or faster (8×8, 64→288: 17 vs 21 ms).
IM2COL_MIN_MAP = 256
IM2COL_BYTES = 8 << 20      # a chunk's patch matrix stays in the 32 MiB L3 cache
SHIFTED_MAX_OUT = 8         # the shifted form is measured to 8 output channels
SHIFTED_BYTES = 16 << 20    # a chunk's x and shifts (2–4 samples of SSA-CAE's: fastest)


def _chunk(batch: int, bytes_per_sample: int, budget: int) -> int:
  """The largest divisor of the batch whose samples fit in `budget` bytes (at least 1)."""
  chunk = max(1, min(batch, budget // bytes_per_sample))
  while batch % chunk:
    chunk -= 1
  return chunk


def kernel_grad_im2col(x, g, shape, padding, stride):
  """Σ_bhw patches(x) ⊗ dy, the kernel gradient of a conv, over chunks of the batch.

  Each chunk's patch matrix (rows: output pixels, columns: taps × input channels) is
  built and multiplied at once while it is in cache; one matmul per chunk runs at the
  machine's matmul rate. YNNPACK's kernel-gradient conv ran at a fraction of it, and one
  patch matrix for the whole batch is memory-bound (3×3 s2, 64→64, 64→32, batch 64: 222 ms
  XLA, 113 ms this way; 2026-11-23, BUILD_NOTES.md). With XLA's own conv kernels (the
  flags in vadjax/__init__.py) that layer alone is at par (99 vs 107 ms), but the train
  step with XLA's kernel gradients was 9% slower (paired), so this form stays.
  """
  kh, kw, c, o = shape
  b, ho, wo = g.shape[:3]
  sh, sw = stride
  # lax.pad: `even_padding` may crop a row (negative padding)
  xp = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (*padding[0], 0), (*padding[1], 0),
                                           (0, 0, 0)))
  xp = xp[:, :sh * (ho - 1) + kh, :sw * (wo - 1) + kw]
  chunk = _chunk(b, ho * wo * kh * kw * c * x.dtype.itemsize, IM2COL_BYTES)

  def step(acc, xg):
    xc, gc = xg
    cols = patches(xc, (kh, kw), stride, (ho, wo))
    return acc + jnp.dot(cols.reshape(-1, kh * kw * c).T, gc.reshape(-1, o),
                         preferred_element_type=jnp.float32), None

  acc, _ = lax.scan(step, jnp.zeros((kh * kw * c, o), jnp.float32),
                    (xp.reshape(b // chunk, chunk, *xp.shape[1:]),
                     g.reshape(b // chunk, chunk, ho, wo, o)))
  return acc.reshape(shape).astype(x.dtype)


def kernel_grad_shifted(x, g, shape, padding):
  """The kernel gradient of a stride-1 conv with fewer output than input channels, as the
  transpose of im2col: dw[i, j] = Σ_bhw x ⊗ g shifted by (p − i, p − j) onto x's grid. The
  k² shifted copies of g (k²·O columns) are the small side, and x is read once, in place,
  by one matmul per chunk of the batch (`SHIFTED_BYTES` of x and shifts). SSA-CAE's 5×5 64→1 at
  128², batch 32: XLA's kernel gradient 123 ms (it transposes x), this 48 ms (2026-12-05,
  2-core Xeon; BUILD_NOTES.md, "Speed, round 3")."""
  kh, kw, c, o = shape
  b, h, wd = x.shape[:3]
  ho, wo = g.shape[1:3]
  chunk = _chunk(b, h * wd * (kh * kw * o + c) * x.dtype.itemsize, SHIFTED_BYTES)
  zero = jnp.zeros((), g.dtype)

  def step(acc, xg):
    xc, gc = xg
    shifts = jnp.concatenate([
        lax.pad(gc, zero, ((0, 0, 0), (i - padding[0][0], h - ho + padding[0][0] - i, 0),
                           (j - padding[1][0], wd - wo + padding[1][0] - j, 0), (0, 0, 0)))
        for i in range(kh) for j in range(kw)], axis=-1)
    return acc + jnp.dot(shifts.reshape(-1, kh * kw * o).T, xc.reshape(-1, c),
                         preferred_element_type=jnp.float32), None

  acc, _ = lax.scan(step, jnp.zeros((kh * kw * o, c), jnp.float32),
                    (x.reshape(b // chunk, chunk, h, wd, c),
                     g.reshape(b // chunk, chunk, ho, wo, o)))
  return acc.reshape(kh, kw, o, c).transpose(0, 1, 3, 2).astype(x.dtype)
