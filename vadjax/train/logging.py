"""Run logs: `metrics.jsonl` and TensorBoard event files in the run directory, and a
periodic progress line with steps/s and ETA. Only process 0 writes."""

import json
import os
import time

import jax
from absl import logging


class RunLogger:

  def __init__(self, run_dir: str, name: str, total_steps: int, start_step: int):
    self.enabled = jax.process_index() == 0
    self.name, self.total, self.start = name, total_steps, start_step
    self.t0 = time.perf_counter()
    if self.enabled:
      self.jsonl = open(os.path.join(run_dir, 'metrics.jsonl'), 'a')
      # imported here: tensorboardX imports torch when torch is installed (1.3 s), which
      # every CLI start would pay, also those that never train
      from tensorboardX import SummaryWriter  # noqa: PLC0415
      self.tb = SummaryWriter(os.path.join(run_dir, 'tensorboard'))

  def write(self, step: int, values: dict) -> None:
    if not self.enabled:
      return
    self.jsonl.write(json.dumps({'step': step, **values}) + '\n')
    self.jsonl.flush()
    for k, v in values.items():
      if isinstance(v, (int, float)):
        self.tb.add_scalar(k, v, step)

  def progress(self, step: int, epoch: int, values: dict) -> None:
    done = step - self.start
    rate = done / max(time.perf_counter() - self.t0, 1e-9)
    eta = (self.total - step) / rate if rate > 0 else float('inf')
    shown = ' '.join(f'{k} {v:.4g}' for k, v in values.items() if isinstance(v, float))
    logging.info('[%s] step %d/%d epoch %d %s | %.1f steps/s ETA %.0fs', self.name, step,
                 self.total, epoch, shown, rate, eta)

  def close(self) -> None:
    if self.enabled:
      self.jsonl.close()
      self.tb.close()
