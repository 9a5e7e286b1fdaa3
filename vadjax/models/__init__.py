"""Whole networks, registered by name. `MODELS.get(name)(**kwargs)` builds a Linen module.

Every model's `__call__(x, train)` takes NHWC images in [0, 1] and returns a dict with
`latent` and, for autoencoders, `recon` (same shape as x, float32); ADACL's regressor
returns a `prediction` (B,) instead.
"""

from vadjax.registry import Registry

MODELS = Registry('model')
# frozen feature extractors (seed 004): `BACKBONES.get(name)(channels=, dtype=)` builds one;
# `__call__(x)` returns {'cls' (ViTs), 'tokens' (B, N, D), 'latent'}
BACKBONES = Registry('backbone')

from vadjax.models import adacl, alps, conv_ae, conv_rnn_ae, feature_predictor, ks_cae, memae  # noqa: E402,F401  (registers the models)
from vadjax.models import resnet, vit  # noqa: E402,F401  (registers the backbones)
