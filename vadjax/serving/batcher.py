"""Scores the records of concurrent requests together, in one thread per served run.

A request becomes a job: its frames and the records that score them (frames, or clips with
the scored frame's offset, built only when their batch is). The thread takes every waiting
job and fills one batch of up to the run's eval batch with their records, oldest first (a
long job is split across batches), and scores it at the smallest compiled batch size that
holds it (Predictor.score_records): a lone frame runs at batch 1, N concurrent frames as
one call. Under load this turns N single-frame calls into one.
"""

import collections
import concurrent.futures
import queue
import threading

import numpy as np


class Job:
  """One request's records; its future gets {'score', 'pixel'?, 'corner'?}."""

  def __init__(self, predictor, frames: np.ndarray, video: bool, keep_maps: bool):
    self.records = predictor.records(frames, video)      # validates (UserError)
    self.keep_maps, self.next, self.parts = keep_maps, 0, []
    self.future = concurrent.futures.Future()

  @property
  def left(self) -> int:
    return len(self.records) - self.next


class Batcher:
  def __init__(self, predictor):
    self.predictor = predictor
    self.queue = queue.Queue()
    threading.Thread(target=self._loop, daemon=True, name='scoring').start()

  def submit(self, frames: np.ndarray, video: bool, keep_maps: bool = False):
    """A future of the raw outputs of `frames` (one video when `video`)."""
    job = Job(self.predictor, frames, video, keep_maps)
    self.queue.put(job)
    return job.future

  def _loop(self) -> None:
    pending = collections.deque()
    while True:
      if not pending:
        pending.append(self.queue.get())
      while True:
        try:
          pending.append(self.queue.get_nowait())
        except queue.Empty:
          break
      batch, room = [], self.predictor.max_batch
      for job in pending:
        if not room:
          break
        k = min(room, job.left)
        batch.append((job, k))
        room -= k
      try:
        self._score(batch)
      except Exception as e:  # noqa: BLE001  (handed to every request of the batch)
        for job, _ in batch:
          pending.remove(job)
          job.future.set_exception(e)
        continue
      while pending and not pending[0].left:
        job = pending.popleft()
        out = {k: np.concatenate([p[k] for p in job.parts]) for k in job.parts[0]}
        job.future.set_result(out)

  def _score(self, batch) -> None:
    p = self.predictor
    xs, offsets = [], []
    for job, k in batch:
      x, o = p.take(job.records, job.next, job.next + k)
      xs.append(x)
      offsets.append(o)
    out = p.score_records(np.concatenate(xs),
                          None if offsets[0] is None else np.concatenate(offsets),
                          keep_maps=any(job.keep_maps for job, _ in batch))
    start = 0
    for job, k in batch:
      part = {name: v[start:start + k] for name, v in out.items()}
      if 'pixel' in part and not job.keep_maps:
        del part['pixel']
      job.parts.append(part)
      job.next += k
      start += k
