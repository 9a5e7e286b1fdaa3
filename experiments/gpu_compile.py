"""The benchmark's training steps compiled for an H200 on this CPU, and the convolutions
XLA:GPU makes of them, per conv form: ahead-of-time compilation without a device, through
JAX's CUDA plugin (`bash tests/device/gpu_compile.sh` installs it in its own virtual
environment, `.venv-gpu-compile`, and runs this).

  python -m experiments.gpu_compile --models=memae_3d,ks_cae_fused --forms=xla,auto

Nothing runs, so nothing is timed. What it shows without a GPU: which cuDNN call each
convolution of the step becomes (forward, backward-input, backward-filter, forward with
bias and activation), and the forward calls whose window spans a whole map: autodiff's
kernel gradient of a transposed conv, which cuDNN runs as a forward conv with a 3×3 output
(MemAE-3D's 0.08× torch on the H200: docs/speed.md). The layers choose their forms as on a
GPU (`vadjax.parallel.compiling_for`). XLA:GPU's autotuning needs the device, so the
compiled program is the rewriter's choice of call, not of cuDNN algorithm.
"""

import os
import re

import jax
from absl import app, flags

from vadjax.bench import records
from vadjax.bench.aot import compiled_train_step, h200_mesh
from vadjax.bench.layers import compiled_convs
from vadjax.nn.conv_forms import IMPLS
from vadjax.registry import UserError

_MODELS = flags.DEFINE_list('models', ['memae_3d', 'ks_cae_fused', 'bcae1'],
                            'Benchmark models (experiments.bench names) to compile.')
_FORMS = flags.DEFINE_list('forms', ['xla', 'auto'], f'Conv forms, of {IMPLS}.')
_SIZE = flags.DEFINE_integer('size', 0, 'Input height = width (0: the benchmark\'s).')
_BATCH = flags.DEFINE_integer('batch', 0, 'Batch size (0: the benchmark\'s).')
_OUT = flags.DEFINE_string('out', '', 'Also write the table to this markdown file.')


def main(argv):
  del argv
  bad = [f for f in _FORMS.value if f not in IMPLS]
  unknown = [m for m in _MODELS.value if m not in records.PAPER_INPUT
             or m in records.BACKBONE_NAMES + ('memory',)]
  if bad or unknown:
    raise app.UsageError(f'unknown --forms {bad} (known: {", ".join(IMPLS)}) or --models '
                         f'{unknown} (conv models of experiments.bench)')
  try:
    mesh = h200_mesh()
  except UserError as e:
    raise app.UsageError(str(e)) from None
  lines = ['| model | input × batch | form | cuDNN calls in the train step | convs not on cuDNN |',
           '|---|---|---|---|---|']
  for name in _MODELS.value:
    shape = records.input_shape(name, _SIZE.value)
    batch = _BATCH.value or records.DEFAULT_BATCH.get(name, 32)
    for form in _FORMS.value:
      hlo = compiled_train_step(name, shape, batch, form, mesh)
      plain = len(re.findall(r'= \S+ convolution\(', hlo))    # left to XLA's own emitter
      lines.append(f'| {name} | {"×".join(map(str, shape[:-1]))} × {batch} | {form} | '
                   f'{compiled_convs(hlo)} | {plain} |')
      print(lines[-1], flush=True)
  table = '\n'.join([f'Compiled for an H200 on this CPU: jax {jax.__version__}, '
                     f'{mesh.devices.flat[0].device_kind}; no autotuning.', ''] + lines)
  if _OUT.value:
    os.makedirs(os.path.dirname(_OUT.value) or '.', exist_ok=True)
    with open(_OUT.value, 'w') as f:
      f.write(table + '\n')
  print(table)


if __name__ == '__main__':
  app.run(main)
