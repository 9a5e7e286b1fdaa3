"""Conv layers: PyTorch semantics (forward) and the fast s2d forms equal to the plain forms
(forward and gradients), on odd and even sizes, kernels 3-5, paddings and output paddings."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from vadjax.nn import kernel_grads
from vadjax.nn.conv_forms import depth_to_space, resolve_impl, space_to_depth
from vadjax.nn.layers import Conv, ConvTranspose

CASES = [(32, 3, 0, 0), (31, 3, 1, 1), (15, 4, 0, 0), (16, 3, 1, 1), (7, 4, 1, 0), (9, 5, 2, 1)]
STRIDE1 = [(4, 4, 0), (9, 3, 1), (6, 5, 2)]


def _layer(kind, impl, k, p, op, stride=2):
  return (Conv(5, k, stride, p, impl=impl) if kind == 'conv'
          else ConvTranspose(5, k, stride, p, op, impl=impl))


def _torch(kind, x, v, p, op, stride=2):
  w = torch.tensor(np.asarray(v['params']['kernel']))
  b = torch.tensor(np.asarray(v['params']['bias']))
  xt = torch.tensor(np.asarray(x)).permute(0, 3, 1, 2)
  if kind == 'conv':
    y = torch.nn.functional.conv2d(xt, w.permute(3, 2, 0, 1), b, stride, p)
  else:
    y = torch.nn.functional.conv_transpose2d(xt, w.permute(2, 3, 0, 1), b, stride, p, op)
  return y.permute(0, 2, 3, 1).numpy()


# stride 3: BCAE2's k5 s3 layers (output padding < stride)
STRIDE3 = [(31, 5, 0, 0, 3), (9, 5, 1, 2, 3), (10, 3, 1, 1, 3)]


@pytest.mark.parametrize('kind', ['conv', 'transpose'])
@pytest.mark.parametrize('size,k,p,op,stride', [c + (2,) for c in CASES] + STRIDE3)
def test_every_form_matches_pytorch_and_each_other(kind, size, k, p, op, stride):
  x = jnp.asarray(np.random.default_rng(size).normal(size=(2, size, size + 1, 3)), jnp.float32)
  v = jax.jit(_layer(kind, 'xla', k, p, op, stride).init)(jax.random.PRNGKey(0), x)
  v = jax.tree.map(lambda a: a + 0.1, v)        # non-zero bias
  ref = _torch(kind, x, v, p, op, stride)
  outputs = {impl: _output_and_grads(_layer(kind, impl, k, p, op, stride), v, x)
             for impl in ('xla', 's2d', 'tapwise', 'subpixel', 'gemm')}
  for impl, (y, grads) in outputs.items():
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5, err_msg=impl)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4),
                 outputs['xla'][1], grads)


def _output_and_grads(layer, v, x):
  """The layer's output and the gradients of sum(sin(output)) w.r.t. (variables, input),
  as one compiled program (op by op, each test would compile a hundred small ones)."""
  loss = lambda v, x: jnp.sum(jnp.sin(layer.apply(v, x)))
  return jax.jit(lambda v, x: (layer.apply(v, x), jax.grad(loss, argnums=(0, 1))(v, x)))(v, x)


@pytest.mark.parametrize('size,k,p', STRIDE1)
def test_stride1_transposed_tapwise_gradient(size, k, p):
  x = jnp.asarray(np.random.default_rng(size).normal(size=(2, size, size, 3)), jnp.float32)

  def layer(impl):
    return ConvTranspose(5, k, 1, p, impl=impl)
  v = jax.tree.map(lambda a: a + 0.1, jax.jit(layer('xla').init)(jax.random.PRNGKey(0), x))
  ref = _torch('transpose', x, v, p, 0, stride=1)
  outputs = {impl: _output_and_grads(layer(impl), v, x) for impl in ('xla', 's2d', 'gemm')}
  for impl, (y, grads) in outputs.items():
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5, err_msg=impl)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4),
                 outputs['xla'][1], grads)


@pytest.mark.parametrize('impl', ['auto', 's2d', 'xla', 'gemm', 'adjoint'])
def test_other_strides_use_the_plain_form(impl):
  # mixed strides have no fast form but gemm: every impl must still compute PyTorch's result
  x = jnp.asarray(np.random.default_rng(3).normal(size=(2, 7, 8, 3)), jnp.float32)
  for stride in ((1, 2), (3, 1)):
    layer = ConvTranspose(16, 5, stride, 1, 0, impl=impl)
    v = jax.tree.map(lambda a: a + 0.1, layer.init(jax.random.PRNGKey(0), x))
    ref = torch.nn.functional.conv_transpose2d(
        torch.tensor(np.asarray(x)).permute(0, 3, 1, 2),
        torch.tensor(np.asarray(v['params']['kernel'])).permute(2, 3, 0, 1),
        torch.tensor(np.asarray(v['params']['bias'])), stride, 1)
    np.testing.assert_allclose(layer.apply(v, x), ref.permute(0, 2, 3, 1).numpy(),
                               rtol=1e-5, atol=1e-5)


ADJOINT_CASES = [((9, 10), (3, 3), (2, 2), (1, 1), (1, 1)), ((7, 8), (5, 3), (3, 1), (1, 0), (2, 0)),
                 ((4, 6, 5), (3, 3, 3), (2, 2, 2), (1, 1, 1), (1, 1, 1)),     # MemAE-3D's
                 ((5, 6, 6), (3, 3, 3), (1, 2, 2), (1, 1, 1), (0, 1, 1)),
                 ((7, 9), (4, 4), (1, 1), (0, 0), (0, 0))]    # KS-CAE's last layer


@pytest.mark.parametrize('size,k,s,p,op', ADJOINT_CASES)
def test_adjoint_transposed_conv_gradients_equal_the_plain_forms(size, k, s, p, op):
  """The GPU's transposed conv (`conv_transpose_adjoint`): output, input and kernel
  gradients, and a second-order gradient, equal autodiff of the plain form; its kernel
  gradient has no lhs-dilated conv (the one XLA:GPU does not map to cuDNN): at stride > 1
  the plain form's gradient program has two, the adjoint's one (the forward)."""
  from vadjax.nn.layers import DN_3D, _plain_transpose, conv_transpose_adjoint
  dn = DN_3D if len(size) == 3 else ('NHWC', 'HWIO', 'NHWC')
  rng = np.random.default_rng(len(size) + s[0])
  x = jnp.asarray(rng.normal(size=(2, *size, 4)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(*k, 4, 3)), jnp.float32)

  def outputs(fn):
    loss = lambda x, w: jnp.sum(jnp.sin(fn(x, w, s, p, op, dn)))
    second = lambda x, w: jnp.sum(jnp.square(jax.grad(loss, 1)(x, w)))   # reverse over reverse
    program = jax.jit(lambda x, w: (fn(x, w, s, p, op, dn), jax.grad(loss, (0, 1))(x, w),
                                    jax.grad(second)(x, w)))
    hlo = jax.jit(jax.grad(loss, (0, 1))).lower(x, w).as_text()
    dilated = sum(any(v != '1' for v in re.search(r'lhs_dilate = \[([\d, ]+)\]', line)[1]
                      .split(', ')) for line in hlo.splitlines() if 'lhs_dilate' in line)
    return program(x, w), dilated
  (ref, dilated_ref), (got, dilated) = outputs(_plain_transpose), outputs(conv_transpose_adjoint)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(
      np.asarray(a)).max()), ref, got)
  assert (dilated_ref, dilated) == ((2, 1) if max(s) > 1 else (0, 0))


def test_space_depth_roundtrip_and_layout():
  x = jnp.arange(2 * 4 * 6 * 3, dtype=jnp.float32).reshape(2, 4, 6, 3)
  y = space_to_depth(x)
  assert y.shape == (2, 2, 3, 12)
  np.testing.assert_array_equal(y[0, 1, 2].reshape(2, 2, 3), x[0, 2:4, 4:6])
  np.testing.assert_array_equal(depth_to_space(y), x)
  z = space_to_depth(x[:, :3], 3)
  assert z.shape == (2, 1, 2, 27)
  np.testing.assert_array_equal(z[1, 0, 1].reshape(3, 3, 3), x[1, 0:3, 3:6])
  np.testing.assert_array_equal(depth_to_space(z, 3), x[:, :3])


CASES_3D = [((8, 12, 10), (3, 3, 3), (2, 2, 2), (1, 1, 1), (1, 1, 1)),    # MemAE-3D layers
            ((7, 9, 8), (3, 3, 3), (1, 2, 2), (1, 1, 1), (0, 1, 1)),
            ((5, 6, 6), (3, 2, 3), (3, 1, 2), (0, 1, 1), (2, 0, 1)),
            ((4, 5, 5), (2, 3, 3), (3, 1, 1), (0, 1, 1), (1, 0, 0))]     # a phase with no tap


@pytest.mark.parametrize('backend', ['cpu', 'gpu', 'tpu'])
@pytest.mark.parametrize('size,k,s,p,op', CASES_3D)
def test_3d_layers_match_torch(size, k, s, p, op, backend, monkeypatch):
  """Conv3D / ConvTranspose3D against torch's conv3d / conv_transpose3d, outputs and input +
  kernel gradients: on CPU the 2D convs over stacked temporal taps / phases; with the
  backend read as 'gpu' the native 3D forms with the adjoint transposed-conv gradients, as
  'tpu' with autodiff's (computed here on CPU)."""
  from vadjax.nn.conv_forms import takes_adjoint
  from vadjax.nn.layers import conv3d, conv_transpose3d, folds_3d
  monkeypatch.setattr(jax, 'default_backend', lambda: backend)
  assert all(folds_3d(i) == (backend == 'cpu') for i in ('auto', 'xla', 'adjoint'))
  assert takes_adjoint('auto') == (backend == 'gpu')
  assert not takes_adjoint('xla') and takes_adjoint('adjoint')
  assert folds_3d('s2d') and folds_3d('gemm')
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, *size, 3)).astype(np.float32)
  g = None
  for fn, tfn, wperm in ((conv3d, torch.nn.functional.conv3d, (4, 3, 0, 1, 2)),
                         (conv_transpose3d, torch.nn.functional.conv_transpose3d,
                          (3, 4, 0, 1, 2))):
    w = rng.normal(size=(*k, 3, 5)).astype(np.float32)
    args = (s, p) if fn is conv3d else (s, p, op)
    y = jax.jit(lambda a, b: fn(a, b, *args))(x, w)      # compiled, not op by op
    g = rng.normal(size=y.shape).astype(np.float32)
    gx, gw = jax.jit(lambda a, b, g: jax.vjp(lambda a, b: fn(a, b, *args), a, b)[1](g))(x, w, g)
    xt = torch.tensor(x).permute(0, 4, 1, 2, 3).requires_grad_(True)
    wt = torch.tensor(w.transpose(wperm)).requires_grad_(True)
    kw = dict(stride=s, padding=p) if fn is conv3d else dict(stride=s, padding=p,
                                                             output_padding=op)
    yt = tfn(xt, wt, **kw)
    yt.backward(torch.tensor(g).permute(0, 4, 1, 2, 3))
    np.testing.assert_allclose(np.asarray(y), yt.detach().permute(0, 2, 3, 4, 1).numpy(),
                               atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(gx), xt.grad.permute(0, 2, 3, 4, 1).numpy(),
                               atol=1e-4, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(gw), wt.grad.permute(
        *np.argsort(wperm)).numpy(), atol=2e-4, rtol=1e-5)


