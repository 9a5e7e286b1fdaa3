"""Runs a model exported by `python -m experiments.export` with JAX or onnxruntime alone.

This file imports neither vadjax nor Flax: `export` copies it beside the model, so a
machine with only `jax` (StableHLO) or `onnxruntime` (ONNX) installed can score with it:

  from exported import load              # (this file, in the export folder)
  model = load('EXPORT_DIR')
  out = model.score(images)              # float32 (N, *input shape) in [0, 1]
  out['score'], out['normalized'], model.decide(out['normalized'], 'gmean')

  python EXPORT_DIR/exported.py EXPORT_DIR images.npy [threshold]   # JSON to stdout

The folder holds the graph (`model.jaxexport`, StableHLO with a symbolic batch dimension,
and its parameters `params.npz`; or `model.onnx`) and `meta.json`: the input kind and shape,
the output names, the score normaliser and the run's thresholds (normalised space).
"""

import json
import os
import sys

import numpy as np


class ExportedModel:
  """An exported model with the run's normaliser and thresholds."""

  def __init__(self, folder: str):
    with open(os.path.join(folder, 'meta.json')) as f:
      self.meta = json.load(f)
    self.format = self.meta['format']
    self.thresholds = self.meta['thresholds']
    self.input_shape = tuple(self.meta['input']['shape'])
    if self.format == 'stablehlo':
      import jax
      with open(os.path.join(folder, 'model.jaxexport'), 'rb') as f:
        self._exported = jax.export.deserialize(bytearray(f.read()))
      with np.load(os.path.join(folder, 'params.npz')) as p:
        self._params = [p[f'leaf_{i:05d}'] for i in range(len(p.files))]
      self._call = jax.jit(self._exported.call)
    else:
      import onnxruntime
      options = onnxruntime.SessionOptions()
      options.log_severity_level = 3        # errors only (not its shape-merge notes)
      self._session = onnxruntime.InferenceSession(
          os.path.join(folder, 'model.onnx'), options, providers=['CPUExecutionProvider'])

  def raw(self, images, offsets=None) -> dict:
    """The model's raw outputs: 'score' (N,) and, where the method makes them, 'pixel'
    maps and other scores. Clip models take `offsets`, the scored frame of each clip
    (default: meta's input anchor, the centre frame or a feature run's last)."""
    x = np.asarray(images, np.float32)
    if x.shape[1:] != self.input_shape:
      raise ValueError(f'the model scores inputs of shape (N, '
                       f'{", ".join(map(str, self.input_shape))}), got {x.shape}')
    args = [x]
    if self.meta['input']['offsets']:
      anchor = self.meta['input'].get('anchor')
      anchor = self.input_shape[0] // 2 if anchor is None else anchor
      args.append(np.full(len(x), anchor, np.int32) if offsets is None
                  else np.asarray(offsets, np.int32))
    if self.format == 'stablehlo':
      out = self._call(self._params, *args)
      return {k: np.asarray(v) for k, v in out.items()}
    names = [i.name for i in self._session.get_inputs()]
    values = self._session.run(None, dict(zip(names, args)))
    return dict(zip(self.meta['outputs'], values))

  def normalize(self, raw) -> np.ndarray:
    low, high = self.meta['normalizer']['low'], self.meta['normalizer']['high']
    return (np.asarray(raw, np.float64) - low) / max(high - low, 1e-12)

  def score(self, images, offsets=None) -> dict:
    out = self.raw(images, offsets)
    out['normalized'] = self.normalize(out['score'])
    return out

  def decide(self, normalized, threshold='gmean') -> np.ndarray:
    """Anomalous = normalised score > the threshold (a persisted name or a number)."""
    t = self.thresholds[threshold] if threshold in self.thresholds else float(threshold)
    return np.asarray(normalized) > t


def load(folder: str) -> ExportedModel:
  return ExportedModel(folder)


if __name__ == '__main__':
  if len(sys.argv) not in (3, 4):
    sys.exit('usage: python exported.py EXPORT_DIR images.npy [threshold]')
  model = load(sys.argv[1])
  result = model.score(np.load(sys.argv[2], allow_pickle=False))
  decisions = model.decide(result['normalized'], sys.argv[3] if len(sys.argv) > 3 else 'gmean')
  print(json.dumps({'score': result['score'].tolist(),
                    'normalized': result['normalized'].tolist(),
                    'anomalous': decisions.tolist()}))
