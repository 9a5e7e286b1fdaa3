"""Convolutions with PyTorch-style padding arguments, and input checks.

Padding is always explicit (never 'SAME'): Flax's 'SAME' puts odd padding on the high side
while PyTorch pads both sides, which shifts stride-2 outputs by a pixel
(shared/PERFORMANCE.md, porting gotchas). Keeping PyTorch's (kernel, stride, padding,
output_padding) vocabulary makes the PyTorch twins a line-by-line match.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from vadjax.registry import UserError


def _pair(v):
  return (v, v) if isinstance(v, int) else tuple(v)


class Conv(nn.Module):
  """`torch.nn.Conv2d(cin, features, kernel, stride, padding)` in NHWC."""
  features: int
  kernel: int | tuple[int, int] = 3
  stride: int | tuple[int, int] = 1
  padding: int | tuple[int, int] = 0
  use_bias: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    p = _pair(self.padding)
    return nn.Conv(self.features, _pair(self.kernel), strides=_pair(self.stride),
                   padding=((p[0], p[0]), (p[1], p[1])), use_bias=self.use_bias,
                   dtype=self.dtype, name='conv')(x)


class ConvTranspose(nn.Module):
  """`torch.nn.ConvTranspose2d(cin, features, kernel, stride, padding, output_padding)`.

  Output size (in − 1)·s − 2p + k + op, as in PyTorch. The kernel is stored as Flax's
  (kH, kW, Cin, Cout) with `transpose_kernel=True`, i.e. the gradient of a forward conv.
  """
  features: int
  kernel: int | tuple[int, int] = 3
  stride: int | tuple[int, int] = 1
  padding: int | tuple[int, int] = 0
  output_padding: int | tuple[int, int] = 0
  use_bias: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    k, p, op = _pair(self.kernel), _pair(self.padding), _pair(self.output_padding)
    pads = tuple((k[i] - 1 - p[i], k[i] - 1 - p[i] + op[i]) for i in range(2))
    return nn.ConvTranspose(self.features, k, strides=_pair(self.stride), padding=pads,
                            transpose_kernel=True, use_bias=self.use_bias,
                            dtype=self.dtype, name='convT')(x)


def batch_norm(train: bool, dtype: Any, name: str | None = None) -> nn.BatchNorm:
  """BatchNorm with PyTorch's defaults (torch momentum 0.1 = Flax momentum 0.9, eps 1e-5)."""
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                      dtype=dtype, name=name)


def check_input(x, channels: int, model: str, min_size: int = 1) -> None:
  """Raises a clear error unless x is an NHWC batch with the expected channels."""
  if x.ndim != 4 or x.shape[-1] != channels or min(x.shape[1:3]) < min_size:
    raise UserError(
        f'{model} expects images of shape (batch, height, width, {channels}) with height and '
        f'width >= {min_size}, got shape {tuple(x.shape)}; check the dataset\'s channels '
        f'and image_size in the config')
