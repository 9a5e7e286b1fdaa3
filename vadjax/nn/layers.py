"""Convolutions with PyTorch-style arguments and fast CPU forms, and input checks.

Padding is always explicit (never 'SAME'): Flax's 'SAME' puts odd padding on the high side
while PyTorch pads both sides (shared/PERFORMANCE.md, porting gotchas). Keeping PyTorch's
(kernel, stride, padding, output_padding) vocabulary makes the PyTorch twins line-by-line.

Strided and transposed layers have exact implementations over the *same* parameters (`impl`):
  'xla'  the plain strided / input-dilated convolution;
  'adjoint' (transposed convs; the GPU's 'auto') the plain form, differentiated as the
         strided conv it is the adjoint of (`conv_transpose_adjoint`);
  's2d'  space-to-depth: a stride-2 conv is a stride-1 conv with a ⌈k/2⌉ kernel on the
         2×2 space-to-depth input, and a stride-2 transposed conv is a stride-1 conv to 4×
         the channels followed by depth-to-space. Their gradients are stride-1 convs, which
         XLA:CPU runs far faster than the lhs-dilated convs of the plain form
         (shared/PERFORMANCE.md facts 1-2). Transposed convs (both strides) compute their
         kernel gradient tap by tap (`conv_tapwise_grad`), or onto maps from 16×16 as
         chunked im2col matmuls (`kernel_grad_im2col`), as the sub-pixel form does.
  'gemm' the layer as one matmul: a conv is its patch matrix times the kernel; a transposed
         conv multiplies every input pixel by the kernel and overlap-adds the k² products.
         For layers with few input (conv) or output (transposed conv) channels, where the
         patch matrix or the products are small.
Kernels are rearranged inside the layer, so checkpoints and PyTorch ports do not depend on
the choice. 'auto' picks per layer type and backend what was measured faster
(`resolve_impl`). The forms themselves: vadjax/nn/conv_forms.py.
"""

from typing import Any

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from vadjax import parallel
from vadjax.nn.conv_forms import (DN, IMPLS, even_padding, pair, conv_gemm, conv_s2d,
                                  conv_subpixel_grad, conv_tapwise_grad, conv_transpose_gemm,
                                  conv_transpose_s2d, resolve_impl, takes_adjoint)
from vadjax.nn.norm import BatchNorm
from vadjax.registry import UserError

__all__ = ['IMPLS', 'Conv', 'ConvTranspose', 'Conv3D', 'ConvTranspose3D', 'batch_norm',
           'check_input', 'conv_bn', 'conv2d', 'conv_transpose2d', 'conv3d', 'conv_transpose3d',
           'resolve_impl']


class Conv(nn.Module):
  """`torch.nn.Conv2d(cin, features, kernel, stride, padding)` in NHWC.

  Parameters: `kernel` (kH, kW, Cin, Cout) = torch weight.permute(2, 3, 1, 0); `bias`.
  """
  features: int
  kernel: int | tuple[int, int] = 3
  stride: int | tuple[int, int] = 1
  padding: int | tuple[int, int] = 0
  use_bias: bool = True
  impl: str = 'auto'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, defer_bias: bool = False):
    k = pair(self.kernel)
    w = self.param('kernel', nn.initializers.lecun_normal(), (*k, x.shape[-1], self.features))
    y = conv2d(x.astype(self.dtype), w.astype(self.dtype), self.stride, self.padding, self.impl)
    return _add_bias(self, y, defer_bias)


class ConvTranspose(nn.Module):
  """`torch.nn.ConvTranspose2d(cin, features, kernel, stride, padding, output_padding)`.

  Output size (in − 1)·s − 2p + k + op, as in PyTorch: y[o] = Σ x[i]·kernel[o − s·i + p].
  Parameters: `kernel` (kH, kW, Cin, Cout) = torch weight.permute(2, 3, 0, 1); `bias`.
  """
  features: int
  kernel: int | tuple[int, int] = 3
  stride: int | tuple[int, int] = 1
  padding: int | tuple[int, int] = 0
  output_padding: int | tuple[int, int] = 0
  use_bias: bool = True
  impl: str = 'auto'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, defer_bias: bool = False):
    k = pair(self.kernel)
    w = self.param('kernel', nn.initializers.lecun_normal(), (*k, x.shape[-1], self.features))
    y = conv_transpose2d(x.astype(self.dtype), w.astype(self.dtype), self.stride, self.padding,
                         self.output_padding, self.impl)
    return _add_bias(self, y, defer_bias)


