"""Cost curves: train-step time and memory against batch size, image size and clip length
T, and first-call (compile) time against T for the scanned recurrences, JAX beside its
PyTorch twin in the same run (the benchmark's records: vadjax/bench/records.py).

  python -m experiments.cost_curves [--out=docs/cost_curves] [--repeats=5] [--quick]

Curves: BCAE1 at 64² over batch 4…64; BCAE1 at batch 8 over 32²…256²; CGRU(2,N) AE at 32²,
batch 4, over T = 2…32 (its scan is unrolled in full up to 8 steps and a custom-VJP scan
beyond: `vadjax/nn/convrnn.py`). Memory is XLA's buffer assignment of the compiled step
(arguments + temporaries + outputs), a property of the program; PyTorch's allocations on
CPU have no equivalent measure in one process, so only JAX's is drawn. Writes
<out>.json and <out>.png. ~8 min on a 2-core CPU.
"""

import json
import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from absl import app, flags  # noqa: E402

from vadjax.bench import records as lib  # noqa: E402

CURVES = {   # name: (model, what varies, values, input shape of a value, batch of a value)
    'batch': ('bcae1', 'batch size', (4, 8, 16, 32, 64), lambda v: (64, 64, 1), lambda v: v),
    'size': ('bcae1', 'image side', (32, 64, 128, 256), lambda v: (v, v, 1), lambda v: 8),
    'T': ('cgru_ae', 'clip length T', (2, 4, 8, 12, 16, 32), lambda v: (v, 32, 32, 1),
          lambda v: 4),
}
QUICK = {'batch': (2, 4), 'size': (32, 48), 'T': (2, 10)}


def point(model: str, shape, batch: int, repeats: int) -> dict:
  """JAX and eager PyTorch train-step records of one setting."""
  args = (model, shape, batch, 'float32', repeats, 1)
  jax_out, variables, _ = lib.jax_records(*args, modes=('train',))
  torch_out, flops, _ = lib.torch_records(*args, variables, False, modes=('train',))
  return {fw: lib.record(model, fw, 'train', shape, batch, 'float32', flops, *out['train'])
          for fw, out in (('jax', jax_out), ('torch', torch_out))}


def run(repeats: int, quick: bool = False) -> dict:
  torch.set_num_threads(os.cpu_count())
  result = {'meta': lib.meta(), 'curves': {}}
  for name, (model, label, values, shape, batch) in CURVES.items():
    rows = []
    for v in QUICK[name] if quick else values:
      r = point(model, shape(v), batch(v), repeats)
      rows.append({'value': v, **{fw: r[fw] for fw in r}})
      print(f'{name}={v}: jax {r["jax"]["median_s"] * 1e3:.1f} ms '
            f'(first {r["jax"]["first_call_s"]:.1f} s), torch '
            f'{r["torch"]["median_s"] * 1e3:.1f} ms', flush=True)
    result['curves'][name] = {'model': model, 'label': label, 'rows': rows}
  return result


def figure(result: dict, path: str) -> str:
  curves = result['curves']
  fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
  for ax, name in zip(axes[:3], ('batch', 'size', 'T')):
    c = curves[name]
    xs = [r['value'] for r in c['rows']]
    for fw, style in (('jax', 'o-'), ('torch', 's--')):
      ax.plot(xs, [r[fw]['median_s'] * 1e3 for r in c['rows']], style, label=f'{fw} step')
    ax.set(xlabel=c['label'], ylabel='train step (ms)', title=f'{c["model"]}: step time',
           xscale='log', yscale='log')
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.minorticks_off()
    mem = ax.twinx()
    mem.plot(xs, [r['jax']['xla_buffers_mb'] for r in c['rows']], 'g:', label='jax memory')
    mem.set(ylabel='XLA buffers (MB)', yscale='log')
    mem.minorticks_off()
    ax.legend(loc='upper left', fontsize=7)
    mem.legend(loc='lower right', fontsize=7)
  c = curves['T']
  xs = [r['value'] for r in c['rows']]
  ax = axes[3]
  ax.plot(xs, [r['jax']['first_call_s'] for r in c['rows']], 'o-', label='jax first call')
  ax.plot(xs, [r['torch']['first_call_s'] for r in c['rows']], 's--', label='torch first call')
  ax.axvline(8.5, color='gray', lw=0.8, ls=':')
  ax.text(8.7, ax.get_ylim()[1] * 0.9, 'scan beyond 8', fontsize=7)
  ax.set(xlabel='clip length T', ylabel='seconds', title=f'{c["model"]}: first call (compile)')
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)
  return path


def main(argv):
  del argv
  f = flags.FLAGS
  result = run(f.repeats, f.quick)
  os.makedirs(os.path.dirname(os.path.abspath(f.out)), exist_ok=True)
  with open(f.out + '.json', 'w') as fh:
    json.dump(result, fh, indent=1)
  print(figure(result, f.out + '.png'))


if __name__ == '__main__':
  flags.DEFINE_string('out', 'docs/cost_curves', 'Path prefix of the JSON and the figure.')
  flags.DEFINE_integer('repeats', 5, 'Timed calls per point.')
  flags.DEFINE_bool('quick', False, 'Two small points per curve (the test).')
  app.run(main)
