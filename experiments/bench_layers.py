"""Per-layer breakdown of a train step: forward + input and kernel gradients of every conv
layer of a model (2D or 3D), JAX in each form asked for vs PyTorch, at the model's real
shapes, on this backend (torch on CUDA where JAX runs on a GPU).

  python -m experiments.bench_layers [--model=bcae1] [--size=128] [--batch=32] [--forms=auto]
  python -m experiments.bench_layers --model=memae_3d --size=256 --batch=4 --forms=adjoint,xla

Shows which layers hold a model's JAX train step back, each layer's share of the summed
step time, and the convolutions XLA compiled each gradient into: on GPU the cuDNN calls
(`convBackwardFilter` is cuDNN's kernel gradient; a kernel gradient left as a forward call
is what vadjax.nn.layers.conv_transpose_adjoint avoids), on CPU the convolutions and how
many of them are lhs-dilated. Expected runtime on a 2-core CPU: ~1 minute (BCAE1).
"""

import os

import jax
import jax.numpy as jnp
import torch
from absl import app, flags

from vadjax.bench import records
from vadjax.bench.layers import layer_shapes, time_layer
from vadjax.models import MODELS
from vadjax.nn.layers import IMPLS

_MODEL = flags.DEFINE_string('model', 'bcae1', 'Model with a PyTorch twin.')
_SIZE = flags.DEFINE_integer('size', 128, 'Input height = width.')
_BATCH = flags.DEFINE_integer('batch', 32, 'Batch size.')
_FORMS = flags.DEFINE_list('forms', ['auto'], f'JAX conv forms to time, of {IMPLS}.')


def main(argv):
  del argv
  torch.set_num_threads(os.cpu_count())
  bad = [f for f in _FORMS.value if f not in IMPLS]
  if bad:
    raise app.UsageError(f'--forms: unknown {bad}; known: {", ".join(IMPLS)}')
  name, b = _MODEL.value, _BATCH.value
  if name not in records.PAPER_INPUT or name in records.BACKBONE_NAMES + ('memory',):
    raise app.UsageError(f'--model must be a conv model with a twin, got {name!r}')
  dev = 'cuda' if torch.cuda.is_available() else 'cpu'
  if dev == 'cuda':   # TF32 in float32 matmuls, as XLA's default precision on GPU
    torch.set_float32_matmul_precision('high')
  sync = (lambda r: torch.cuda.synchronize()) if dev == 'cuda' else (lambda r: r)
  shape = records.input_shape(name, _SIZE.value)
  v = jax.device_get(MODELS.get(name)(channels=shape[-1]).init(
      jax.random.PRNGKey(0), jnp.zeros((1, *shape))))
  twin = records.torch_twin(name, shape, v).to(dev)
  rows = []
  for lname, m, in_shape in layer_shapes(twin, torch.zeros(b, shape[-1], *shape[:-1],
                                                            device=dev)):
    jax_times, tf, tg = time_layer(m, in_shape, _FORMS.value, dev, sync)
    op = (f'{type(m).__name__} k{m.kernel_size[0]} s{"×".join(map(str, m.stride))} '
          f'{in_shape[1]}→{m.out_channels} @{"×".join(map(str, in_shape[2:]))}')
    rows += [(lname, op, form, *times, tf, tg) for form, times in jax_times.items()]
  print(f'{name} {"×".join(map(str, shape[:-1]))} batch {b}, JAX {jax.default_backend()}, '
        f'torch {dev}: forward + (input, kernel) gradient per conv layer, ms')
  print('| layer | op | jax form | jax fwd | jax grad | compiled gradient | torch fwd | '
        'torch fwd+bwd | torch/jax |')
  print('|' + '---|' * 9)
  for r in rows:
    print(f'| {r[0]} | {r[1]} | {r[2]} | {r[3]:.1f} | {r[4]:.1f} | {r[5]} | {r[6]:.1f} | '
          f'{r[7]:.1f} | {(r[6] + r[7]) / (r[3] + r[4]):.2f} |')
  for form in _FORMS.value:
    j = sum(r[3] + r[4] for r in rows if r[2] == form)
    t = sum(r[6] + r[7] for r in rows if r[2] == form)
    print(f'| **sum** | | {form} | | {j:.0f} | | | {t:.0f} | {t / j:.2f} |')


if __name__ == '__main__':
  app.run(main)
