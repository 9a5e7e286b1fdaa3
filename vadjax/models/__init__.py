"""Whole networks, registered by name. `MODELS.get(name)(**kwargs)` builds a Linen module.

Every model's `__call__(x, train)` takes NHWC images in [0, 1] and returns a dict with at
least `recon` (same shape as x, float32) and `latent`.
"""

from vadjax.registry import Registry

MODELS = Registry('model')

from vadjax.models import conv_ae, conv_rnn_ae, ks_cae, memae  # noqa: E402,F401  (registers the models)
