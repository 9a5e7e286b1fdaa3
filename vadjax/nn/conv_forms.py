"""The exact CPU forms of strided and transposed convolutions, over the same parameters as
the plain layer (see vadjax/nn/layers.py for the modules that use them):
  's2d'      space-to-depth: a stride-2 conv is a stride-1 conv with a ⌈k/2⌉ kernel on the
             2×2 space-to-depth input; a stride-2 transposed conv is a stride-1 conv to 4×
             the channels followed by depth-to-space. Their gradients are stride-1 convs,
             which XLA:CPU runs far faster than the lhs-dilated convs of the plain form
             (shared/PERFORMANCE.md facts 1-2).
  'tapwise'  the kernel gradient tap by tap (`conv_tapwise_grad`), or onto maps from 16×16
             as chunked im2col matmuls (`kernel_grad_im2col`).
  'subpixel' a plain strided conv whose input gradient is the sub-pixel transposed conv.
  'gemm'     the layer as one matmul (few input or output channels).
`resolve_impl` chooses among them; measurements: BUILD_NOTES.md, "Convolution forms on CPU".
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax

from vadjax import parallel
from vadjax.nn.kernel_grads import (IM2COL_MIN_MAP, SHIFTED_MAX_OUT, kernel_grad_im2col,
                                    kernel_grad_shifted, patches)

IMPLS = ('auto', 'xla', 's2d', 'tapwise', 'subpixel', 'gemm', 'adjoint')
DN = ('NHWC', 'HWIO', 'NHWC')


def pair(v):
  return (v, v) if isinstance(v, int) else tuple(v)


def takes_adjoint(impl: str) -> bool:
  """Whether transposed convs (2D or 3D, any stride) take the adjoint gradients: the GPU's
  'auto' and an explicit 'adjoint'. Compiled for an H200 (docs/speed.md, "Compiled for a
  GPU"), autodiff's kernel gradient of a transposed conv is a cuDNN forward conv whose
  window is the whole map, at stride 1 as at stride 2; the adjoint's is cuDNN's
  backward-filter call."""
  return impl == 'adjoint' or (impl == 'auto' and parallel.backend() == 'gpu')


def resolve_impl(impl: str, stride, transposed: bool, features: int = 0,
                 kernel: int = 3, out_size: int = 0, in_channels: int = 0) -> str:
  """The form a layer uses. 'auto' = what was measured faster on this backend (the
  measurements behind each rule: BUILD_NOTES.md, "Convolution forms on CPU"):
    transposed conv: s2d from 8 output channels on (the tap-wise kernel gradient at stride
      1), gemm below 8;
    stride-1 conv to at most 8 channels from 16 or more, onto maps of ≥ 16: the kernel
      gradient from shifted cotangents (`kernel_grad_shifted`); other stride-1 convs plain;
    strided conv: plain from fewer than 8 input channels; s2d for kernels over 3 onto maps
      of at most 4; the sub-pixel input gradient for stride 2 onto maps of ≥ 16 with ≥ 16
      channels; plain otherwise.
  On GPU transposed convs take 'adjoint' (vadjax.nn.layers.conv_transpose_adjoint),
  everything else the plain form; on TPU always plain. 'xla' forces plain, 's2d' the fast
  forms everywhere, 'tapwise' a plain strided conv with the tap-wise kernel gradient,
  'subpixel' a plain strided conv with the sub-pixel input gradient, 'gemm' the one-matmul
  form for any stride, 'adjoint' the GPU's.
  """
  if impl not in IMPLS:
    raise ValueError(f'conv impl must be one of {IMPLS}, got {impl!r}')
  s = pair(stride)
  if impl == 'gemm':
    return impl
  if transposed and takes_adjoint(impl):
    return 'adjoint'
  if impl == 'adjoint':
    return 'xla'
  if (impl == 'auto' and parallel.backend() == 'cpu' and s == (1, 1) and not transposed
      and 0 < features <= SHIFTED_MAX_OUT and in_channels >= 16 and out_size >= 16):
    return 'tapwise'
  if s[0] != s[1] or (s == (1, 1) and not transposed):
    return 'xla'      # the fast forms cover square strides, and stride-1 transposed convs
  if impl == 'auto':
    if parallel.backend() != 'cpu':
      return 'xla'
    if transposed:
      return 's2d' if features >= 8 else 'gemm'
    if 0 < in_channels < 8:
      return 'xla'
    if kernel > 3 and 0 < out_size <= 4:
      return 's2d'
    return 'subpixel' if s == (2, 2) and out_size >= 16 and features >= 16 else 'xla'
  if impl in ('tapwise', 'subpixel') and transposed:
    return 's2d'
  return impl


def space_to_depth(x, s: int = 2):
  b, h, w, c = x.shape
  x = x.reshape(b, h // s, s, w // s, s, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h // s, w // s, s * s * c)


def depth_to_space(x, s: int = 2):
  b, h, w, cs = x.shape
  c = cs // (s * s)
  x = x.reshape(b, h, w, s, s, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, s * h, s * w, c)


def _taps_by_phase(kernel, s: int = 2):
  """(k, k, I, O) taps a → (K', K', s, s, I, O) with a = s·q + r, zero beyond k."""
  k = kernel.shape[:2]
  kq = tuple(-(-n // s) for n in k)
  kernel = jnp.pad(kernel, ((0, s * kq[0] - k[0]), (0, s * kq[1] - k[1]), (0, 0), (0, 0)))
  kh, kw, i, o = kernel.shape
  return kernel.reshape(kq[0], s, kq[1], s, i, o).transpose(0, 2, 1, 3, 4, 5)


def conv_s2d(x, kernel, padding, s: int = 2):
  """Exact stride-s convolution as a stride-1 conv on the space-to-depth input."""
  k = kernel.shape[:2]
  kq = tuple(-(-n // s) for n in k)
  out = tuple((x.shape[1 + d] + 2 * padding[d] - k[d]) // s + 1 for d in range(2))
  size = tuple(s * (out[d] + kq[d] - 1) for d in range(2))   # padded input, multiple of s
  x = jnp.pad(x, ((0, 0),) + tuple(
      (padding[d], max(size[d] - x.shape[1 + d] - padding[d], 0)) for d in range(2))
      + ((0, 0),))[:, :size[0], :size[1]]
  w = _taps_by_phase(kernel, s)                     # (K', K', s, s, I, O)
  w = w.reshape(kq[0], kq[1], s * s * kernel.shape[2], kernel.shape[3])
  return lax.conv_general_dilated(space_to_depth(x, s), w, (1, 1), 'VALID',
                                  dimension_numbers=DN)


def _conv(x, w, padding, stride=(1, 1)):
  return lax.conv_general_dilated(x, w, stride, padding, dimension_numbers=DN)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv_tapwise_grad(x, w, padding, stride=(1, 1)):
  """A conv whose kernel gradient is one matmul per tap, Σ_bhw x_shift ⊗ dy.

  XLA:CPU's own kernel-gradient conv is pathological for small kernels over many output
  channels (2×2, 64→256 at 16×16: 520 ms against 29 ms this way, 2026-11-22) and for
  strided convs to small maps (BCAE2's k5 s2 256→512 9→3: see BUILD_NOTES.md).
  """
  return _conv(x, w, padding, stride)


def _tapwise_fwd(x, w, padding, stride):
  return _conv(x, w, padding, stride), (x, w)


# The gradients below run under these names, so a profile can tell the ops that compute a
# conv's gradients from the rest of the step (vadjax/bench/profile.py).
INPUT_GRAD, KERNEL_GRAD, GEMM = 'conv_input_grad', 'conv_kernel_grad', 'conv_gemm'


def _tapwise_bwd(padding, stride, res, g):
  x, w = res
  with jax.named_scope(INPUT_GRAD):
    gx = jax.vjp(lambda x: _conv(x, w, padding, stride), x)[1](g)[0]
  with jax.named_scope(KERNEL_GRAD):
    return gx, _tapwise_kernel_grad(x, g, w, padding, stride)


def _tapwise_kernel_grad(x, g, w, padding, stride):
  if tuple(stride) == (1, 1) and w.shape[3] <= SHIFTED_MAX_OUT < w.shape[2]:
    return kernel_grad_shifted(x, g, w.shape, padding)
  if g.shape[1] * g.shape[2] >= IM2COL_MIN_MAP:
    return kernel_grad_im2col(x, g, w.shape, padding, stride)
  xp = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
  h, wd = g.shape[1:3]
  sh, sw = stride
  gw = jnp.stack([jnp.stack([
      jnp.einsum('bhwc,bhwd->cd', xp[:, i:i + sh * (h - 1) + 1:sh, j:j + sw * (wd - 1) + 1:sw],
                 g, preferred_element_type=w.dtype)
      for j in range(w.shape[1])]) for i in range(w.shape[0])])
  return gw.astype(w.dtype)


conv_tapwise_grad.defvjp(_tapwise_fwd, _tapwise_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv_subpixel_grad(x, w, padding, s: int = 2):
  """A plain stride-s conv whose input gradient is the sub-pixel transposed conv: XLA:CPU's
  own uses an lhs-dilated conv (PERFORMANCE.md fact 1; 3×3 s2, 64→64, 64→32, batch 64:
  198 → 94 ms). The kernel gradient is `kernel_grad_im2col` (the space-to-depth form's
  tap-wise one was slower here: 478 → 686 ms for the whole layer)."""
  return _conv(x, w, padding, (s, s))


def _subpixel_fwd(x, w, padding, s):
  return _conv(x, w, padding, (s, s)), (x, w)


def _subpixel_bwd(padding, s, res, g):
  x, w = res
  with jax.named_scope(INPUT_GRAD):
    gx = conv_transpose_s2d(g, jnp.swapaxes(w, 2, 3), (padding[0][0], padding[1][0]),
                            x.shape[1:3], s)
  with jax.named_scope(KERNEL_GRAD):
    gw = kernel_grad_im2col(x, g, w.shape, padding, (s, s))
  return gx.astype(x.dtype), gw.astype(w.dtype)


conv_subpixel_grad.defvjp(_subpixel_fwd, _subpixel_bwd)


def _strided_adjoint(g, w, padding, s: int, in_size):
  """The adjoint of a stride-s transposed conv (x → y) applied to dy: the plain strided
  conv of dy with the kernel's in/out axes swapped, cropped or padded to x's size."""
  k = w.shape[:2]
  hi = tuple(max((in_size[d] - 1) * s + k[d] - padding[d] - g.shape[1 + d], 0)
             for d in range(2))
  gx = _conv(g, jnp.swapaxes(w, 2, 3), ((padding[0], hi[0]), (padding[1], hi[1])), (s, s))
  return gx[:, :in_size[0], :in_size[1]]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv_transpose_s2d(x, kernel, padding, out_size, s: int = 2):
  """Exact stride-s transposed convolution: a stride-1 'full' conv producing the s² output
  phases as channels, then depth-to-space and a crop at the padding offset. Its input
  gradient is a plain strided conv (3×3 s2, 64→64, 32→64, batch 64: 110 ms, against 260 ms
  for the gradient of the sub-pixel form, 2026-11-22)."""
  return _conv_transpose_s2d(x, kernel, padding, out_size, s)


def _convt_fwd(x, kernel, padding, out_size, s):
  return _conv_transpose_s2d(x, kernel, padding, out_size, s), (x, kernel)


def _convt_bwd(padding, out_size, s, res, g):
  x, kernel = res
  with jax.named_scope(INPUT_GRAD):
    gx = _strided_adjoint(g, kernel, padding, s, x.shape[1:3])
  with jax.named_scope(KERNEL_GRAD):
    gw = jax.vjp(lambda w: _conv_transpose_s2d(x, w, padding, out_size, s), kernel)[1](g)[0]
  return gx.astype(x.dtype), gw


conv_transpose_s2d.defvjp(_convt_fwd, _convt_bwd)


def _conv_transpose_s2d(x, kernel, padding, out_size, s: int = 2):
  kq = tuple(-(-n // s) for n in kernel.shape[:2])
  w = _taps_by_phase(kernel, s)[::-1, ::-1]         # tap q ↔ input offset −q: flip
  w = w.transpose(0, 1, 4, 2, 3, 5).reshape(kq[0], kq[1], kernel.shape[2],
                                            s * s * kernel.shape[3])
  z = conv_tapwise_grad(x, w, ((kq[0] - 1,) * 2, (kq[1] - 1,) * 2))
  y = depth_to_space(z, s)
  need = tuple(padding[d] + out_size[d] - y.shape[1 + d] for d in range(2))
  y = jnp.pad(y, ((0, 0), (0, max(need[0], 0)), (0, max(need[1], 0)), (0, 0)))
  return y[:, padding[0]:padding[0] + out_size[0], padding[1]:padding[1] + out_size[1]]


def conv_gemm(x, w, stride, padding):
  """A conv as one matmul: the k² (strided) shifted views of the padded input side by side,
  the patch matrix, times the kernel. The patch matrix is k² times the input: for inputs
  with few channels only."""
  (sh, sw), (ph, pw) = stride, padding
  kh, kw, c, o = w.shape
  ho, wo = (x.shape[1] + 2 * ph - kh) // sh + 1, (x.shape[2] + 2 * pw - kw) // sw + 1
  with jax.named_scope(GEMM):
    xp = jnp.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    return jnp.dot(patches(xp, (kh, kw), stride, (ho, wo)), w.reshape(kh * kw * c, o))


def conv_transpose_gemm(x, w, stride, padding, output_padding):
  """PyTorch's transposed conv by its definition: input pixel i adds x_i · kernel[t] to
  output s·i + t − p for every tap t. One matmul gives the k²·O products of every pixel
  (few when O is small); each tap's products go to a stride-s grid at offset t (an
  interior-padded copy), and the k² grids add up in one elementwise pass."""
  with jax.named_scope(GEMM):
    return _conv_transpose_gemm(x, w, stride, padding, output_padding)


def _conv_transpose_gemm(x, w, stride, padding, output_padding):
  (sh, sw), (ph, pw), (oph, opw) = stride, padding, output_padding
  b, h, wd, c = x.shape
  kh, kw, _, o = w.shape
  z = jnp.dot(x, w.transpose(2, 0, 1, 3).reshape(c, kh * kw * o))
  z = z.reshape(b, h, wd, kh, kw, o)
  full = ((h - 1) * sh + kh + oph, (wd - 1) * sw + kw + opw)    # before the crop by p
  zero = jnp.zeros((), z.dtype)
  y = sum(lax.pad(z[:, :, :, i, j], zero,
                  ((0, 0, 0), (i, full[0] - i - (h - 1) * sh - 1, sh - 1),
                   (j, full[1] - j - (wd - 1) * sw - 1, sw - 1), (0, 0, 0)))
          for i in range(kh) for j in range(kw))
  return y[:, ph:full[0] - ph, pw:full[1] - pw]


def even_padding(size: int, k: int, p: int) -> tuple[int, int]:
  """(low, high) padding of a stride-2 conv that gives the same output from an even padded
  length: one more zero row when the last row is read, one row less when it is not.

  XLA:CPU is much slower on odd sizes (BCAE1's 3×3 stride-2 conv 64→64 on 63×63, batch 32:
  forward 78 → 32 ms, gradients 290 → 206 ms when padded to 64; 2026-11-22).
  """
  length = size + 2 * p
  if length % 2 == 0:
    return p, p
  needed = ((length - k) // 2) * 2 + k      # rows the output actually reads
  return (p, p - 1) if needed < length else (p, p + 1)
