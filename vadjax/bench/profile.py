"""Op-level profiles of one training step in JAX and in its PyTorch twin, grouped into
kinds that mean the same on both sides (issue 34: where does the whole step lose?).

JAX: `jax.profiler.trace` records one event per XLA:CPU thunk, named after its instruction
in the optimised HLO; `hlo_ops` reads that HLO to say what each instruction is (a
convolution and in which direction, a matmul, an elementwise fusion, a copy) and in which
part of the step it runs (forward, backward, optimiser update: from the `jvp(` and
`transpose(` that JAX writes into each instruction's metadata). PyTorch: `torch.profiler`'s
self time per ATen op, the phase from its ancestors (autograd's backward nodes, the
optimiser's `Optimizer.step`). Both sides report the wall time of the profiled calls, the
time during which at least one op ran ("busy"), and the sum of op times (above busy where
ops overlap), so the time spent between ops is visible too.
"""

import collections
import dataclasses
import glob
import gzip
import json
import os
import re
import tempfile
import time

import jax
import numpy as np
import torch

from vadjax.nn import conv_forms

# ops that contain other ops' events (their own events would count their bodies twice)
_CONTAINERS = ('while', 'call', 'conditional', 'tuple', 'get-tuple-element', 'parameter',
               'bitcast', 'constant')
_COPY = {*_CONTAINERS, 'copy', 'transpose', 'reshape', 'broadcast', 'slice', 'concatenate',
         'pad', 'dynamic-slice', 'dynamic-update-slice', 'reverse', 'iota', 'convert'}
_INSTR = re.compile(r'^\s*(?:ROOT )?%(?P<name>[\w.\-]+) = (?P<rest>.*)$')
_COMP = re.compile(r'^(?:ENTRY )?%(?P<name>[\w.\-]+) .*\{$')


@dataclasses.dataclass
class Op:
  name: str
  kind: str       # conv fwd / conv input-grad / conv kernel-grad / matmul / elementwise / ...
  phase: str      # forward, backward, update
  detail: str     # what it is, in a few words (shape, window, backend)
  ms: float       # per step; overlapping ops share the time they overlap


@dataclasses.dataclass
class Profile:
  framework: str
  wall_ms: float  # per step, mean of the profiled calls
  busy_ms: float  # per step, time with at least one op running (= the sum of `ops`' ms)
  sum_ms: float   # per step, each op's time in flight, summed (> busy where ops overlap)
  ops: list

  def by_group(self) -> dict:
    out = collections.defaultdict(float)
    for op in self.ops:
      out[group(op)] += op.ms
    return dict(out)


def group(op: Op) -> str:
  """The comparable bucket: convolutions by direction (PyTorch's `convolution_backward`
  computes both gradients in one op, so their sum is what compares), matmuls, and the rest
  by phase."""
  if op.kind.startswith('conv'):
    forward = op.kind == 'conv fwd' or (op.kind == 'conv as matmul' and op.phase == 'forward')
    return 'conv forward' if forward else 'conv backward (input + kernel)'
  if op.phase == 'update':
    return 'optimiser update'
  if op.kind == 'matmul':
    return f'matmul {op.phase}'
  return f'other {op.phase}'


def _shape_and_opcode(rest: str):   # 'f32[8]{0} fusion(%a), k=…' → shape, opcode, rest
  depth, i = 0, len(rest)
  for j, c in enumerate(rest):
    depth += (c in '([{') - (c in ')]}')
    if c == ' ' and depth == 0:
      i = j
      break
  shape, tail = rest[:i], rest[i + 1:]
  m = re.match(r'([\w\-]+)\((.*)$', tail)
  return (shape, m.group(1), m.group(2)) if m else (shape, '', tail)


def _dims(shape: str) -> tuple:                 # 'f32[8,3]{1,0}' → (8, 3)
  m = re.match(r'\w+\[([\d,]*)\]', shape)
  return tuple(int(d) for d in m.group(1).split(',') if d) if m else ()


