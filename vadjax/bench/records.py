"""Benchmark records: one (model, framework, mode) timed for JAX and for its PyTorch twin in
the same process, as `experiments/bench.py` runs them (its docstring has the method: paper
input sizes, warm-up, medians, FLOPs from the twin, memory), and the markdown table."""

import datetime
import importlib.metadata
import os
import platform

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import torch

from vadjax import parallel
from vadjax.bench import harness
from vadjax.bench.twins import TWINS, Memory as TorchMemory, backbones, port
from vadjax.bench.twins.memae import ENTROPY_WEIGHT
from vadjax.methods import METHODS
from vadjax.models import BACKBONES, MODELS, conv_rnn_ae, vit
from vadjax.nn.memory import Memory
from vadjax.train import steps as steps_lib

PAPER_INPUT = {'bcae1': (128, 128, 1), 'deep_ae': (32, 32, 1), 'memae_2d': (32, 32, 1),
               'memae_3d': (16, 64, 64, 1), 'memory': (512, 256),
               'se_cae': (128, 128, 1), 'aa_cae': (128, 128, 1), 'sa_cae': (128, 128, 1),
               'ssa_cae': (128, 128, 1), 'cbam_ae': (32, 32, 1), 'ltpa_ae': (32, 32, 1),
               'bcae2': (128, 128, 1), 'ks_cae': (128, 128, 1), 'ks_cae_fused': (128, 128, 1),
               **{n: (8, 128, 128, 1) for n in ('conv_rnn_ae', 'per_frame',
                                                *conv_rnn_ae.NAMES)},
               'alps': (32, 32, 1), 'adacl_cnn': (32, 32, 1),
               # seed 004: clips of 9 ViT-S feature vectors; the backbones at their sizes
               'feature_predictor': (9, 1, 1, 384),
               **{n: (224, 224, 3) for n in vit.SIZES}, 'vit_mini': (64, 64, 3),
               'resnet50': (128, 128, 3), 'resnet_mini': (64, 64, 3)}
# per_frame: BCAE1 on 4 clips of 8 frames, BCAE1's own batch of 32 images; the larger ViTs
# at 224² cost 35–156 GFLOP an image (measured: a CPU call of 32 would take 7–37 s)
DEFAULT_BATCH = {'memae_3d': 4, 'memory': 8, 'aa_cae': 8, 'per_frame': 4,
                 **{n: 8 for n in ('conv_rnn_ae', *conv_rnn_ae.NAMES)},
                 'vit_s8': 4, 'vit_b16': 4, 'vit_b8': 2}
# benchmark names that are a registered model with other settings
VARIANTS = {'ks_cae_fused': ('ks_cae', {'block': 'fused'})}
METHOD = {'memae_2d': 'memae', 'memae_3d': 'memae', 'alps': 'alps', 'adacl_cnn': 'adacl',
          'feature_predictor': 'feature_prediction'}
# ADACL's JAX step doubles its batch on device (each image and a created anomaly); its twin
# gets the doubled batch ready-made (the image and its mirror), so torch does no augmenting
DOUBLED = ('adacl_cnn',)
# what inference returns (else the reconstruction)
OUTPUT = {'adacl_cnn': 'prediction', 'feature_predictor': 'prediction',
          **{n: 'cls' for n in vit.SIZES}, 'resnet50': 'latent', 'resnet_mini': 'latent'}
# the frozen backbones of seed 004 are timed in inference only (DINO trains them:
# experiments/dino.py); their twins and the feature predictor's take channels-last inputs
BACKBONE_NAMES = tuple(BACKBONES.names())
CHANNELS_LAST = (*BACKBONE_NAMES, 'feature_predictor')


def modes(name: str) -> tuple:
  return ('infer',) if name in BACKBONE_NAMES else ('train', 'infer')


def input_shape(name: str, size: int) -> tuple:
  shape = PAPER_INPUT[name]
  if size and name not in ('memory', 'feature_predictor'):
    shape = (*shape[:-3], size, size, shape[-1])
  return shape


def _inputs(name, shape, batch):
  rng = np.random.default_rng(0)
  if name == 'memory':
    return rng.normal(size=(batch * shape[0], shape[1])).astype(np.float32)
  if name == 'feature_predictor':                 # standardised feature vectors
    return rng.standard_normal((batch, *shape)).astype(np.float32)
  return rng.random((batch, *shape), np.float32)


