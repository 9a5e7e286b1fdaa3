"""vadjax: visual anomaly detection in JAX/Flax (images and video).

The library holds models (`vadjax.models`), methods (`vadjax.methods`), data sources and
pipelines (`vadjax.data`), evaluation (`vadjax.eval`) and the training loop (`vadjax.train`).
Experiments live in the top-level `experiments/` package.
"""

import importlib.metadata
import os
import sys
import warnings

__version__ = '0.1.0'

# XLA:CPU hands work to the YNNPACK library by fusion type. jaxlib 0.10's default gives it
# the convolutions, which it runs 2-3× slower than XLA's own kernels on our layers (3×3 s2
# 64→64 at 64×64, batch 64: 115 vs 41 ms), and not the reductions, which XLA then runs as
# slow reduce-window loops (BatchNorm forward + backward on 64×64×64×64: 159 vs 58 ms with
# YNNPACK's). Measured in BUILD_NOTES.md (cgru_ae train step ~1.66 → ~1.3 s).
XLA_CPU_FLAGS = '--xla_cpu_experimental_ynn_fusion_type=dot,reduce'


def _set_xla_cpu_flags() -> None:
  """Adds `XLA_CPU_FLAGS` to XLA_FLAGS before JAX starts its CPU client (XLA reads the
  variable then). Skipped where the user set the flag, where VADJAX_XLA_CPU_FLAGS=0, and
  with other jaxlib versions (an unknown XLA flag aborts the process)."""
  flags = os.environ.get('XLA_FLAGS', '')
  if (os.environ.get('VADJAX_XLA_CPU_FLAGS', '1') == '0' or 'ynn_fusion_type' in flags
      or not importlib.metadata.version('jaxlib').startswith('0.10.')):
    return
  os.environ['XLA_FLAGS'] = f'{flags} {XLA_CPU_FLAGS}'.strip()
  if 'jax' in sys.modules and _jax_started():
    warnings.warn('vadjax was imported after JAX started, so its XLA CPU flags do not apply '
                  '(CPU training runs slower); import vadjax before running JAX code, or '
                  f'set XLA_FLAGS="{XLA_CPU_FLAGS}" yourself', stacklevel=3)


def _jax_started() -> bool:
  try:
    from jax._src import xla_bridge
    return xla_bridge.backends_are_initialized()
  except (ImportError, AttributeError):    # a private API: no warning if it moves
    return False


_set_xla_cpu_flags()