@pytest.mark.parametrize('b,size,k,s,pads,chunk_bytes', [
    (6, 20, 3, 2, ((1, 1), (1, 1)), 8 << 20), (5, 17, 4, 2, ((0, 1), (1, 0)), 4096),
    (3, 18, 3, 1, ((1, 1), (1, 1)), 20000), (4, 16, 2, 1, ((1, 1), (1, 1)), 1)])
def test_im2col_kernel_gradient_matches_torch(b, size, k, s, pads, chunk_bytes, monkeypatch):
  """The chunked im2col kernel gradient against torch's conv2d weight gradient: strides 1
  and 2, asymmetric padding, odd sizes, and chunk sizes that do not divide the batch."""
  from vadjax.nn import conv_forms
  monkeypatch.setattr(kernel_grads, 'IM2COL_BYTES', chunk_bytes)
  rng = np.random.default_rng(k)
  x = rng.normal(size=(b, size, size + 1, 3)).astype(np.float32)
  w = rng.normal(size=(k, k, 3, 5)).astype(np.float32)
  y = conv_forms._conv(jnp.asarray(x), jnp.asarray(w), pads, (s, s))
  g = rng.normal(size=y.shape).astype(np.float32)
  gw = kernel_grads.kernel_grad_im2col(jnp.asarray(x), jnp.asarray(g), w.shape, pads, (s, s))
  xt = torch.nn.functional.pad(torch.tensor(x).permute(0, 3, 1, 2),
                               (pads[1][0], pads[1][1], pads[0][0], pads[0][1]))
  wt = torch.tensor(w).permute(3, 2, 0, 1).requires_grad_()
  yt = torch.nn.functional.conv2d(xt, wt, stride=s)
  np.testing.assert_allclose(yt.detach().permute(0, 2, 3, 1).numpy(), y, rtol=1e-4, atol=1e-4)
  yt.backward(torch.tensor(g).permute(0, 3, 1, 2))
  np.testing.assert_allclose(gw, wt.grad.permute(2, 3, 1, 0).numpy(), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize('b,size,k,o,pads', [
    (3, 17, 5, 1, ((2, 2), (2, 2))),      # SSA-CAE's 5×5 to one channel, 'same'
    (5, 16, 3, 3, ((1, 1), (0, 2))),      # asymmetric padding; a batch of 5 (chunks of 1)
    (2, 18, 3, 2, ((0, 0), (0, 0)))])     # 'valid': the output map is smaller than x
def test_shifted_kernel_gradient_matches_torch(b, size, k, o, pads):
  """The kernel gradient from shifted cotangents (stride 1, fewer outputs than inputs)
  against torch's conv2d weight gradient."""
  rng = np.random.default_rng(k + o)
  x = rng.normal(size=(b, size, size + 1, 16)).astype(np.float32)
  w = rng.normal(size=(k, k, 16, o)).astype(np.float32)
  xt = torch.nn.functional.pad(torch.tensor(x).permute(0, 3, 1, 2),
                               (pads[1][0], pads[1][1], pads[0][0], pads[0][1]))
  wt = torch.tensor(w).permute(3, 2, 0, 1).requires_grad_()
  yt = torch.nn.functional.conv2d(xt, wt)
  g = rng.normal(size=yt.shape).astype(np.float32)
  yt.backward(torch.tensor(g))
  gw = kernel_grads.kernel_grad_shifted(jnp.asarray(x), jnp.asarray(g).transpose(0, 2, 3, 1),
                                        w.shape, pads)
  np.testing.assert_allclose(gw, wt.grad.permute(2, 3, 1, 0).numpy(), rtol=1e-4, atol=1e-4)


def test_stride_one_convs_to_few_channels_take_the_shifted_kernel_gradient():
  """On CPU, 'auto' gives a stride-1 conv to ≤ 8 channels from ≥ 16 on maps from 16 the
  tap-wise form, whose kernel gradient is the shifted one; its gradients equal the plain
  form's (`jax.grad`)."""
  assert resolve_impl('auto', 1, False, features=1, kernel=5, out_size=128,
                      in_channels=64) == 'tapwise'
  for features, out_size, in_channels in ((16, 128, 64), (1, 8, 64), (1, 128, 8)):
    assert resolve_impl('auto', 1, False, features=features, kernel=3, out_size=out_size,
                        in_channels=in_channels) == 'xla'
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 20, 20, 16)), jnp.float32)
  def loss(impl):
    return lambda v, x: jnp.sum(jnp.sin(Conv(2, 5, 1, 2, impl=impl).apply(v, x)))
  v = jax.tree.map(lambda a: a + 0.1, Conv(2, 5, 1, 2).init(jax.random.PRNGKey(0), x))
  assert 'f32[50,16]' in str(jax.make_jaxpr(jax.grad(loss('auto')))(v, x))   # (k²·O, C) sums
  jax.tree.map(lambda a, c: np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-4),
               jax.grad(loss('xla'), argnums=(0, 1))(v, x),
               jax.grad(loss('auto'), argnums=(0, 1))(v, x))


