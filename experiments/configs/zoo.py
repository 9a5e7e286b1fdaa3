"""The image model zoo's configs (seeds 000 and 001), shared by the per-model config files and
by the comparison studies of `experiments/sweep.py`.

Seed 001 models (BCAE1 and its variants) train as seed 001 §4.4.1 (base.py defaults);
BCAE2 / KS-CAE need 128×128 inputs (their layout, `vadjax.models.ks_cae`). Seed 000 models
follow experiments/configs/seed000.py (class "1", lr 2e-4, buffered threshold).
"""

import dataclasses

import ml_collections

from experiments.configs import base, seed000
from experiments.configs.base import apply_variant, base_config, on_dataset
from vadjax.models import MODELS as REGISTRY

_NOT_KWARGS = ('channels', 'dtype', 'conv_impl', 'parent', 'name')

# name → (model, config overrides); the model's own defaults are the papers'
MODELS = {
    'bcae1': ('bcae1', {}),
    'se_cae': ('se_cae', {}),
    'aa_cae': ('aa_cae', {}),
    'sa_cae': ('sa_cae', {}),
    'ssa_cae': ('ssa_cae', {}),
    'ssim_cae': ('bcae1', {'method': 'ssim'}),             # seed 001 §3.4, η = 0.5
    'svdd_cae': ('bcae1', {'svdd': {'epochs': 10}}),            # seed 001 §3.6, lr 5e-7
    'bcae2': ('bcae2', {'image_size': 128}),
    'ks_cae': ('ks_cae', {'image_size': 128}),
    'bcae2_ssim': ('bcae2', {'image_size': 128, 'method': 'ssim'}),
    'ks_cae_ssim': ('ks_cae', {'image_size': 128, 'method': 'ssim'}),
    'deep_ae': ('deep_ae', {}),
    'cbam_ae': ('cbam_ae', {}),
    'ltpa_ae': ('ltpa_ae', {}),
    'ltpa_ae_dp': ('ltpa_ae', {'model_kwargs': {'compatibility': 'dp'}}),
}
SEED000_MODELS = ('deep_ae', 'cbam_ae', 'ltpa_ae', 'ltpa_ae_dp')

# the comparison sweeps: (label, zoo name) rows, the first one the baseline
SUITES = {
    'seed001': [('BCAE1', 'bcae1'), ('SE-CAE', 'se_cae'), ('AA-CAE', 'aa_cae'),
                ('SA-CAE', 'sa_cae'), ('SSA-CAE', 'ssa_cae'), ('BCAE1 + SSIM loss', 'ssim_cae'),
                ('BCAE1 + SVDD', 'svdd_cae')],
    'ks': [('BCAE2', 'bcae2'), ('KS-CAE', 'ks_cae'), ('BCAE2 (SSIM loss)', 'bcae2_ssim'),
           ('KS-CAE (SSIM loss)', 'ks_cae_ssim')],
    'seed000': [('deep AE', 'deep_ae'), ('CBAM-AE', 'cbam_ae'), ('LTPA-AE (pc)', 'ltpa_ae'),
                ('LTPA-AE (dp)', 'ltpa_ae_dp')],
}


def quick(c):
  base.quick(c)
  if c.svdd.epochs:
    c.svdd.epochs = 1


def make(name: str, arg: str | None = None) -> ml_collections.ConfigDict:
  if name not in MODELS:
    raise ValueError(f'unknown zoo model {name!r}; known: {", ".join(MODELS)}')
  model, overrides = MODELS[name]
  c = seed000.get_config() if name in SEED000_MODELS else base_config()
  c.model = model
  # every architecture field, so that variants can set them (model_kwargs.sa_form=code)
  c.model_kwargs = ml_collections.ConfigDict({
      f.name: f.default for f in dataclasses.fields(REGISTRY.get(model))
      if f.name not in _NOT_KWARGS and f.default is not dataclasses.MISSING})
  for key, value in overrides.items():
    if isinstance(value, dict):     # a group: model_kwargs, svdd, ...
      c[key].update(value)
    else:
      c[key] = value
  return apply_variant(c, arg, quick, on_dataset=on_dataset)
