"""Exports a trained run for use without vadjax (`experiments/export.py`).

  stablehlo  `jax.export` with a symbolic batch dimension, for CPU, CUDA and TPU: the
             serialised graph (`model.jaxexport`), its StableHLO text (`model.mlir`, for
             other StableHLO runtimes) and the parameters beside it (`params.npz`)
  onnx       jax2onnx (the optional `onnx` extra, requirements-onnx.txt), run with
             onnxruntime; parameters are in the graph

Both take float32 inputs in [0, 1] prepared as the training data was (frames for image and
patch models, whose patches are cut inside the graph; clips plus the scored frame's offset
for clip models) and return the method's raw scores and pixel maps. The normaliser and
every persisted threshold go to `meta.json` beside the graph, never into it: users choose
the threshold at use time. `exported.py` (copied beside the model) loads either with JAX or
onnxruntime alone. The graph uses the plain convolution forms (the CPU training forms are
custom-gradient rewrites that only help training on XLA:CPU), and an export is checked
against the run's own scores before it is kept.
"""

import contextlib
import datetime
import io
import json
import logging
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np

from vadjax.methods import feature_cache
from vadjax.registry import UserError
from vadjax.serving.predict import (clip_anchor, frame_scorer, frontend, input_kind,
                                     input_shape, is_feature_run, patch_corners,
                                     scoring_variables)

FORMATS = ('stablehlo', 'onnx')
PLATFORMS = ('cpu', 'cuda', 'tpu')
STABLEHLO_FORMS = {'conv_impl': 'xla'}
# jax2onnx 0.12.5 drops the input dilation of a plain transposed convolution (its output
# comes out too small), so ONNX takes the sub-pixel forms (exact rewrites into stride-1
# convolutions); and it converts only scans that are not unrolled
ONNX_FORMS = {'conv_impl': 's2d', 'scan_impl': 'autodiff', 'unroll': 1}
TOLERANCE = {'stablehlo': 1e-5, 'onnx': 1e-4}   # max |exported − in-process| / max(1, scale)


def reference_scores(run, images, offsets=None) -> dict:
  """The run's own in-process scores (its training conv forms, the evaluation path) of
  export inputs."""
  x = np.asarray(images, np.float32)
  if is_feature_run(run):      # the evaluation's two stages: cached features, then clips
    f = frontend(run)
    fn = feature_cache.extractor(f['module'], f['backbone'], f['pool'], f['side'])
    feats = (np.asarray(fn(x.reshape(-1, *x.shape[2:]))) - f['mean']) / f['std']
    return run.score(feats.reshape(*x.shape[:2], 1, 1, -1).astype(np.float32), offsets)
  if input_kind(run.config, run.image_shape) == 'patches':
    s = run.config.data.patches.size
    x = np.stack([x[:, y:y + s, c:c + s] for y, c in patch_corners(run)], axis=1)
  return run.score(x, offsets)


def _example(run, n: int = 3):
  """Deterministic example inputs for the export check: smooth random images."""
  rng = np.random.default_rng(0)
  shape = input_shape(run)
  x = rng.uniform(0, 1, (n, *shape)).astype(np.float32)
  offsets = (np.arange(n, dtype=np.int32) % shape[0]
             if input_kind(run.config, run.image_shape) == 'clip' else None)
  return x, offsets


def _meta(run, fmt: str, outputs: list[str]) -> dict:
  kind = input_kind(run.config, run.image_shape)
  return {'format': fmt, 'run': run.name, 'workdir': os.path.dirname(os.path.dirname(run.run_dir)),
          'model': run.config.model, 'method': run.config.method,
          'input': {'kind': kind, 'shape': list(input_shape(run)), 'offsets': kind == 'clip',
                    'anchor': clip_anchor(run) if kind == 'clip' else None,
                    'range': [0.0, 1.0], 'dtype': 'float32',
                    'channels': 'grey' if input_shape(run)[-1] == 1 else 'rgb'},
          'outputs': outputs, 'normalizer': run.meta['normalizer'],
          'thresholds': run.thresholds, 'jax': jax.__version__,
          'created': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}