def test_large_maps_take_the_im2col_kernel_gradient():
  """Maps from 16×16 on go through the im2col kernel gradient in every fast form; the
  gradients equal the plain form's."""
  x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 34, 34, 4)), jnp.float32)
  for kind, impl in (('conv', 'subpixel'), ('transpose', 's2d'), ('conv', 'tapwise')):
    def loss(impl):
      return lambda v, x: jnp.sum(jnp.sin(_layer(kind, impl, 3, 1, 1).apply(v, x)))
    v = jax.tree.map(lambda a: a + 0.1, _layer(kind, 'xla', 3, 1, 1).init(
        jax.random.PRNGKey(0), x))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4),
                 jax.grad(loss('xla'), argnums=(0, 1))(v, x),
                 jax.grad(loss(impl), argnums=(0, 1))(v, x))


def test_auto_takes_gemm_for_few_channels():
  """On CPU: transposed convs to < 8 channels are one matmul (`gemm`); convs never are, and
  strided convs from < 8 channels are plain."""
  assert resolve_impl('auto', 2, True, features=1) == 'gemm'
  assert resolve_impl('auto', 1, True, features=1) == 'gemm'
  assert resolve_impl('auto', 2, True, features=64) == 's2d'
  assert resolve_impl('auto', 2, False, features=64, out_size=64) == 'subpixel'
  assert resolve_impl('auto', 2, False, features=64, out_size=64, in_channels=1) == 'xla'


