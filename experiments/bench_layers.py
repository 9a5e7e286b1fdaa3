"""Per-layer breakdown of a train step: forward + input and kernel gradients of every conv
layer of a model, JAX (as configured) vs PyTorch, at the model's real shapes.

  python -m experiments.bench_layers [--model=bcae1] [--size=128] [--batch=32]

Shows which layers hold a model's JAX train step back on this backend, and each layer's
share of the summed step time. Expected runtime on a 2-core CPU: ~1 minute.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import torch
from absl import app, flags

from vadjax.bench import harness
from vadjax.bench.twins import TWINS, port
from vadjax.models import MODELS
from vadjax.nn.layers import Conv, ConvTranspose, resolve_impl

_MODEL = flags.DEFINE_string('model', 'bcae1', 'Model with a PyTorch twin.')
_SIZE = flags.DEFINE_integer('size', 128, 'Input size.')
_BATCH = flags.DEFINE_integer('batch', 32, 'Batch size.')
_IMPL = flags.DEFINE_string('conv_impl', 'auto', 'conv impl for the JAX layers.')


def _median(fn, sync) -> float:
  return harness.time_calls(fn, sync, warmup=1, repeats=10).median_s


def _layer_shapes(twin, x):
  """(name, module, input shape NCHW) of every conv of the twin, by forward hooks."""
  shapes = []
  hooks = [m.register_forward_hook(lambda m, i, o, n=n: shapes.append((n, m, tuple(i[0].shape))))
           for n, m in twin.named_modules() if isinstance(m, torch.nn.Conv2d)
           or isinstance(m, torch.nn.ConvTranspose2d)]
  with torch.no_grad():
    twin(x)
  for h in hooks:
    h.remove()
  return shapes


def main(argv):
  del argv
  torch.set_num_threads(os.cpu_count())
  name, size, b = _MODEL.value, _SIZE.value, _BATCH.value
  model = MODELS.get(name)(channels=1)
  v = jax.device_get(model.init(jax.random.PRNGKey(0), jnp.zeros((1, size, size, 1))))
  twin = port(TWINS[name](channels=1, input_size=(size, size)), v)
  rows = []
  for lname, m, shape in _layer_shapes(twin, torch.zeros(b, 1, size, size)):
    transposed = isinstance(m, torch.nn.ConvTranspose2d)
    k, s, p = m.kernel_size, m.stride, m.padding
    if transposed:
      layer = ConvTranspose(m.out_channels, k, s, p, m.output_padding, impl=_IMPL.value)
    else:
      layer = Conv(m.out_channels, k, s, p, impl=_IMPL.value)
    x = jnp.asarray(np.random.rand(shape[0], shape[2], shape[3], shape[1]).astype(np.float32))
    params = layer.init(jax.random.PRNGKey(0), x)
    grad = jax.jit(jax.grad(lambda p, x: jnp.sum(layer.apply(p, x) ** 2), argnums=(0, 1)))
    fwd = jax.jit(layer.apply)
    xt = torch.rand(*shape, requires_grad=True)

    def tgrad():
      y = m(xt)
      (y ** 2).sum().backward()

    def tfwd():
      with torch.no_grad():
        return m(xt)
    jf = _median(lambda: fwd(params, x), jax.block_until_ready)
    jg = _median(lambda: grad(params, x), jax.block_until_ready)
    tf, tg = _median(tfwd, lambda r: r), _median(tgrad, lambda r: r)
    impl = resolve_impl(_IMPL.value, s, transposed, m.out_channels, max(k),
                        (shape[2] + 2 * m.padding[0] - k[0]) // s[0] + 1,
                        0 if transposed else m.in_channels)
    rows.append((lname, f'{"ConvT" if transposed else "Conv"} k{k[0]} s{s[0]} '
                 f'{shape[1]}→{m.out_channels} @{shape[2]}', impl, jf, jg, tf, tg))
  tot_j = sum(r[3] + r[4] for r in rows)
  tot_t = sum(r[5] + r[6] for r in rows)
  print(f'{name} {size}×{size} batch {b}: fwd + (input, kernel) gradient per conv layer, ms')
  print('| layer | op | jax impl | jax fwd | jax grad | torch fwd | torch fwd+bwd | '
        'jax share | torch/jax |')
  print('|' + '---|' * 9)
  for r in rows:
    j, t = r[3] + r[4], r[5] + r[6]
    print(f'| {r[0]} | {r[1]} | {r[2]} | {r[3] * 1e3:.1f} | {r[4] * 1e3:.1f} | '
          f'{r[5] * 1e3:.1f} | {r[6] * 1e3:.1f} | {j / tot_j:.0%} | {t / j:.2f} |')
  print(f'| **sum** | | | | {tot_j * 1e3:.0f} | | {tot_t * 1e3:.0f} | 100% | '
        f'{tot_t / tot_j:.2f} |')


if __name__ == '__main__':
  app.run(main)
