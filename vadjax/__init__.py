"""vadjax: visual anomaly detection in JAX/Flax (images and video).

The library holds models (`vadjax.models`), methods (`vadjax.methods`), data sources and
pipelines (`vadjax.data`), evaluation (`vadjax.eval`) and the training loop (`vadjax.train`).
Experiments live in the top-level `experiments/` package.
"""

__version__ = '0.1.0'