def _stablehlo(run, folder: str, platforms) -> list[str]:
  fn, variables = frame_scorer(run, STABLEHLO_FORMS), scoring_variables(run)
  leaves, tree = jax.tree.flatten(variables)
  clip = input_kind(run.config, run.image_shape) == 'clip'

  def graph(params, images, *offsets):
    return fn(jax.tree.unflatten(tree, params), images, *offsets)

  b, = jax.export.symbolic_shape('b')
  specs = [[jax.ShapeDtypeStruct(np.shape(v), v.dtype) for v in leaves],
           jax.ShapeDtypeStruct((b, *input_shape(run)), jnp.float32)]
  if clip:
    specs.append(jax.ShapeDtypeStruct((b,), jnp.int32))
  exported = jax.export.export(jax.jit(graph), platforms=tuple(platforms))(*specs)
  with open(os.path.join(folder, 'model.jaxexport'), 'wb') as f:
    f.write(exported.serialize())
  with open(os.path.join(folder, 'model.mlir'), 'w') as f:
    f.write(exported.mlir_module())
  np.savez(os.path.join(folder, 'params.npz'),
           **{f'leaf_{i:05d}': np.asarray(v) for i, v in enumerate(leaves)})
  return sorted(exported.out_tree.unflatten(range(exported.out_tree.num_leaves)))


def _onnx(run, folder: str) -> list[str]:
  for name in ('jax2onnx', 'onnx_ir'):        # their notes on plugins and value types
    logging.getLogger(name).setLevel(logging.ERROR)
  try:
    from jax2onnx import to_onnx
  except ImportError:
    raise UserError('ONNX export needs the onnx extra: pip install -r requirements-onnx.txt'
                    ) from None
  fn, variables = frame_scorer(run, ONNX_FORMS), scoring_variables(run)
  x, offsets = _example(run, 1)
  names = sorted(jax.eval_shape(lambda *a: fn(variables, *a), x,
                                *([] if offsets is None else [offsets])))
  shape = input_shape(run)
  b, = jax.export.symbolic_shape('B')      # one scope: images and offsets share B
  specs = [jax.ShapeDtypeStruct((b, *shape), jnp.float32)]
  if offsets is not None:
    specs.append(jax.ShapeDtypeStruct((b,), jnp.int32))
  # the parameters are closed over: ONNX holds them as initializers. jax2onnx prints
  # debug lines to stdout; they are dropped
  try:
    with contextlib.redirect_stdout(io.StringIO()):
      model = to_onnx(lambda *a: tuple(fn(variables, *a)[k] for k in names), specs,
                      model_name=run.config.model, output_names=names,
                      input_names=['images', 'offsets'][:len(specs)])
  except (TypeError, ValueError, NotImplementedError) as e:   # what the converter lacks
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise UserError(f'jax2onnx cannot convert {run.config.model} ({first[:200]}); export it '
                    f'with --format=stablehlo') from None
  with open(os.path.join(folder, 'model.onnx'), 'wb') as f:
    f.write(model.SerializeToString())
  return names


def _check(run, folder: str, fmt: str) -> float:
  """The largest |exported − in-process| output on example inputs (loaded as a user
  would, through exported.py), relative to the outputs' scale where it exceeds 1 (float32
  rounding grows with it); an export over the tolerance is an error."""
  from vadjax.serving import exported as exported_lib
  x, offsets = _example(run)
  got = exported_lib.load(folder).raw(x, offsets)
  want = reference_scores(run, x, offsets)
  diff = max(float(np.max(np.abs(got[k] - want[k])) / max(1.0, np.max(np.abs(want[k]))))
             for k in got if k in want)
  if not diff <= TOLERANCE[fmt]:
    raise UserError(f'the {fmt} export of {run.name} scores differ from the run by {diff:.3g}'
                    f' (tolerance {TOLERANCE[fmt]}); nothing was written')
  return diff


def export(run, fmt: str, out: str, platforms=PLATFORMS) -> dict:
  """Exports `run` to the folder `out` (replacing an earlier export there, never other
  files); returns meta.json's content."""
  if fmt not in FORMATS:
    raise UserError(f'unknown export format {fmt!r}; use one of {", ".join(FORMATS)}')
  if os.path.exists(out) and (not os.path.isdir(out) or (
      os.listdir(out) and not os.path.exists(os.path.join(out, 'meta.json')))):
    raise UserError(f'{out!r} exists and is not an earlier export; choose another --out')
  tmp = f'{out.rstrip(os.sep)}.partial-{os.getpid()}'
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  try:
    names = _stablehlo(run, tmp, platforms) if fmt == 'stablehlo' else _onnx(run, tmp)
    meta = _meta(run, fmt, names)
    with open(os.path.join(tmp, 'meta.json'), 'w') as f:
      json.dump(meta, f, indent=1)
    shutil.copy(os.path.join(os.path.dirname(__file__), 'exported.py'), tmp)
    meta['check'] = {'max_diff': _check(run, tmp, fmt), 'tolerance': TOLERANCE[fmt]}
    with open(os.path.join(tmp, 'meta.json'), 'w') as f:
      json.dump(meta, f, indent=1)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return meta