def _timed_jax(fn, lower, warmup, repeats):
  """(timing, resident memory, device peak, XLA's buffer assignment in MB) of one call."""
  if jax.default_backend() == 'gpu':
    for d in jax.local_devices():
      d.memory_stats()      # initialise
  with harness.PeakRSS() as mem:
    t = harness.time_calls(fn, jax.block_until_ready, warmup, repeats)
  peak = None
  if jax.default_backend() != 'cpu':
    peak = jax.local_devices()[0].memory_stats().get('peak_bytes_in_use')
  ma = lower().compile().memory_analysis()
  xla_mb = (ma.temp_size_in_bytes + ma.argument_size_in_bytes + ma.output_size_in_bytes
            - ma.alias_size_in_bytes) / 2**20
  return t, mem, peak, xla_mb


def _time_modes(calls, modes, warmup, repeats, keep):
  """{mode: `_timed_jax` of calls[mode] = (call, lower)}; `keep` gets (call, sync) under
  mode and the lowering under ('lower', mode) (`experiments.bench --profile` reads its HLO)."""
  out = {}
  for mode in modes:
    out[mode] = _timed_jax(*calls[mode], warmup, repeats)
    if keep is not None:
      keep[mode] = (calls[mode][0], jax.block_until_ready)
      keep['lower', mode] = calls[mode][1]
  return out


def jax_steps(name, shape, dtype, conv_impl, mesh):
  """The benchmark model's training steps (`steps_lib.build_steps`) on `mesh`."""
  cfg = ml_collections.ConfigDict(dict(
      learning_rate=1e-3, weight_decay=1e-5, memae=dict(entropy_weight=ENTROPY_WEIGHT),
      image_size=0, data=dict(video=dict(clip_length=shape[0], clip_strides=(1,)))))
  model_name, kwargs = VARIANTS.get(name, (name, {}))
  kwargs = {**kwargs, 'conv_impl': conv_impl} if conv_impl != 'auto' else kwargs
  model = MODELS.get(model_name)(channels=shape[-1], dtype=jnp.dtype(dtype), **kwargs)
  method = METHODS.get(METHOD.get(name, 'reconstruction'))(cfg)
  tx = method.optimizer(cfg, steps_lib.make_optimizer)
  return steps_lib.build_steps(model, method, tx, mesh, shape)


def jax_records(name, shape, batch, dtype, repeats, warmup, modes=('train', 'infer'),
                 keep=None, conv_impl='auto'):
  """Timings per mode, the variables after them and the inference output on the benchmark
  input; `keep` (a dict) gets each mode's (call, sync) for `--paired`; `conv_impl` other than
  'auto' goes to the model (vadjax.nn.conv_forms.resolve_impl)."""
  if name == 'memory':
    return jax_memory_records(shape, batch, dtype, repeats, warmup, modes, keep)
  if name in BACKBONE_NAMES:
    return jax_backbone_records(name, shape, batch, dtype, repeats, warmup, modes, keep)
  steps = jax_steps(name, shape, dtype, conv_impl, mesh := parallel.make_mesh(1))
  model, state = steps.model, [steps.init(jax.random.PRNGKey(0))]
  b = parallel.shard_batch({'image': _inputs(name, shape, batch)}, mesh)

  def train():
    state[0], m = steps.train(state[0], b)
    return m['loss']
  infer = jax.jit(lambda s, x: model.apply({'params': s.params, 'batch_stats': s.batch_stats},
                                           x, train=False)[OUTPUT.get(name, 'recon')])
  calls = {'train': (train, lambda: steps.train.lower(state[0], b)),
           'infer': (lambda: infer(state[0], b['image']),
                     lambda: infer.lower(state[0], b['image']))}
  out = _time_modes(calls, modes, warmup, repeats, keep)
  variables = {'params': state[0].params, 'batch_stats': state[0].batch_stats}
  return out, jax.device_get(variables), np.asarray(infer(state[0], b['image']), np.float32)


def jax_backbone_records(name, shape, batch, dtype, repeats, warmup, modes, keep=None):
  module = BACKBONES.get(name)(channels=shape[-1], dtype=jnp.dtype(dtype))
  x = jnp.asarray(_inputs(name, shape, batch))
  variables = jax.jit(module.init)(jax.random.key(0), x[:1])
  infer = jax.jit(lambda v, x: module.apply(v, x)[OUTPUT[name]])
  calls = {'infer': (lambda: infer(variables, x), lambda: infer.lower(variables, x))}
  out = _time_modes(calls, modes, warmup, repeats, keep)
  return out, jax.device_get(variables), np.asarray(infer(variables, x), np.float32)