def _parse(hlo_text: str):
  """{computation: [(name, shape, opcode, attributes)]} of an HLO module's text."""
  comps, current = {}, None
  for line in hlo_text.splitlines():
    m = _COMP.match(line)
    if m:
      current = comps.setdefault(m.group('name'), [])
      continue
    m = _INSTR.match(line)
    if m and current is not None:
      current.append((m.group('name'), *_shape_and_opcode(m.group('rest'))))
  return comps


def _attr(attrs: str, key: str) -> str:
  m = re.search(key + r'=(\{[^}]*\}|[^,\s]+)', attrs)
  return m.group(1) if m else ''


def _conv_detail(shape, attrs, in_fusion_kind='') -> str:
  window = _attr(attrs, 'window').strip('{}')
  return ' '.join(x for x in (in_fusion_kind, 'conv', shape.split('{')[0], window) if x)


_SCOPES = {conv_forms.INPUT_GRAD: 'conv input-grad', conv_forms.KERNEL_GRAD: 'conv kernel-grad',
           conv_forms.GEMM: 'conv as matmul'}


def _conv_scope(op_name: str) -> str:
  """The kind of an op under one of conv_forms' scopes (the innermost counts), else ''."""
  at = {kind: op_name.rfind(scope) for scope, kind in _SCOPES.items()}
  kind = max(at, key=at.get)
  return kind if at[kind] >= 0 else ''


def _op_name(*attrs) -> str:
  """The first op_name metadata among `attrs` (an instruction's, then its body's)."""
  for a in attrs:
    m = re.search(r'op_name="([^"]*)"', a)
    if m:
      return m.group(1)
  return ''


def _phase(op_name: str, differentiated: bool = True) -> str:   # inference: all forward
  if not differentiated or 'jvp(' in op_name and 'transpose(' not in op_name:
    return 'forward'
  return 'backward' if 'transpose(' in op_name else 'update' if op_name else ''


def _kernel_shapes(comps, differentiated: bool) -> set:
  """Sorted dims of every forward convolution's kernel (its second operand): a backward
  conv with that output shape computes a kernel gradient."""
  dims = {n: _dims(s) for body in comps.values() for n, s, _, _ in body}
  out = set()
  for body in comps.values():
    for _, _, opcode, attrs in body:
      operands = re.findall(r'%([\w.\-]+)', attrs.split(')')[0])
      forward = _phase(_op_name(attrs), differentiated) == 'forward'
      if opcode == 'convolution' and forward and len(operands) == 2:
        out.add(tuple(sorted(dims.get(operands[1], ()))))
  return out


def _kind(opcodes: set) -> str:
  if 'dot' in opcodes:
    return 'matmul'
  if opcodes & {'reduce', 'reduce-window', 'select-and-scatter'}:
    return 'reduce'
  return 'copy' if opcodes <= _COPY else 'elementwise'


def hlo_ops(hlo_text: str) -> dict:
  """{instruction name: (kind, phase, detail)} for every instruction of an optimised HLO
  module that runs as a thunk of its own (fusions are described by their bodies)."""
  comps, differentiated = _parse(hlo_text), 'jvp(' in hlo_text
  kernels = _kernel_shapes(comps, differentiated)
  out = {}
  for body in comps.values():
    for name, shape, opcode, attrs in body:
      if opcode in _CONTAINERS:
        continue
      inner = [(opcode, attrs, shape)]
      called = _attr(attrs, 'calls').lstrip('%')
      if opcode == 'fusion' and called in comps:
        inner = [(o, a, s) for _, s, o, a in comps[called]]
      op_name = _op_name(attrs, *(a for _, a, _ in inner))
      phase, scope = _phase(op_name, differentiated), _conv_scope(op_name)
      backend = 'ynn' if '__ynn_fusion' in attrs else 'onednn' if 'onednn' in attrs else ''
      conv = next((x for x in inner if x[0] == 'convolution'), None)
      detail = (_conv_detail(conv[2], conv[1], backend) if conv else
                ' '.join(x for x in (backend, opcode, shape.split('{')[0]) if x))
      if scope:         # any op of vadjax's own conv forms (im2col, matmuls, copies)
        kind = scope
        phase = phase if scope == 'conv as matmul' else 'backward'
      elif conv:
        grad = tuple(sorted(_dims(conv[2]))) in kernels
        kind = ('conv fwd' if phase == 'forward' or (not phase and not grad) else
                'conv kernel-grad' if grad else 'conv input-grad')
        phase = 'forward' if kind == 'conv fwd' else 'backward'
      else:
        kind = _kind({o for o, _, _ in inner})
      out[name] = (kind, phase or 'forward', detail)
  return out


