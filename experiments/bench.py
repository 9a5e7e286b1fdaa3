"""Speed of every model against its PyTorch twin, in one process and one run.

  python -m experiments.bench [--models=bcae1,deep_ae,...] [--fast] [--batch=0] [--size=0]
      [--out=bench.json] [--dtype=float32|bfloat16] [--repeats=10] [--torch_compile=true]
      [--paired=8 --paired_block=4] [--conv_impl=auto]
  python -m experiments.bench --summarize=a.json,b.json     (one compact table of runs)

By default every model the library registers (vadjax.models.MODELS and BACKBONES) runs, at
its paper input size unless --size (height = width) is given, at its default batch (32)
unless --batch is:
- BCAE1 and its attention variants, BCAE2, KS-CAE at 128×128 (AA-CAE batch 8: its first
  layer attends over 63² positions); `ks_cae_fused` is KS-CAE after `fuse_ks_cae`;
- the deep AE, CBAM-AE, LTPA-AE, MemAE-2D, ALPS and ADACL at 32×32;
- MemAE-3D on 16×64×64 clips, batch 4 (the official 16×256×256 does not fit a CPU budget);
  `memory` is its memory module alone: 512 queries per clip × 2000 items × 256 channels;
- the conv recurrent AEs of seed 001 at (L_R, DUT) = (2, N) and `per_frame` (BCAE1 on every
  frame) on 8×128×128 clips, batch 8 (per_frame 4: BCAE1's 32 images);
- seed 004's feature predictor (LSTM) on clips of 9 standardised 384-d vectors, and its
  frozen backbones in inference only: the ViTs at 224² (vit_mini 64²; ViT-S/8 and ViT-B/16
  batch 4, ViT-B/8 batch 2), ResNet-50 at 128² (resnet_mini 64²), RGB.
`--fast` is the CI-sized run: one model of each family (FAST) at 32×32, batch 4.

Records (model × framework × mode) go to --out as JSON and a markdown table is printed,
with speed ratios torch_time / jax_time (> 1: JAX faster). Both frameworks use the same
threads on CPU and the same weights: each twin is loaded with the JAX model's variables,
and the largest difference of its inference output from JAX's on the benchmark input,
relative to the largest output, is checked before timing (`max_rel_diff`, "rel. diff").
Memory: peak device memory on GPU; on CPU the growth of resident memory over one record
run alone in a fresh process (JAX's includes compilation), and for JAX also XLA's own
buffer assignment (`xla_buffers_mb`). Runtime on a 2-core CPU: ~40 min for the default
run with --torch_compile=false --isolated_memory=false --paired=6, ~75 s with --fast.

`--paired=N` also alternates N JAX and eager-torch calls per mode and reports the median
(and quartiles) of the per-pair ratios, for single calls and for blocks of
`--paired_block` calls per side: on a host whose speed drifts, the ratio of two medians
taken one run after the other can be off by ±15%, and single alternating calls of a small
step also time what switching frameworks costs the next call (BUILD_NOTES.md). Every
record's GFLOP/s is also given as a share of this machine's float32 matmul rate, measured
at the start of the run (`share_of_peak`, the table's "% peak").

`--profile=train` (or infer) profiles the step op by op instead of timing it: JAX's
XLA:CPU thunks beside PyTorch's ATen ops, grouped into convolutions forward and backward,
matmuls, the rest by phase and the optimiser, with each side's top ops
(vadjax/bench/profile.py says how); the markdown goes beside --out's JSON.

On a CUDA machine the same command times JAX on the GPU against torch on the GPU; install
the CUDA builds first (docs/speed.md has the lines).
"""

import dataclasses
import json
import os
import subprocess
import sys

import jax
import numpy as np
import torch
from absl import app, flags

from vadjax.bench import harness, profile
from vadjax.bench import records as lib
from vadjax.nn.conv_forms import IMPLS

_MODELS = flags.DEFINE_list('models', sorted(lib.PAPER_INPUT), 'Models to benchmark.')
_BATCH = flags.DEFINE_integer('batch', 0, 'Batch size (0 = each model\'s default, 32 for '
                              'images).')
