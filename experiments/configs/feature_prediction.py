"""Seed 004: frozen backbone features of every frame and a predictor of the next one, on the
embedded `walkway` scene (grey 128×128 frames; docs/features.md).

Defaults: the CPU ViT (`vit_mini`, randomly initialised unless `features.weights` names a
checkpoint) on frames resized to 64×64 (its DINO crops' side), class-token features, an LSTM over 8 previous vectors (clips of 9, the last
one scored), L2 distance on standardised vectors, Adam 1e-3, 5 seeds (the seed reports
mean ± std over repetitions).

Presets: `transformer` (the causal Transformer predictor, the seed's future work),
`resnet50` (torchvision's ResNet-50 pooled features, the seed's baseline), `vit_s16` (the
DINO release's ViT-S/16: give `features.weights=dino_deitsmall16_pretrain.pth`), `quick`.

Launch:
  python -m experiments.dino --config=experiments/configs/dino.py --workdir=runs/dino
  python -m experiments.main --config=experiments/configs/feature_prediction.py:\
features.weights=runs/dino/backbone.npz --workdir=runs/fp_dino
  python -m experiments.main --config=experiments/configs/feature_prediction.py:resnet50 \
      --workdir=runs/fp_resnet
  python -m experiments.main --config=experiments/configs/feature_prediction.py:vit_s16,\
dataset=ucsd_ped2,data.manual_dir=~/data/ucsd,features.weights=dino_deitsmall16_pretrain.pth \
      --workdir=runs/ped2_dino
A run takes ~1 min on a 2-core CPU after the backbone pass (cached in <workdir>/cache).
"""

import ml_collections

from experiments.configs import base
from experiments.configs.base import apply_variant, base_config


def quick(c):
  base.quick(c)
  c.image_size, c.batch_size, c.eval_batch_size = 32, 8, 32
  c.model_kwargs.hidden = 16
  c.features.update(batch_size=16, input_size=0)
  c.data.video.update(clip_length=4, length=24, num_train=2, num_val=1, num_test=2)


def resnet50(c):
  c.features.update(backbone='resnet50', pool='mean', input_size=0)


def vit_s16(c):
  c.features.update(backbone='vit_s16', pool='cls', input_size=224)


PRESETS = {'transformer': lambda c: c.model_kwargs.update(predictor='transformer', layers=2,
                                                          hidden=128),
           'resnet50': resnet50, 'vit_s16': vit_s16}


def get_config(arg=None):
  c = base_config()
  c.model, c.method = 'feature_predictor', 'feature_prediction'
  c.dataset, c.categories, c.image_size = 'walkway', 'gray', 128
  c.model_kwargs = ml_collections.ConfigDict(dict(predictor='lstm', hidden=256, layers=1,
                                                  heads=4, max_length=64))
  c.data.video.update(clip_length=9, clip_strides=(1,))
  c.features.input_size = 64     # the side vit_mini is pretrained at (DINO's global crops)
  c.seeds = (0, 1, 2, 3, 4)
  c.batch_size, c.eval_batch_size, c.num_epochs = 32, 256, 40
  return apply_variant(c, arg, quick, PRESETS)