def _busy_ms(intervals) -> float:        # length of the union of (start, end) intervals
  total, end = 0.0, -np.inf
  for s, e in sorted(intervals):
    if e > end:
      total += e - max(s, end)
      end = e
  return total


def _shared_times(spans) -> dict:
  """{name: time} from (name, start, end) spans that may overlap: each moment is split
  equally among the spans running then, so the times sum to the busy time (on 2 cores two
  thunks run side by side, and each asynchronous one is in flight from its launch to its
  completion)."""
  edges = sorted([(s, 1, i) for i, (_, s, _) in enumerate(spans)] +
                 [(e, -1, i) for i, (_, _, e) in enumerate(spans)])
  out, active, last = collections.defaultdict(float), set(), None
  for t, kind, i in edges:
    if active and last is not None:
      share = (t - last) / len(active)
      for j in active:
        out[spans[j][0]] += share
    last = t
    (active.add if kind == 1 else active.discard)(i)
  return out


def _thunk_spans(events, names, module: str = '') -> list:
  """(name, start ms, end ms) of every thunk of `names` in HLO module `module` (other
  programs run in the trace may reuse instruction names). An asynchronous thunk (a
  convolution or a YNNPACK fusion handed to the thread pool) records its launch as one
  event and its completion as an `end: NAME` marker; its span runs to that marker."""
  starts, spans = collections.defaultdict(list), []
  for e in sorted((e for e in events if e.get('ph') == 'X'), key=lambda e: e['ts']):
    name = e['name']
    if name in names and e.get('args', {}).get('hlo_module', module) == module:
      spans.append([name, e['ts'] / 1e3, (e['ts'] + e['dur']) / 1e3])
      starts[name].append(len(spans) - 1)
    elif name.startswith('end: ') and starts.get(name[5:]):
      spans[starts[name[5:]][-1]][2] = (e['ts'] + e['dur']) / 1e3
  return [tuple(s) for s in spans]


def _timed(fn, sync, steps: int) -> float:
  """Mean ms per call: the same calls' busy time is a total, so the mean bounds it."""
  t = time.perf_counter()
  for _ in range(steps):
    sync(fn())
  return (time.perf_counter() - t) / steps * 1e3


def profile_jax(fn, hlo_text: str, steps: int = 3) -> Profile:
  """Profiles `steps` calls of `fn` (a compiled JAX call, already warm) whose optimised
  HLO is `hlo_text`."""
  ops = hlo_ops(hlo_text)
  with tempfile.TemporaryDirectory() as d:
    with jax.profiler.trace(d, create_perfetto_trace=True):
      wall = _timed(fn, jax.block_until_ready, steps)
    path, = glob.glob(os.path.join(d, '**', 'perfetto_trace.json.gz'), recursive=True)
    with gzip.open(path) as f:
      events = json.load(f)
  events = events['traceEvents'] if isinstance(events, dict) else events
  module = re.match(r'HloModule ([\w.\-]+)', hlo_text)
  spans = _thunk_spans(events, ops, module.group(1) if module else '')
  if not spans:
    raise RuntimeError('the trace holds no XLA:CPU thunk event of this program')
  times = _shared_times(spans)
  rows = [Op(n, *ops[n], t / steps) for n, t in times.items()]
  return Profile('jax', wall, _busy_ms([s[1:] for s in spans]) / steps,
                 sum(e - s for _, s, e in spans) / steps, sorted(rows, key=lambda o: -o.ms))