_SIZE = flags.DEFINE_integer('size', 0, 'Input size (0 = each model\'s paper size).')
_DTYPE = flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'], 'Compute dtype.')
_REPEATS = flags.DEFINE_integer('repeats', 10, 'Timed repeats per record.')
_WARMUP = flags.DEFINE_integer('warmup', 3, 'Untimed calls after the first.')
_COMPILE = flags.DEFINE_bool('torch_compile', True, 'Also time torch.compile.')
_OUT = flags.DEFINE_string('out', None, 'JSON file for the records.')
_ISOLATED = flags.DEFINE_bool(
    'isolated_memory', True, 'On CPU, also measure each record\'s peak memory in a fresh '
    'process (in one process, allocators keep what earlier records freed).')
_PAIRED = flags.DEFINE_integer('paired', 0, 'If > 0, also alternate this many JAX and '
                               'eager-torch calls per mode: median paired ratio torch/jax.')
_BLOCK = flags.DEFINE_integer('paired_block', 4, 'With --paired: also alternate blocks of '
                              'this many calls per side (reported beside single calls).')
_FAST = flags.DEFINE_bool(
    'fast', False, 'A CI-sized run: one model of each family (FAST) at 32×32, batch 4, 3 '
    'repeats, no torch.compile, no memory probes (flags given explicitly still apply).')
_IMPL = flags.DEFINE_enum('conv_impl', 'auto', list(IMPLS), 'Convolution form of the JAX '
                          'models (vadjax.nn.conv_forms.resolve_impl); the memory module '
                          'and the backbones ignore it.')
_SUMMARIZE = flags.DEFINE_list('summarize', None, 'Instead of timing: one compact table of '
                               'these --out JSON files (later files win for the same record).')
_PROFILE = flags.DEFINE_enum('profile', None, ['train', 'infer'], 'Profile this step op by '
                              'op (jax.profiler beside torch.profiler) instead of timing.')
_PROFILE_STEPS = flags.DEFINE_integer('profile_steps', 5, 'With --profile: calls profiled '
                                      'per side.')
_PROBE = flags.DEFINE_string('memory_probe', None, 'Internal: model,framework,mode to run '
                             'alone, printing its memory growth as JSON.')


# one model of each family, at sizes that every one of them accepts
FAST = ('bcae1', 'deep_ae', 'memae_2d', 'memory', 'cgru_ae', 'alps', 'adacl_cnn',
        'feature_predictor', 'vit_mini', 'resnet_mini')
FAST_SETTINGS = {'models': list(FAST), 'size': 32, 'batch': 4, 'repeats': 3, 'warmup': 1,
                 'torch_compile': False, 'isolated_memory': False}


def _apply_fast() -> None:
  for name, value in FAST_SETTINGS.items():
    if not flags.FLAGS[name].present:
      flags.FLAGS[name].value = value


def _batch(name: str) -> int:
  return _BATCH.value or lib.DEFAULT_BATCH.get(name, 32)


def _probe(spec: str) -> None:
  """Runs one record alone; prints the growth of resident memory over the set-up."""
  name, framework, mode = spec.split(',')
  args = (name, lib.input_shape(name, _SIZE.value), _batch(name), _DTYPE.value, 3, 1)
  if framework == 'jax':
    out = lib.jax_records(*args, modes=(mode,))[0]
  else:
    variables = lib.jax_records(*args, modes=())[1]
    out = lib.torch_records(*args, variables, framework == 'torch.compile', modes=(mode,))[0]
  mem = out[mode][1]
  print(json.dumps({'isolated_rss_growth_mb': (mem.peak - mem.before) / 2**20}))


def _isolated_memory(record) -> float | None:
  cmd = [sys.executable, '-m', 'experiments.bench',
         f'--memory_probe={record["model"]},{record["framework"]},{record["mode"]}',
         f'--batch={record["batch"]}', f'--size={_SIZE.value}', f'--dtype={_DTYPE.value}']
  r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
  lines = [x for x in r.stdout.splitlines() if x.startswith('{')]
  if r.returncode or not lines:
    print(f'memory probe failed for {cmd[3]}: {r.stderr[-300:]}')
    return None
  return json.loads(lines[-1])['isolated_rss_growth_mb']


