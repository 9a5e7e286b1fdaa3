"""Orbax checkpoints of one run: the train state (params, batch stats, optimizer state,
step, rng) plus a JSON record (epoch, data-iterator position, LR-plateau and early-stopping
state, history, fitted score normaliser and thresholds, and the experiment fingerprint).

A checkpoint that cannot be read (a write cut short by a crash, a damaged disk) is skipped
with a warning in favour of the one before it; when none can be read the error names the
directory.
"""

import os

import jax
import orbax.checkpoint as ocp
from absl import logging

from vadjax.registry import UserError


class Checkpointer:

  def __init__(self, directory: str, max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                             enable_async_checkpointing=True))

  def latest_step(self):
    return self.manager.latest_step()

  def save(self, step: int, state, meta: dict) -> None:
    if step in self.manager.all_steps():   # the final save of a run stopped at its last step
      self.manager.wait_until_finished()
      self.manager.delete(step)
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)

  def restore(self, state_template, fingerprint: dict):
    """Restores the newest readable checkpoint into the structure/shardings of
    `state_template` (a state, or a function of the checkpoint's JSON record that makes
    one); returns (state, meta)."""
    steps = sorted(self.manager.all_steps(), reverse=True)
    for i, step in enumerate(steps):
      try:
        meta = self.manager.restore(step, args=ocp.args.Composite(
            meta=ocp.args.JsonRestore()))['meta']
        self._check(meta, fingerprint)
        template = state_template(meta) if callable(state_template) else state_template
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        state = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract)))['state']
        return state, meta
      except UserError:
        raise
      except Exception as e:  # noqa: BLE001  (Orbax and TensorStore raise many kinds)
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        if i + 1 == len(steps):
          raise UserError(f'no readable checkpoint in {self.directory} (step {step}: '
                          f'{reason}); use another --workdir or remove that one') from None
        logging.warning('checkpoint %s/%d cannot be read (%s); using step %d', self.directory,
                        step, reason, steps[i + 1])
    raise UserError(f'no checkpoint in {self.directory}')

  def _check(self, meta, fingerprint: dict) -> None:
    if not isinstance(meta, dict) or meta.get('fingerprint') != fingerprint:
      got = meta.get('fingerprint') if isinstance(meta, dict) else meta
      raise UserError(f'{self.directory} holds a checkpoint of another experiment ({got}); '
                      f'use another --workdir or remove that one')

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()