_TORCH_CONV_FWD = ('convolution', 'conv2d', 'conv3d', 'conv_transpose', 'mkldnn_convolution',
                   'slow_conv', 'thnn_conv')
_TORCH_MATMUL = ('mm', 'addmm', 'bmm', 'matmul', 'linear', 'baddbmm', 'lstm')


def _torch_kind(name: str) -> str:
  op = name.split('::')[-1].lstrip('_')
  if 'convolution_backward' in op:
    return 'conv backward'
  if op.startswith(_TORCH_CONV_FWD):
    return 'conv fwd'
  return 'matmul' if op.rstrip('_') in _TORCH_MATMUL else 'other'


def _ancestors(event):
  e = event.cpu_parent
  while e is not None:
    yield e.name
    e = e.cpu_parent


def _torch_phase(event) -> str:
  for name in _ancestors(event):
    if name.startswith('Optimizer.step'):
      return 'update'
    if name.startswith('autograd::engine'):
      return 'backward'
  return 'forward'


def profile_torch(fn, sync, steps: int = 3) -> Profile:
  """Profiles `steps` calls of a PyTorch step: ATen ops' self time, grouped as for JAX
  (conv backward = `convolution_backward`, both gradients)."""
  with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
    wall = _timed(fn, sync, steps)
  times, kinds, intervals = collections.defaultdict(float), {}, []
  for e in prof.events():
    if not e.name.startswith('aten::') or e.self_cpu_time_total <= 0:
      continue
    key = (e.name, _torch_phase(e))
    times[key] += e.self_cpu_time_total / 1e3
    kinds[key] = _torch_kind(e.name)
    if not any(a.startswith('aten::') for a in _ancestors(e)):   # the outermost don't overlap
      intervals.append((e.time_range.start / 1e3, e.time_range.end / 1e3))
  rows = [Op(n, kinds[(n, p)], p, n.split('::')[-1], t / steps) for (n, p), t in times.items()]
  return Profile('torch', wall, _busy_ms(intervals) / steps, sum(times.values()) / steps,
                 sorted(rows, key=lambda o: -o.ms))


def _ms(v) -> str:
  return f'{v:.1f}' if v >= 0.05 else '<0.1' if v > 0 else '0'


def table(jax_profile: Profile, torch_profile: Profile, top: int = 8) -> str:
  """Markdown: the groups side by side, then each side's `top` ops."""
  gj, gt = jax_profile.by_group(), torch_profile.by_group()
  lines = ['| | JAX ms | torch ms | torch/JAX |', '|---|---|---|---|']
  for k in sorted(set(gj) | set(gt), key=lambda k: -max(gj.get(k, 0), gt.get(k, 0))):
    a, b = gj.get(k, 0.0), gt.get(k, 0.0)
    lines.append(f'| {k} | {_ms(a)} | {_ms(b)} | {b / a:.2f} |' if a > 0 else
                 f'| {k} | {_ms(a)} | {_ms(b)} | – |')
  for label, attr in (('ops in flight, summed', 'sum_ms'), ('busy (≥ 1 op running)', 'busy_ms'),
                      ('whole step (wall)', 'wall_ms')):
    a, b = getattr(jax_profile, attr), getattr(torch_profile, attr)
    lines.append(f'| **{label}** | {_ms(a)} | {_ms(b)} | {b / a:.2f} |')
  lines += ['', '| JAX op | kind, phase | ms | torch op | kind, phase | ms |',
            '|---|---|---|---|---|---|']
  for i in range(top):
    cells = []
    for p in (jax_profile, torch_profile):
      if i < len(p.ops):
        o = p.ops[i]
        name = f'`{o.name}` {o.detail}' if p.framework == 'jax' else f'`{o.name}`'
        cells += [name, f'{o.kind}, {o.phase}', _ms(o.ms)]
      else:
        cells += ['', '', '']
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)
