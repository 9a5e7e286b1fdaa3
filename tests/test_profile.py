"""Op-level profiles (vadjax/bench/profile.py): the HLO reading against convolutions whose
direction is known, the time sharing against a brute-force sweep, and a profiled step of
each framework whose ops add up to its busy time."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from absl import flags
from absl.testing import flagsaver
from jax import lax

from experiments import bench
from vadjax.bench import profile
from vadjax.nn import conv_forms


def _conv(x, w, stride=(2, 2)):
  return lax.conv_general_dilated(x, w, stride, ((1, 1), (1, 1)), dimension_numbers=conv_forms.DN)


def _loss(params, x, form):
  w1, w2 = params
  h = jnp.tanh(form(x, w1))
  return (_conv(h, w2, (1, 1)) ** 2).mean()


def _kinds(form):
  x, w1, w2 = jnp.ones((2, 16, 16, 16)), jnp.ones((3, 3, 16, 16)), jnp.ones((3, 3, 16, 8))
  grad = jax.jit(jax.grad(_loss, argnums=(0, 1)), static_argnums=2)
  hlo = grad.lower((w1, w2), x, form).compile().as_text()
  return profile.hlo_ops(hlo), hlo


def test_hlo_ops_tell_each_convolution_direction():
  """XLA's own gradients: two forward convs, the strided conv's input gradient (lhs
  dilated), and both kernel gradients, each read from the optimised HLO."""
  ops, hlo = _kinds(_conv)
  convs = [v for v in ops.values() if v[0].startswith('conv')]
  kinds = sorted(k for k, _, _ in convs)
  assert kinds.count('conv fwd') == 2 and kinds.count('conv kernel-grad') == 2, kinds
  assert kinds.count('conv input-grad') >= 1, kinds
  assert all(p == ('forward' if k == 'conv fwd' else 'backward') for k, p, _ in convs)
  lhs = [d for k, _, d in convs if 'lhs_dilate' in d]
  assert lhs and all(k == 'conv input-grad' for k, _, d in convs if 'lhs_dilate' in d)
  assert hlo.count('convolution(') >= len(convs)


def test_hlo_ops_see_vadjax_gradient_forms_by_their_scope():
  """The sub-pixel form computes the strided conv's gradients as other ops (im2col
  matmuls, a transposed conv): they count as that conv's gradients, not as matmuls."""
  ops, _ = _kinds(lambda x, w: conv_forms.conv_subpixel_grad(x, w, ((1, 1), (1, 1)), 2))
  kinds = {k for k, _, _ in ops.values()}
  assert {'conv fwd', 'conv input-grad', 'conv kernel-grad'} <= kinds
  dots = [k for k, _, d in ops.values() if ' dot ' in f' {d} ']
  assert dots and 'matmul' not in dots      # the im2col kernel gradient's matmuls


def test_shared_times_split_overlaps_equally_as_a_brute_force_sweep():
  rng = np.random.default_rng(0)
  spans = [(f'op{i % 5}', s, s + d) for i, (s, d) in
           enumerate(zip(rng.uniform(0, 10, 30), rng.uniform(0.1, 3, 30)))]
  got = profile._shared_times(spans)
  grid = np.arange(0, 14, 1e-4) + 5e-5             # midpoints of 0.1 µs cells
  active = np.array([[s <= t < e for t in grid] for _, s, e in spans])
  n = active.sum(0)
  want = {}
  for (name, _, _), row in zip(spans, active):
    want[name] = want.get(name, 0) + (row / np.maximum(n, 1)).sum() * 1e-4
  for name in want:
    assert got[name] == pytest.approx(want[name], abs=5e-3)
  assert sum(got.values()) == pytest.approx(profile._busy_ms([s[1:] for s in spans]), rel=1e-9)
  assert profile._busy_ms([(0, 2), (1, 3), (5, 6)]) == 4


