"""Methods: how a model is trained (loss) and how it scores a sample (score).

`METHODS.get(name)(config)` builds a method object; the protocol every method follows, with
its optional hooks, is `vadjax.methods.base.Method`.
"""

from vadjax.registry import Registry

METHODS = Registry('method')

from vadjax.methods import adacl, alps, feature_prediction, memae, reconstruction, ssim  # noqa: E402,F401
from vadjax.methods.svdd import SVDD  # noqa: E402

# every settings group a method or stage reads, with its defaults (config groups)
GROUP_DEFAULTS = {**{cls.group: cls.DEFAULTS for cls in map(METHODS.get, METHODS.names())},
                  SVDD.name: SVDD.DEFAULTS}