def _profile_model(name: str, shape: tuple, batch: int, mode: str, steps: int):
  """(JAX profile, torch profile) of one model's step: the model, weights, twin and input
  that the timed records use, after their warm-up."""
  args = (name, shape, batch, 'float32', 2, 1)
  jax_calls, torch_calls = {}, {}
  _, variables, _ = lib.jax_records(*args, modes=(mode,), keep=jax_calls)
  lib.torch_records(*args, variables, False, modes=(mode,), keep=torch_calls)
  hlo = jax_calls['lower', mode]().compile().as_text()
  return (profile.profile_jax(jax_calls[mode][0], hlo, steps),
          profile.profile_torch(*torch_calls[mode], steps))


def _profiles() -> None:
  """--profile: each model's step profiled on both sides, as markdown (and JSON)."""
  meta, steps = lib.meta(), _PROFILE_STEPS.value
  parts = [f'Profiles of the {_PROFILE.value} step ({steps} calls per side): {meta["date"]}, '
           f'{meta["cpu"]} ({meta["cpu_count"]} cores), jax {meta["versions"]["jax"]}, '
           f'torch {meta["versions"]["torch"]}.']
  dump = {'meta': meta, 'mode': _PROFILE.value, 'steps': steps, 'models': {}}
  for name in _MODELS.value:
    if _PROFILE.value not in lib.modes(name):
      print(f'{name} has no {_PROFILE.value} step: skipped')
      continue
    shape = lib.input_shape(name, _SIZE.value)
    ours, theirs = _profile_model(name, shape, _batch(name), _PROFILE.value, steps)
    title = f'#### {name} {"×".join(map(str, shape[:-1]))} b{_batch(name)}'
    parts.append(f'{title}\n\n{profile.table(ours, theirs)}')
    print(parts[-1] + '\n', flush=True)
    dump['models'][name] = {p.framework: dataclasses.asdict(p) for p in (ours, theirs)}
    if _OUT.value:        # after each model: a run cut short keeps its profiles
      with open(_OUT.value, 'w') as f:
        json.dump(dump, f, indent=1)
      with open(os.path.splitext(_OUT.value)[0] + '.md', 'w') as f:
        f.write('\n\n'.join(parts) + '\n')


def main(argv):
  del argv
  torch.set_num_threads(os.cpu_count())     # XLA:CPU also uses every core
  if torch.cuda.is_available():   # TF32 in float32 matmuls, as XLA's default precision on
    torch.set_float32_matmul_precision('high')   # GPU (cuDNN convs are TF32 on both sides)
  if _PROBE.value:
    _probe(_PROBE.value)
    return
  if _SUMMARIZE.value:
    _summarize(_SUMMARIZE.value)
    return
  if _FAST.value:
    _apply_fast()
  unknown = [m for m in _MODELS.value if m not in lib.PAPER_INPUT]
  if unknown:
    raise app.UsageError(f'no twin for {unknown}; known: {", ".join(sorted(lib.PAPER_INPUT))}')
  if _OUT.value:     # before the first model: minutes of timing must not end in a traceback
    try:
      os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
    except OSError as e:
      raise app.UsageError(f'--out={_OUT.value}: {e.strerror}') from None
  if _PROFILE.value:
    if jax.default_backend() != 'cpu' or torch.cuda.is_available():
      raise app.UsageError('--profile reads XLA:CPU thunks and CPU ATen times; on a GPU '
                           'use jax.profiler and torch.profiler with their device traces')
    _profiles()
    return
  records, peak = [], harness.matmul_peak_gflops()
  print(f'float32 matmul peak of this machine (JAX, 2048³): {peak:.0f} GFLOP/s')
  failed = []
  for name in _MODELS.value:
    try:
      records += _bench_model(name, peak)
    except Exception as e:  # noqa: BLE001  (one model failing on a new platform)
      failed.append(name)
      print(f'{name} failed: {type(e).__name__}: {str(e)[:300]}', flush=True)
    _write(records, peak, failed)      # after each model: a run cut short keeps its records
  if _ISOLATED.value and jax.default_backend() == 'cpu':
    for r in records:
      r['isolated_rss_growth_mb'] = _isolated_memory(r)
  result = _write(records, peak, failed)
  print(f'\n{json.dumps(result["meta"])}\n\n' + lib.table(records))
  if failed:
    raise SystemExit(f'failed: {", ".join(failed)} (the records of the others are kept)')