def jax_memory_records(shape, batch, dtype, repeats, warmup, modes, keep=None):
  mod = Memory(num_items=2000, shrink_threshold=1 / 2000, dtype=jnp.dtype(dtype))
  z = jnp.asarray(_inputs('memory', shape, batch))
  params = mod.init(jax.random.PRNGKey(0), z)['params']

  def loss(p, z):   # as the twin's (vadjax.bench.twins.memae.Memory.loss)
    z_hat, w = mod.apply({'params': p}, z)
    return (z_hat ** 2).mean() - ENTROPY_WEIGHT * (w * jnp.log(w + 1e-12)).sum(-1).mean()
  grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
  infer = jax.jit(lambda p, z: mod.apply({'params': p}, z)[0])
  calls = {'train': (lambda: grad(params, z), lambda: grad.lower(params, z)),
           'infer': (lambda: infer(params, z), lambda: infer.lower(params, z))}
  out = _time_modes(calls, modes, warmup, repeats, keep)
  return (out, {'params': {'memory': {'memory': jax.device_get(params['memory'])}}},
          np.asarray(infer(params, z), np.float32))


def torch_twin(name, shape, variables):
  if name == 'memory':
    twin = TorchMemory(2000, shape[-1], shrink_threshold=1 / 2000)
    twin.memory.data = torch.from_numpy(np.array(variables['params']['memory']['memory']))
    return twin
  if name in BACKBONE_NAMES:
    return backbones.twin_of(name, variables)
  twin = TWINS[name](channels=shape[-1], input_size=shape[-3:-1])
  if hasattr(twin, 'load_flax'):
    return twin.load_flax(variables['params'])
  return port(twin, variables)


def torch_records(name, shape, batch, dtype, repeats, warmup, variables, compiled,
                   modes=('train', 'infer'), keep=None, reference=None):
  """Timings per mode and the forward FLOPs; with `reference` (the JAX inference output on
  the same input and variables) also the largest difference from it, relative to its
  largest magnitude, measured before any timed training step."""
  dev = 'cuda' if torch.cuda.is_available() else 'cpu'
  twin = torch_twin(name, shape, variables).to(dev)
  x = torch.from_numpy(_inputs(name, shape, batch))
  if name not in CHANNELS_LAST and name != 'memory':
    x = x.movedim(-1, 1).contiguous()
  if name in DOUBLED:
    x = torch.cat([x, x.flip(-1)])
  target = torch.from_numpy(np.random.default_rng(1).random(len(x), np.float32)).to(dev)
  x = x.to(dev).requires_grad_(name == 'memory')    # the kernel's gradient w.r.t. queries
  flops = harness.forward_flops(twin, x)
  net = torch.compile(twin) if compiled else twin
  opt = torch.optim.Adam(twin.parameters(), 1e-3, weight_decay=1e-5)
  amp = torch.autocast(dev, dtype=torch.bfloat16, enabled=dtype == 'bfloat16')

  def train():
    twin.train()
    opt.zero_grad(set_to_none=True)
    x.grad = None
    with amp:
      loss = twin.loss(net(x), x, target)     # each twin's own objective
    loss.backward()
    if hasattr(twin, 'after_backward'):  # ALPS: the distorter's ascent
      twin.after_backward()
    opt.step()
    return loss

  def infer():
    twin.eval()
    with torch.no_grad(), amp:
      out = net(x)
      return out[0] if name == 'memory' else out[OUTPUT.get(name, 'recon')]

  def sync(r):
    if dev == 'cuda':
      torch.cuda.synchronize()
    return r
  diff = None if reference is None else _relative_difference(name, infer(), reference)
  out = {}
  for mode in modes:
    if dev == 'cuda':
      torch.cuda.reset_peak_memory_stats()
    fn = train if mode == 'train' else infer
    with harness.PeakRSS() as mem:
      t = harness.time_calls(fn, sync, warmup, repeats)
    if keep is not None:
      keep[mode] = (fn, sync)
    peak = torch.cuda.max_memory_allocated() if dev == 'cuda' else None
    out[mode] = (t, mem, peak, None)
  return out, flops, diff


def _relative_difference(name, ours, reference) -> float:
  ours = ours.detach().float().cpu().numpy()[:len(reference)]    # (ADACL's doubled batch)
  if name not in CHANNELS_LAST and name != 'memory' and ours.ndim >= 4:
    ours = np.moveaxis(ours, 1, -1)
  ours = ours.reshape(reference.shape)
  return float(np.abs(ours - reference).max() / max(np.abs(reference).max(), 1e-12))


def record(name, framework, mode, shape, batch, dtype, flops, t, mem, peak, xla_mb):
  f = flops * (3 if mode == 'train' else 1)
  return {'model': name, 'framework': framework, 'mode': mode, 'batch': batch,
          'input': list(shape), 'dtype': dtype, 'first_call_s': t.first_s,
          'median_s': t.median_s, 'p10_s': t.p10_s, 'p90_s': t.p90_s, 'repeats': t.repeats,
          'samples_per_s': batch / t.median_s, 'flops': f, 'gflops_per_s': f / t.median_s / 1e9,
          'peak_rss_mb': mem.peak / 2**20, 'rss_growth_mb': (mem.peak - mem.before) / 2**20,
          'device_peak_mb': None if peak is None else peak / 2**20,
          'xla_buffers_mb': xla_mb}