def conv2d(x, w, stride, padding, impl='auto'):
  """`Conv`'s computation: x (B, H, W, I), kernel (kH, kW, I, O)."""
  k, s, p = w.shape[:2], pair(stride), pair(padding)
  out = min((x.shape[1 + d] + 2 * p[d] - k[d]) // s[d] + 1 for d in range(2))
  form = resolve_impl(impl, s, transposed=False, features=w.shape[-1], kernel=max(k),
                      out_size=out, in_channels=w.shape[2])
  if form == 'gemm':
    return conv_gemm(x, w, s, p)
  if form == 's2d':
    return conv_s2d(x, w, p, s[0])
  if form == 'tapwise':
    return conv_tapwise_grad(x, w, ((p[0], p[0]), (p[1], p[1])), s)
  if form == 'subpixel':
    pads = tuple(even_padding(x.shape[1 + d], k[d], p[d]) if s == (2, 2) else (p[d], p[d])
                 for d in range(2))
    return conv_subpixel_grad(x, w, pads, s[0])
  if s == (2, 2):
    return lax.conv_general_dilated(x, w, s, [even_padding(x.shape[1 + d], k[d], p[d])
                                              for d in range(2)], dimension_numbers=DN)
  return lax.conv_general_dilated(x, w, s, ((p[0], p[0]), (p[1], p[1])),
                                  dimension_numbers=DN)


def conv_transpose2d(x, w, stride, padding, output_padding=0, impl='auto'):
  """`ConvTranspose`'s computation: x (B, H, W, I), kernel (kH, kW, I, O)."""
  k, s = w.shape[:2], pair(stride)
  p, op = pair(padding), pair(output_padding)
  out = tuple((x.shape[1 + d] - 1) * s[d] - 2 * p[d] + k[d] + op[d] for d in range(2))
  form = resolve_impl(impl, s, transposed=True, features=w.shape[-1])
  if form == 'gemm':
    return conv_transpose_gemm(x, w, s, p, op)
  if form == 's2d' and s != (1, 1):
    return conv_transpose_s2d(x, w, p, out, s[0])
  if form == 's2d':     # stride 1: the 'full' conv, with the tap-wise kernel gradient
    return conv_tapwise_grad(x, w[::-1, ::-1], tuple(
        (k[d] - 1 - p[d], k[d] - 1 - p[d] + op[d]) for d in range(2)))
  if form == 'adjoint':
    return conv_transpose_adjoint(x, w, s, p, op, DN)
  return _plain_transpose(x, w, s, p, op, DN)


def _plain_transpose(x, w, stride, padding, output_padding, dn):
  """torch's transposed conv as the correlation of the s-dilated input with the spatially
  flipped kernel (kernel: spatial axes, then in, out)."""
  k = w.shape[:-2]
  pads = [(k[d] - 1 - padding[d], k[d] - 1 - padding[d] + output_padding[d])
          for d in range(len(k))]
  return lax.conv_general_dilated(x, lax.rev(w, tuple(range(len(k)))), (1,) * len(k), pads,
                                  lhs_dilation=tuple(stride), dimension_numbers=dn)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def conv_transpose_adjoint(x, w, stride, padding, output_padding, dn):
  """`_plain_transpose` with the gradients of the conv it is the adjoint of, c(z) =
  conv(z, wᵀ) at the same stride (wᵀ: in/out axes swapped), from <g, y> = <c(g), x>:
  dx = c(g), and dwᵀ is c's kernel gradient at input g and cotangent x. Compiled for an
  H200, autodiff of the plain form gives the kernel gradient as a cuDNN forward conv whose
  window is the whole map (at stride > 1 an lhs-dilated conv, which XLA:GPU's conv rewriter
  does not map to cuDNN's backward-filter call: conv_rewriter.cc, MatchBackwardFilter); c's
  kernel gradient becomes the backward-filter call (docs/speed.md, "Compiled for a GPU":
  MemAE-3D's 0.08× torch on a GPU)."""
  return _plain_transpose(x, w, stride, padding, output_padding, dn)


def _adjoint_fwd(x, w, stride, padding, output_padding, dn):
  return _plain_transpose(x, w, stride, padding, output_padding, dn), (x, w)


def _adjoint_bwd(stride, padding, output_padding, dn, res, g):
  x, w = res
  def strided(wt):   # output size t for the y size (t − 1)s − 2p + k + op, as 0 ≤ op < s
    return lax.conv_general_dilated(g, wt, tuple(stride), [(q, q) for q in padding],
                                    dimension_numbers=dn)
  gx, vjp = jax.vjp(strided, jnp.swapaxes(w, -1, -2))
  return gx.astype(x.dtype), jnp.swapaxes(vjp(x.astype(g.dtype))[0], -1, -2).astype(w.dtype)


conv_transpose_adjoint.defvjp(_adjoint_fwd, _adjoint_bwd)


def output(x):
  """A model's output in float32 when it computed in bfloat16 (or float32); float64 runs
  (the reference lane) stay float64."""
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _add_bias(layer, y, defer: bool):
  """y + the layer's bias, or (y, bias) for `conv_bn` (bias None without one)."""
  b = None
  if getattr(layer, 'use_bias', True):
    b = layer.param('bias', nn.initializers.zeros, (layer.features,)).astype(layer.dtype)
  if defer:
    return y, b
  return y if b is None else y + b


def conv_bn(conv: nn.Module, bn: BatchNorm, x):
  """`bn(conv(x))`, the conv's bias handed to the BatchNorm unadded: in training on CPU the
  bias only shifts the batch mean, so the add is never computed, and the batch statistics
  read the conv's output directly (vadjax/nn/norm.py, `_train_shifted`). Exact, same
  parameters; BCAE1's enc0 + BN + ReLU forward 43.9 → 31.8 ms (2026-12-05, 2-core Xeon)."""
  y, bias = conv(x, defer_bias=True)
  return bn(y, shift=bias)


def batch_norm(train: bool, dtype: Any, name: str | None = None) -> BatchNorm:
  """BatchNorm with PyTorch's defaults (torch momentum 0.1 = Flax momentum 0.9, eps 1e-5) and
  its two-pass variance: Flax's default E[x²] − E[x]² lost 3e-4 (relative) against the twin
  on AA-CAE's 1×1 embedding in train mode (few values with a large mean). `BatchNorm`
  (vadjax/nn/norm.py) is Flax's with a closed-form backward pass on CPU, and one-pass
  statistics of a bias-free conv output behind `conv_bn`."""
  return BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype,
                   name=name)


