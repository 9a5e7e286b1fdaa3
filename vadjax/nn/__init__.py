"""Building blocks shared by the models."""

from vadjax.nn.layers import Conv, ConvTranspose, batch_norm, check_input

__all__ = ['Conv', 'ConvTranspose', 'batch_norm', 'check_input']
