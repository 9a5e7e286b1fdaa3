"""Training steps compiled ahead of time for an H200 on a machine without one
(`experiments.gpu_compile`): the device described to XLA:GPU's compiler, a mesh of it, and
the optimised HLO of a benchmark model's train step built with the GPU's conv forms."""

import jax
import jax.numpy as jnp

from vadjax import parallel
from vadjax.bench import records
from vadjax.registry import UserError

# What XLA:GPU's compiler reads of the device (GpuTargetConfig): an H200's (sm_90, 132 SMs,
# 141 GB HBM3e at 4.8 TB/s), cuDNN 9 and CUDA 13 as on the device image
H200 = '''gpu_device_info {
  threads_per_block_limit: 1024 threads_per_warp: 32 shared_memory_per_block: 49152
  shared_memory_per_core: 233472 threads_per_core_limit: 2048 core_count: 132
  fpus_per_core: 128 block_dim_limit_x: 2147483647 block_dim_limit_y: 65535
  block_dim_limit_z: 65535 memory_bandwidth: 4800000000000 l2_cache_size: 52428800
  clock_rate_ghz: 1.98 device_memory_size: 150323855360 shared_memory_per_block_optin: 232448
  cuda_compute_capability { major: 9 } registers_per_core_limit: 65536
  registers_per_block_limit: 65536
}
platform_name: "CUDA"
dnn_version_info { major: 9 minor: 10 }
runtime_version { major: 13 minor: 0 }
device_description_str: "NVIDIA H200"
'''


def h200_mesh():
  """A one-device mesh of an H200 that is not there (jax.experimental.topologies)."""
  from jax.experimental import topologies
  try:
    topology = topologies.get_topology_desc(platform='cuda', target_config=H200,
                                            topology='1x1x1')
  except Exception as e:   # no CUDA plugin: jaxlib alone cannot compile for a GPU
    raise UserError(f'cannot compile for a GPU here ({type(e).__name__}: {e}); '
                         'run `bash tests/device/gpu_compile.sh`, which installs JAX\'s '
                         'CUDA plugin in its own virtual environment') from None
  return topologies.make_mesh(topology, (1,), (parallel.DATA_AXIS,))


def compiled_train_step(name, shape, batch, form, mesh) -> str:
  """The optimised HLO of the benchmark's train step of `name`, built for a GPU."""
  with parallel.compiling_for('gpu'):
    steps = records.jax_steps(name, shape, 'float32', form, mesh)
    state = jax.eval_shape(steps.init, jax.random.PRNGKey(0))
    images = jax.ShapeDtypeStruct((batch, *shape), jnp.float32,
                                  sharding=parallel.data_sharding(mesh))
    return steps.train.lower(state, {'image': images}).compile().as_text()