def check_input(x, channels: int, model: str, min_size: int = 1) -> None:
  """Raises a clear error unless x is an NHWC batch with the expected channels."""
  if x.ndim == 5:
    raise UserError(f'{model} is an image model and got video clips of shape '
                    f'{tuple(x.shape)}; on a video dataset run it per frame '
                    f'(model=per_frame with model_kwargs.image_model={model}, '
                    f'data.video.clip_length=1, as the zoo configs do)')
  if x.ndim != 4 or x.shape[-1] != channels or min(x.shape[1:3]) < min_size:
    raise UserError(
        f'{model} expects images of shape (batch, height, width, {channels}) with height and '
        f'width >= {min_size}, got shape {tuple(x.shape)}; check the dataset\'s channels '
        f'and image_size in the config')


DN_3D = ('NDHWC', 'DHWIO', 'NDHWC')


def folds_3d(impl: str) -> bool:
  """Whether 3D convolutions run as 2D ones over stacked taps (in the 2D form `impl`
  resolves to): always on CPU, where XLA's 3D convolutions are slow; elsewhere for the
  CPU's 2D forms only. 'auto', 'xla' and 'adjoint' keep the native 3D convolution there
  (what cuDNN runs for torch): 'xla' with autodiff's gradients, 'adjoint' (the GPU's
  'auto') with the transposed convs' adjoint gradients (`conv_transpose_adjoint`)."""
  if impl not in IMPLS:
    raise ValueError(f'conv impl must be one of {IMPLS}, got {impl!r}')
  return parallel.backend() == 'cpu' or impl not in ('auto', 'xla', 'adjoint')


def _time_pad(x, before, after):
  return jnp.pad(x, ((0, 0), (before, after)) + ((0, 0),) * (x.ndim - 2))


def _fold(frames, b, t):
  """(B, T', H, W, C) per tap → one (B·T', H, W, taps·C) batch of 2D inputs."""
  x = jnp.concatenate(frames, axis=-1)
  return x.reshape(b * t, *x.shape[2:])


