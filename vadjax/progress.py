"""A one-line progress bar on stderr for every long loop a user waits on (preparing a
dataset, scoring a video, explaining a split)."""

import sys
import time


class Progress:
  """`update(n)` after each piece of work; redrawn at most 5 times a second. `total` None
  (unknown, e.g. a video whose header states no frame count) shows the count and rate."""

  def __init__(self, name: str, total: int | None, enabled: bool = True,
               unit: str = 'frames'):
    self.name, self.total, self.done, self.enabled, self.unit = name, total, 0, enabled, unit
    self.t0 = self.shown = time.perf_counter()

  def update(self, n: int) -> None:
    self.done += n
    now = time.perf_counter()
    finished = self.total is not None and self.done >= self.total
    if self.enabled and (now - self.shown > 0.2 or finished):
      self.shown = now
      self._draw(now, end='\n' if finished else '')

  def close(self) -> None:
    """Ends the line (for work whose total was unknown or not reached)."""
    if self.enabled and (self.total is None or self.done < self.total):
      self._draw(time.perf_counter(), end='\n')

  def _draw(self, now: float, end: str) -> None:
    rate = self.done / max(now - self.t0, 1e-9)
    if self.total:
      width = 24
      filled = min(width, int(width * self.done / self.total))
      bar = f'[{"#" * filled}{"." * (width - filled)}] {self.done}/{self.total}'
    else:
      bar = f'{self.done}'
    sys.stderr.write(f'\r{self.name}: {bar} {self.unit}, {rate:.1f} {self.unit}/s{end}')
    sys.stderr.flush()