def _bench_model(name: str, peak: float) -> list:
  """The records of one model: JAX, eager torch and (with --torch_compile) torch.compile,
  each mode, with the paired ratios when --paired is set."""
  shape, batch = lib.input_shape(name, _SIZE.value), _batch(name)
  args = (name, shape, batch, _DTYPE.value, _REPEATS.value, _WARMUP.value)
  jax_calls, torch_calls, modes = {}, {}, lib.modes(name)
  jax_out, variables, reference = lib.jax_records(*args, modes=modes, keep=jax_calls,
                                                  conv_impl=_IMPL.value)
  frameworks = [('torch', False)] + ([('torch.compile', True)] if _COMPILE.value else [])
  torch_outs = {}
  for fw, compiled in frameworks:
    try:
      torch_outs[fw] = lib.torch_records(*args, variables, compiled, modes=modes,
                                         keep=None if compiled else torch_calls,
                                         reference=None if compiled else reference)
    except Exception as e:  # noqa: BLE001  (torch.compile can fail per platform)
      print(f'{fw} failed for {name}: {type(e).__name__}: {str(e)[:200]}')
  if not torch_outs:
    raise RuntimeError('no PyTorch record')
  flops, records = next(iter(torch_outs.values()))[1], []
  for mode in modes:
    records.append(lib.record(name, 'jax', mode, shape, batch, _DTYPE.value, flops,
                              *jax_out[mode]))
    for fw, (out, _, diff) in torch_outs.items():
      records.append(lib.record(name, fw, mode, shape, batch, _DTYPE.value, flops,
                                *out[mode]))
      if diff is not None:
        records[-1]['max_rel_diff'] = diff
      if fw == 'torch' and _PAIRED.value:
        records[-1].update(_paired(torch_calls[mode], jax_calls[mode]))
  for r in records:
    r['share_of_peak'] = r['gflops_per_s'] / peak
  print(lib.table(records), flush=True)
  return records


def _paired(torch_call, jax_call) -> dict:
  out = {'paired_block': _BLOCK.value}
  for key, block in (('paired', 1), ('paired_block', _BLOCK.value)):
    ratios = harness.paired_ratios(torch_call, jax_call, _PAIRED.value, block)
    out.update({f'{key}_ratio': float(np.median(ratios)),
                f'{key}_p25': float(np.percentile(ratios, 25)),
                f'{key}_p75': float(np.percentile(ratios, 75))})
  return out


def _summarize(paths: list) -> None:
  runs, metas = [], []
  for path in paths:
    try:
      with open(path) as f:
        result = json.load(f)
      runs.append(list(result['records']))
      metas.append(dict(result['meta']))
    except (OSError, ValueError, KeyError, TypeError) as e:
      raise app.UsageError(f'{path}: not a benchmark JSON ({type(e).__name__}: {e})')
  for m in {json.dumps({k: m.get(k) for k in ('jax_device', 'torch_device', 'versions')})
            for m in metas}:
    print(m)
  print(lib.summary(runs))


def _write(records: list, peak: float, failed: list) -> dict:
  result = {'meta': {**lib.meta(), 'matmul_peak_gflops': peak, 'failed': failed,
                     'conv_impl': _IMPL.value,
                     'torch_float32_matmul': torch.get_float32_matmul_precision()},
            'records': records}
  if _OUT.value:
    tmp = _OUT.value + '.tmp'
    with open(tmp, 'w') as f:
      json.dump(result, f, indent=1)
    os.replace(tmp, _OUT.value)
  return result


if __name__ == '__main__':
  app.run(main)