def conv3d(x, w, stride, padding, impl='auto'):
  """torch Conv3d on NTHWC as ONE 2D conv: the kT temporal taps of every output frame are
  stacked along channels (kernel (kT, kH, kW, I, O) → (kH, kW, kT·I, O)). XLA:CPU runs 3D
  convolutions and their gradients far slower than 2D ones (BUILD_NOTES.md); exact. Off
  CPU the native 3D convolution (`folds_3d`)."""
  if not folds_3d(impl):
    return lax.conv_general_dilated(x, w, tuple(stride), [(q, q) for q in padding],
                                    dimension_numbers=DN_3D)
  kt, st, pt = w.shape[0], stride[0], padding[0]
  b, t = x.shape[:2]
  x = _time_pad(x, pt, pt)
  t_out = (t + 2 * pt - kt) // st + 1
  taps = [x[:, d:d + st * (t_out - 1) + 1:st] for d in range(kt)]
  w2 = jnp.moveaxis(w, 0, 2).reshape(*w.shape[1:3], kt * w.shape[3], w.shape[4])
  y = conv2d(_fold(taps, b, t_out), w2, stride[1:], padding[1:], impl)
  return y.reshape(b, t_out, *y.shape[1:])


def conv_transpose3d(x, w, stride, padding, output_padding, impl='auto'):
  """torch ConvTranspose3d on NTHWC without 3D convolutions: output frame o = s·q + r
  (phase r) sums x[q − d]·w[t] over the taps t ≡ r + p (mod s), d = (t − r − p)/s; each
  phase is one 2D transposed conv over the taps stacked along channels, then the phases
  interleave in time. No multiplications by inserted zeros. Off CPU the native 3D form
  (`folds_3d`)."""
  if not folds_3d(impl):
    args = (x, w, stride, padding, output_padding, DN_3D)
    return conv_transpose_adjoint(*args) if takes_adjoint(impl) else _plain_transpose(*args)
  kt, st, pt, opt = w.shape[0], stride[0], padding[0], output_padding[0]
  b, t = x.shape[:2]
  t_out = (t - 1) * st - 2 * pt + kt + opt
  q = -(-t_out // st)
  phases = []
  for r in range(st):
    taps = [(tap, (tap - r - pt) // st) for tap in range(kt) if (tap - r - pt) % st == 0]
    if not taps:
      phases.append(None)
      continue
    lo = max(max(d for _, d in taps), 0)          # zero frames so that x[q − d] exists
    hi = max(q - 1 - min(d for _, d in taps) - (t - 1), 0)
    xp = _time_pad(x, lo, hi)
    frames = [xp[:, lo - d:lo - d + q] for _, d in taps]
    w2 = jnp.concatenate([w[tap] for tap, _ in taps], axis=2)    # (kH, kW, n·I, O)
    y = conv_transpose2d(_fold(frames, b, q), w2, stride[1:], padding[1:],
                         output_padding[1:], impl)
    phases.append(y.reshape(b, q, *y.shape[1:]))
  ref = next(p for p in phases if p is not None)
  y = jnp.stack([jnp.zeros_like(ref) if p is None else p for p in phases], axis=2)
  return y.reshape(b, q * st, *ref.shape[2:])[:, :t_out]


class Conv3D(nn.Module):
  """`torch.nn.Conv3d(cin, features, kernel, stride, padding)` in NTHWC (`conv3d`).

  Parameters: `kernel` (kT, kH, kW, Cin, Cout) = torch weight.permute(2, 3, 4, 1, 0); `bias`.
  """
  features: int
  kernel: tuple[int, int, int] = (3, 3, 3)
  stride: tuple[int, int, int] = (1, 1, 1)
  padding: tuple[int, int, int] = (1, 1, 1)
  impl: str = 'auto'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, defer_bias: bool = False):
    w = self.param('kernel', nn.initializers.lecun_normal(),
                   (*self.kernel, x.shape[-1], self.features))
    y = conv3d(x.astype(self.dtype), w.astype(self.dtype), self.stride, self.padding,
               self.impl)
    return _add_bias(self, y, defer_bias)


class ConvTranspose3D(nn.Module):
  """`torch.nn.ConvTranspose3d(cin, features, kernel, stride, padding, output_padding)`
  in NTHWC (`conv_transpose3d`).

  Parameters: `kernel` (kT, kH, kW, Cin, Cout) = torch weight.permute(2, 3, 4, 0, 1); `bias`.
  """
  features: int
  kernel: tuple[int, int, int] = (3, 3, 3)
  stride: tuple[int, int, int] = (1, 1, 1)
  padding: tuple[int, int, int] = (1, 1, 1)
  output_padding: tuple[int, int, int] = (0, 0, 0)
  impl: str = 'auto'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, defer_bias: bool = False):
    w = self.param('kernel', nn.initializers.lecun_normal(),
                   (*self.kernel, x.shape[-1], self.features))
    y = conv_transpose3d(x.astype(self.dtype), w.astype(self.dtype), self.stride,
                         self.padding, self.output_padding, self.impl)
    return _add_bias(self, y, defer_bias)