def _cpu_name() -> str:
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def meta():
  versions = {p: importlib.metadata.version(p) for p in ('jax', 'jaxlib', 'flax', 'torch')}
  dev = jax.devices()[0]
  return {'date': datetime.datetime.now().isoformat(timespec='seconds'), 'versions': versions,
          'jax_device': f'{dev.platform}: {dev.device_kind}', 'cpu': _cpu_name(),
          'cpu_count': os.cpu_count(), 'torch_threads': torch.get_num_threads(),
          'torch_device': 'cuda' if torch.cuda.is_available() else 'cpu',
          'xla_flags': os.environ.get('XLA_FLAGS', '')}


def _memory(r) -> str:
  """Device peak on GPU; on CPU the isolated RSS growth when measured, else the peak RSS."""
  if r.get('device_peak_mb') is not None:
    return f'{r["device_peak_mb"]:.0f}'
  if r.get('isolated_rss_growth_mb') is not None:
    return f'+{r["isolated_rss_growth_mb"]:.0f}'
  return f'({r["peak_rss_mb"]:.0f})'


def table(records) -> str:
  paired = any('paired_ratio' in r for r in records)
  block = next((r['paired_block'] for r in records if 'paired_block' in r), 0)
  lines = ['| model | mode | framework | median ms | p10–p90 ms | samples/s | GFLOP/s | '
           '% peak | first call s | memory MB | torch/jax | rel. diff |'
           + (f' paired torch/jax (p25–p75) | blocks of {block} |' if paired else ''),
           '|' + '---|' * (14 if paired else 12)]
  base = {(r['model'], r['mode']): r['median_s'] for r in records if r['framework'] == 'jax'}
  for r in records:
    ratio = base[(r['model'], r['mode'])] and r['median_s'] / base[(r['model'], r['mode'])]
    lines.append(
        f'| {r["model"]} {"×".join(map(str, r["input"][:-1]))} b{r["batch"]} | {r["mode"]} | {r["framework"]} | '
        f'{r["median_s"] * 1e3:.1f} | {r["p10_s"] * 1e3:.1f}–{r["p90_s"] * 1e3:.1f} | '
        f'{r["samples_per_s"]:.0f} | {r["gflops_per_s"]:.1f} | {_share(r)} | '
        f'{r["first_call_s"]:.1f} | '
        f'{_memory(r)} | {"" if r["framework"] == "jax" else f"{ratio:.2f}"} | '
        f'{_diff(r)} |'
        + (f' {_paired(r, "paired")} | {_paired(r, "paired_block")} |' if paired else ''))
  return '\n'.join(lines)


def _diff(r) -> str:
  return '' if r.get('max_rel_diff') is None else f'{r["max_rel_diff"]:.0e}'


def _share(r) -> str:
  return '' if r.get('share_of_peak') is None else f'{100 * r["share_of_peak"]:.0f}'


def _paired(r, key: str) -> str:
  if f'{key}_ratio' not in r:
    return ''
  return f'{r[f"{key}_ratio"]:.2f} ({r[f"{key}_p25"]:.2f}–{r[f"{key}_p75"]:.2f})'


def summary(runs) -> str:
  """One row per model × dtype from runs (lists of records, later runs winning): JAX's
  median ms in train and inference, and torch/jax for eager torch and torch.compile, each
  from its own run (the median of the paired ratios where measured, else of the medians)."""
  ms, ratio = {}, {}
  for records in runs:
    base = {}
    for r in records:
      key = (r['model'], tuple(r['input']), r['batch'], r['dtype'], r['mode'])
      if r['framework'] == 'jax':
        base[key] = ms[key] = r['median_s'] * 1e3
    for r in records:
      key = (r['model'], tuple(r['input']), r['batch'], r['dtype'], r['mode'])
      if r['framework'] != 'jax' and key in base:
        ratio[key, r['framework']] = r.get('paired_ratio', r['median_s'] * 1e3 / base[key])
  lines = ['| model | dtype | train JAX ms | train torch/jax | train torch.compile/jax | '
           'infer JAX ms | infer torch/jax | infer torch.compile/jax |', '|' + '---|' * 8]
  for row in sorted({k[:4] for k in ms}, key=lambda k: (k[3], k[0], k[1])):
    cells = [f'{row[0]} {"×".join(map(str, row[1][:-1]))} b{row[2]}', row[3]]
    for mode in ('train', 'infer'):
      key = (*row, mode)
      cells.append(f'{ms[key]:.1f}' if key in ms else '–')
      cells += [f'{ratio[key, fw]:.2f}' if (key, fw) in ratio else '–'
                for fw in ('torch', 'torch.compile')]
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)
