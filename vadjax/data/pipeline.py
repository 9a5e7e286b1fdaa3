"""Grain pipelines: shuffled training batches with checkpointable position, and padded
evaluation batches. Host batches are numpy, NHWC float32 in [0, 1]."""

from typing import Iterator

import grain
import jax
import numpy as np

from vadjax.data.sources import ArraySource
from vadjax.registry import UserError

# Grain's default reads ahead up to 500 elements (here: batches) with 16 threads, which
# holds most of a split in memory; a few batches in flight keep a step fed (measured:
# docs/scale.md) and memory set by the batch, not by the footage.
READ = grain.ReadOptions(num_threads=2, prefetch_buffer_size=4)


def train_dataset(source, global_batch: int, seed: int, num_epochs: int) -> grain.MapDataset:
  """Epoch-wise reshuffled, fixed-size batches; `len()` = steps over all epochs.

  Each process keeps its slice of every global batch (multi-host input). The iterator made
  from `.to_iter_dataset()` has `get_state()`/`set_state()` so a resumed run continues at the
  same batch.
  """
  steps_per_epoch = len(source) // global_batch
  if steps_per_epoch == 0:
    raise UserError(f'the training split has {len(source)} samples, fewer than one batch '
                    f'of {global_batch}; lower batch_size')
  ds = (grain.MapDataset.source(source).seed(seed).shuffle()
        .batch(global_batch, drop_remainder=True).repeat(num_epochs))
  n_proc, pid = jax.process_count(), jax.process_index()
  if n_proc > 1:
    local = global_batch // n_proc
    ds = ds.map(lambda b: {k: v[pid * local:(pid + 1) * local] for k, v in b.items()})
  return ds


def train_iterator(ds: grain.MapDataset, workers: int):
  """A checkpointable iterator over `ds`; `workers` > 0 reads and assembles batches in that
  many Grain worker processes (real datasets decode frames on the host: 2 workers read
  1.5–2.5× the clips per second of one process on the 2-core CPU, BUILD_NOTES.md)."""
  iter_ds = ds.to_iter_dataset(READ)
  if workers > 0:
    from absl import flags
    if not flags.FLAGS.is_parsed():   # Grain's workers read absl flags; library callers
      flags.FLAGS.mark_as_parsed()    # (notebooks, tests) have not parsed any
    iter_ds = iter_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
  return iter(iter_ds)


def eval_batches(source, global_batch: int, fields=('image',), whole=()
                 ) -> Iterator[tuple[dict[str, np.ndarray], int]]:
  """Yields (process-local batch padded to the global batch size, number of real samples).

  Padding repeats the last record; the batch's `weight` field (1 real, 0 padding) lets
  losses average over real records only. `whole` fields (pixel masks, which never go to a
  device) come with every process's batch for the real records of the global batch, so that
  each process can pair them with the replicated scores.
  """
  n_proc, pid = jax.process_count(), jax.process_index()
  local = global_batch // n_proc
  for batch in _batches(source, global_batch):
    n = len(batch[fields[0]])
    out = {}
    for k in fields:
      v = batch[k]
      if n < global_batch:
        v = np.concatenate([v, np.repeat(v[-1:], global_batch - n, axis=0)])
      out[k] = v[pid * local:(pid + 1) * local]
    weight = (np.arange(global_batch) < n).astype(np.float32)
    out['weight'] = weight[pid * local:(pid + 1) * local]
    out.update({k: batch[k] for k in whole})
    yield out, n


def _batches(source, size: int):
  """Consecutive batches of a source: arrays held in memory (a request, a chunk of a
  video) are sliced; anything else is read ahead by Grain's threads. (A Grain pipeline is
  a reference cycle that keeps its source until Python's cycle collector runs: one per
  chunk of a long video held ~50 chunks of clips, 600 MB, alive.)"""
  if isinstance(source, ArraySource):
    for i in range(0, len(source), size):
      yield {k: v[i:i + size] for k, v in source.fields.items()}
  else:
    yield from grain.MapDataset.source(source).batch(size).to_iter_dataset(READ)
