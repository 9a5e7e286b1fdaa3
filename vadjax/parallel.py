"""Device mesh, shardings and multi-host set-up for data-parallel training.

One mesh axis, `data`. The batch is split over it with a `NamedSharding`; the train state is
replicated. The same code runs on 1 device, N fake CPU devices and multi-host pods.
"""

import contextlib

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from vadjax.registry import UserError

DATA_AXIS = 'data'
_TARGETS: list = []      # `compiling_for`'s platforms, innermost last


def backend() -> str:
  """The platform the programs being built are for: JAX's default backend, or the
  innermost `compiling_for`. The layers, BatchNorm and MAML choose their forms by it."""
  return _TARGETS[-1] if _TARGETS else jax.default_backend()


@contextlib.contextmanager
def compiling_for(platform: str):
  """Builds programs for `platform` ('cpu', 'gpu', 'tpu') whatever this machine has: for
  compiling ahead of time for another device (experiments/gpu_compile.py)."""
  _TARGETS.append(platform)
  try:
    yield
  finally:
    _TARGETS.pop()


def maybe_initialize_distributed(config) -> None:
  """Calls `jax.distributed.initialize()` once when `config.distributed` is set.

  `coordinator_address`, `num_processes` and `process_id` come from the config when given
  (loopback or hand-launched clusters) and are auto-detected otherwise (TPU pods, Slurm).
  CPU processes exchange collectives through gloo. Must run before any other JAX call.
  """
  if not config.distributed or jax.distributed.is_initialized():
    return
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(
      coordinator_address=config.coordinator_address or None,
      num_processes=config.num_processes or None,
      process_id=None if config.process_id < 0 else config.process_id)


def make_mesh(num_devices: int = 0) -> Mesh:
  """A 1-D `data` mesh over the first `num_devices` devices (0 = all, across processes)."""
  devices = jax.devices()
  n = num_devices or len(devices)
  if n > len(devices):
    raise UserError(f'num_devices={n} but only {len(devices)} devices are visible '
                    f'({jax.default_backend()}); lower --config.num_devices')
  if jax.process_count() > 1 and n != len(devices):
    raise UserError('multi-host training uses all devices; leave num_devices at 0')
  return Mesh(np.asarray(devices[:n]), (DATA_AXIS,))


def data_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def local_batch_size(global_batch: int, mesh: Mesh) -> int:
  """The per-process share of a global batch; errors when it does not divide evenly."""
  n = mesh.devices.size
  if global_batch % n:
    raise UserError(f'batch_size {global_batch} is not divisible by the {n} devices of the '
                    f'mesh; use a multiple of {n}')
  return global_batch // jax.process_count()


def shard_batch(batch: dict, mesh: Mesh) -> dict:
  """Places this process's part of a batch on the mesh as one global array per field."""
  sharding = data_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in batch.items()}
