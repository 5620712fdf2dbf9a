"""Phase 2: the trainer contract, the engine every trainer shares, backbones' helpers, losses, checkpoints.

The names this package had as the 0.1 module ``crackseg.training`` still resolve, with a
``DeprecationWarning`` (:mod:`crackseg._moved`).
"""

from crackseg._moved import package_getattr

__getattr__ = package_getattr(__name__)