def test_thunk_spans_run_to_their_completion_marker_in_their_own_module():
  ours = {'hlo_module': 'jit_train'}
  events = [{'ph': 'X', 'name': 'conv.1', 'ts': 0, 'dur': 1, 'args': ours},
            {'ph': 'X', 'name': 'fusion', 'ts': 2, 'dur': 3, 'args': ours},
            {'ph': 'X', 'name': 'fusion', 'ts': 2, 'dur': 50, 'args': {'hlo_module': 'jit_f'}},
            {'ph': 'X', 'name': 'end: conv.1', 'ts': 9000, 'dur': 0},
            {'ph': 'X', 'name': 'other', 'ts': 0, 'dur': 99}]
  spans = profile._thunk_spans(events, {'conv.1': 0, 'fusion': 0}, 'jit_train')
  assert spans == [('conv.1', 0.0, 9.0), ('fusion', 0.002, 0.005)]


def test_profiled_steps_of_both_frameworks(tmp_path):
  """`bench --profile`: both sides' ops add up to their busy time, which is within the
  step's wall time, and each side has convolutions in both directions."""
  if not flags.FLAGS.is_parsed():
    flags.FLAGS(['bench'])
  out = tmp_path / 'profile.json'
  with flagsaver.flagsaver(models=['deep_ae'], batch=4, size=16, profile='train',
                           profile_steps=3, out=str(out)):
    bench.main([])
  prof = json.loads(out.read_text())['models']['deep_ae']
  for side in ('jax', 'torch'):
    p = prof[side]
    ms = sum(o['ms'] for o in p['ops'])
    # JAX: overlapping thunks share their time, so it adds up exactly; torch: ATen's self
    # times inside the outermost ATen calls (a little of those calls is not ATen's)
    assert ms == pytest.approx(p['busy_ms'], rel=1e-6 if side == 'jax' else 0.05)
    assert p['busy_ms'] <= 1.05 * p['wall_ms']
    assert p['busy_ms'] > 0.25 * p['wall_ms'], p     # the ops are the step, not noise
    groups = profile.Profile(**{**p, 'ops': [profile.Op(**o) for o in p['ops']]}).by_group()
    assert groups.get('conv forward', 0) > 0 and groups.get('conv backward (input + kernel)', 0) > 0
    assert groups.get('optimiser update', 0) > 0, groups
  md = (tmp_path / 'profile.md').read_text()
  assert '#### deep_ae 16×16 b4' in md and '**whole step (wall)**' in md


def test_profile_of_a_torch_step_by_phase():
  net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, 2, 1), torch.nn.ReLU(),
                            torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 2))
  opt, x = torch.optim.Adam(net.parameters()), torch.ones(8, 1, 16, 16)

  def step():
    opt.zero_grad()
    net(x).sum().backward()
    opt.step()
  p = profile.profile_torch(step, lambda r: r, 2)
  kinds = {(o.kind, o.phase) for o in p.ops}
  assert {('conv fwd', 'forward'), ('conv backward', 'backward'), ('matmul', 'forward')} <= kinds
  assert any(phase == 'update' for _, phase in kinds)


def test_hlo_ops_of_an_inference_program_are_all_forward():
  x, w = jnp.ones((2, 16, 16, 4)), jnp.ones((3, 3, 4, 8))
  hlo = jax.jit(lambda x, w: jnp.tanh(_conv(x, w)).sum()).lower(x, w).compile().as_text()
  ops = profile.hlo_ops(hlo)
  assert {k for k, _, _ in ops.values() if k.startswith('conv')} == {'conv fwd'}
  assert {p for _, p, _ in ops.values()} == {'forward'}


def test_profile_refuses_what_it_cannot_read(monkeypatch):
  """A trace without this program's thunks is an error, not an empty table; on a CUDA
  machine `--profile` says it reads CPU timelines only."""
  f = jax.jit(lambda x: x * 2)
  x = jnp.ones(4)
  f(x).block_until_ready()
  with pytest.raises(RuntimeError, match='no XLA:CPU thunk'):
    profile.profile_jax(lambda: f(x), 'HloModule some_other_program\n', 1)
  if not flags.FLAGS.is_parsed():
    flags.FLAGS(['bench'])
  monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
  with flagsaver.flagsaver(models=['deep_ae'], profile='train'):
    with pytest.raises(Exception, match='reads XLA:CPU thunks'):
      bench.main([])
