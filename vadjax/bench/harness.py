"""Timing, FLOP and memory measurement for JAX and PyTorch in the same process.

Every record times one (model, framework, mode) after warm-up: the first call (compile for
JAX and torch.compile) is reported separately, then the median and spread of the timed
repeats. FLOPs are counted from the PyTorch twin's forward pass (`forward_flops`; training = 3×
forward: forward, input and weight gradients), so they do not depend on XLA's cost
analysis (which counts a scan body once).
Memory: device peak bytes on GPU; on CPU the peak resident set size sampled during the
record, and its growth over the resident size before the record.
"""

import dataclasses
import os
import threading
import time

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def _rss_bytes() -> int:
  with open('/proc/self/statm') as f:
    return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


class PeakRSS:
  """Samples the process's resident memory every millisecond while active."""

  def __enter__(self):
    self.before = _rss_bytes()
    self.peak = self.before
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True)
    self._thread.start()
    return self

  def _run(self):
    while not self._stop.is_set():
      self.peak = max(self.peak, _rss_bytes())
      time.sleep(0.001)

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()
    self.peak = max(self.peak, _rss_bytes())


@dataclasses.dataclass
class Timing:
  first_s: float           # first call: compilation (JAX, torch.compile) + one step
  median_s: float
  p10_s: float
  p90_s: float
  repeats: int


def time_calls(fn, sync, warmup: int, repeats: int) -> Timing:
  t = time.perf_counter()
  sync(fn())
  first = time.perf_counter() - t
  for _ in range(warmup):
    sync(fn())
  ts = []
  for _ in range(repeats):
    t = time.perf_counter()
    sync(fn())
    ts.append(time.perf_counter() - t)
  ts = np.asarray(ts)
  return Timing(first, float(np.median(ts)), float(np.percentile(ts, 10)),
                float(np.percentile(ts, 90)), repeats)


def paired_ratios(a, b, repeats: int, block: int = 1) -> np.ndarray:
  """Calls a and b ((fn, sync) each) in alternating blocks of `block` calls; returns the
  `repeats` ratios of consecutive blocks' times, time(a) / time(b). On a host whose speed
  drifts (a shared VM), neighbouring blocks see nearly the same conditions, while two long
  runs timed one after the other may not (this 2-core VM: the same code read 0.76–1.09 in
  runs, BUILD_NOTES.md). Single calls (block 1) of a small step also measure what switching
  frameworks costs the next call (caches, thread pools); blocks of k amortise it."""
  def timed(fn, sync):
    t = time.perf_counter()
    for _ in range(block):
      sync(fn())
    return time.perf_counter() - t
  for fn, sync in (a, b):
    sync(fn())
  return np.asarray([timed(*a) / timed(*b) for _ in range(repeats)])


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
  """This machine's float32 matmul rate in JAX (an n×n by n×n product), the ceiling the
  benchmark's GFLOP/s are read against."""
  import jax  # noqa: PLC0415  (the harness times torch alone too)
  import jax.numpy as jnp  # noqa: PLC0415
  x = jnp.asarray(np.random.default_rng(0).random((n, n), np.float32))
  f = jax.jit(lambda x: x @ x)
  t = time_calls(lambda: f(x), jax.block_until_ready, 2, repeats)
  return 2 * n ** 3 / t.median_s / 1e9


def forward_flops(twin: nn.Module, x: torch.Tensor) -> int:
  """FLOPs of one forward pass (2 per multiply-add): every matmul, conv (transposed or not)
  and batched product torch dispatches, counted by `torch.utils.flop_counter` (so attention
  and the MemAE memory read count too), plus the matmuls inside `nn.LSTM`, which runs as one
  fused op that the counter does not see."""
  lstm = [0]

  def hook(m, inputs, output):
    b_t = inputs[0].numel() // m.input_size            # (batch × time) rows
    for layer in range(m.num_layers):
      fan_in = (m.input_size if layer == 0 else m.hidden_size) + m.hidden_size
      lstm[0] += 2 * b_t * 4 * m.hidden_size * fan_in

  handles = [m.register_forward_hook(hook) for m in twin.modules() if isinstance(m, nn.LSTM)]
  twin.eval()
  with torch.no_grad(), FlopCounterMode(display=False) as counter:
    twin(x)
  for h in handles:
    h.remove()
  return counter.get_total_flops() + lstm[0]
