"""Orbax checkpoints of one run: the train state (params, batch stats, optimizer state,
step, rng) plus a JSON record (epoch, data-iterator position, LR-plateau and early-stopping
state, history, fitted score normaliser and thresholds, and the experiment fingerprint)."""

import os

import jax
import orbax.checkpoint as ocp

from vadjax.registry import UserError


class Checkpointer:

  def __init__(self, directory: str, max_to_keep: int = 2):
    self.manager = ocp.CheckpointManager(
        os.path.abspath(directory),
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                             enable_async_checkpointing=True))

  def latest_step(self):
    return self.manager.latest_step()

  def save(self, step: int, state, meta: dict) -> None:
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)

  def restore(self, state_template, fingerprint: dict):
    """Restores the latest checkpoint into the structure/shardings of `state_template`."""
    step = self.manager.latest_step()
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_template)
    meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']
    if meta.get('fingerprint') != fingerprint:
      raise UserError(f'{self.manager.directory} holds a checkpoint of '
                      f'{meta.get("fingerprint")}, not of {fingerprint}; use another --workdir '
                      f'or remove that one')
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract)))
    except (ValueError, KeyError) as e:
      raise UserError(f'checkpoint {self.manager.directory}/{step} does not match the model '
                      f'of this config ({str(e).splitlines()[0][:200]}); use another '
                      f'--workdir') from None
    return restored['state'], meta

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()