def test_compiling_for_sets_the_platform_the_forms_are_chosen_for():
  """`parallel.compiling_for` (ahead-of-time builds for another device) nests and ends."""
  from vadjax import parallel
  assert parallel.backend() == 'cpu'
  with parallel.compiling_for('gpu'):
    assert resolve_impl('auto', 1, True, features=8) == 'adjoint'
    with parallel.compiling_for('tpu'):
      assert resolve_impl('auto', 2, True, features=8) == 'xla'
    assert parallel.backend() == 'gpu'
  assert resolve_impl('auto', 2, True, features=8) == 's2d'


@pytest.mark.parametrize('backend', ['gpu', 'tpu'])
def test_cpu_only_forms_are_never_chosen_on_accelerators(monkeypatch, backend):
  """'auto' picks the CPU forms (s2d, sub-pixel, gemm, tap-wise; MAML's unrolled tasks)
  only on CPU: on GPU and TPU every strided and transposed layer is the plain XLA conv, and
  MAML vmaps its tasks."""
  from vadjax.methods import maml
  assert maml.mapping('auto') == 'loop'                 # this machine: CPU
  monkeypatch.setattr(jax, 'default_backend', lambda: backend)
  for stride in (1, 2, 3):
    for transposed in (False, True):
      # GPU: transposed convs differentiate as their adjoint (XLA:GPU's rewriter)
      want = 'adjoint' if backend == 'gpu' and transposed else 'xla'
      for features in (1, 8, 64):
        for out_size in (2, 16, 64):
          for in_channels in (1, 16):
            assert resolve_impl('auto', stride, transposed, features=features, kernel=5,
                                out_size=out_size, in_channels=in_channels) == want
  assert maml.mapping('auto') == 'vmap' and maml.mapping('loop') == 'loop'
