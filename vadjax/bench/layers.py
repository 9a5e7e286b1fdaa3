"""Single conv layers of a model timed alone, JAX against its PyTorch twin's module
(`experiments.bench_layers`): the twin's conv modules and their input shapes, the vadjax
layer with each module's settings, and the convolutions XLA compiled a program into."""

import collections
import re

import jax
import jax.numpy as jnp
import numpy as np
import torch

from vadjax.bench import harness
from vadjax.nn.layers import Conv, Conv3D, ConvTranspose, ConvTranspose3D

_TORCH_CONVS = (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Conv3d,
                torch.nn.ConvTranspose3d)


def median_ms(fn, sync) -> float:
  return harness.time_calls(fn, sync, warmup=1, repeats=10).median_s * 1e3


def layer_shapes(twin, x):
  """(name, module, input shape NC…) of every conv of the twin, by forward hooks."""
  shapes = []
  hooks = [m.register_forward_hook(lambda m, i, o, n=n: shapes.append((n, m, tuple(i[0].shape))))
           for n, m in twin.named_modules() if isinstance(m, _TORCH_CONVS)]
  training = twin.training
  with torch.no_grad():
    twin.eval()(x)        # BatchNorm's statistics untouched, and batches of one allowed
  twin.train(training)
  for h in hooks:
    h.remove()
  return shapes


def jax_layer(m, form):
  """The vadjax layer with torch module `m`'s settings."""
  k, s, p = m.kernel_size, m.stride, m.padding
  if isinstance(m, torch.nn.ConvTranspose3d):
    return ConvTranspose3D(m.out_channels, k, s, p, m.output_padding, impl=form)
  if isinstance(m, torch.nn.Conv3d):
    return Conv3D(m.out_channels, k, s, p, impl=form)
  if isinstance(m, torch.nn.ConvTranspose2d):
    return ConvTranspose(m.out_channels, k, s, p, m.output_padding, impl=form)
  return Conv(m.out_channels, k, s, p, impl=form)


def compiled_convs(hlo: str) -> str:
  """The convolutions of a compiled program, in a few words: cuDNN's calls by kind on GPU,
  with the forward calls whose window spans more than 16 pixels (a kernel gradient left as
  a forward conv over the whole map), else the number of convolutions, of lhs-dilated ones
  and of ones with a reversed window (XLA swaps the operands of a large lhs-dilated conv
  into a window-reversed one)."""
  calls = re.findall(r'window=\{size=([\dx]+)[^}]*\}.*custom_call_target="__cudnn\$conv(\w*)"'
                     r'|custom_call_target="__cudnn\$conv(\w*)"', hlo)
  if calls:
    kinds = collections.Counter(kind or bare or 'conv' for _, kind, bare in calls)
    whole = sum(kind == 'Forward' and max(map(int, size.split('x'))) > 16
                for size, kind, _ in calls)
    return ', '.join(f'{kind}×{n}' for kind, n in sorted(kinds.items())) + (
        f' (windows over 16 px ×{whole})' if whole else '')
  convs = [line for line in hlo.splitlines() if re.search(r'= \S+ convolution\(', line)]
  dilated = sum(bool(re.search(r'lhs_dilate=(?!1(x1)*\b)', line)) for line in convs)
  reversed_ = sum(bool(re.search(r'rhs_reversal=\S*1', line)) for line in convs)
  return f'conv×{len(convs)} (lhs-dilated ×{dilated}, reversed ×{reversed_})'


def time_layer(m, shape, forms, dev, sync):
  """(jax {form: (fwd ms, grad ms, convs)}, torch fwd ms, torch fwd+bwd ms)."""
  x_np = np.random.default_rng(0).random((shape[0], *shape[2:], shape[1]), np.float32)
  x = jnp.asarray(x_np)
  jax_times = {}
  for form in forms:
    layer = jax_layer(m, form)
    params = jax.jit(layer.init)(jax.random.PRNGKey(0), x)
    grad = jax.jit(jax.grad(lambda p, x: jnp.sum(layer.apply(p, x) ** 2), argnums=(0, 1)))
    fwd = jax.jit(layer.apply)
    convs = compiled_convs(grad.lower(params, x).compile().as_text())
    jax_times[form] = (median_ms(lambda: fwd(params, x), jax.block_until_ready),
                       median_ms(lambda: grad(params, x), jax.block_until_ready), convs)
  xt = torch.from_numpy(np.moveaxis(x_np, -1, 1).copy()).to(dev).requires_grad_(True)

  def tgrad():
    (m(xt) ** 2).sum().backward()

  def tfwd():
    with torch.no_grad():
      return m(xt)
  return jax_times, median_ms(tfwd, sync), median_ms(tgrad, sync)
