"""Configuration: YAML layers and ``--set``, the run sections and their resolution, tune ranges, the run folder.

The names this package had as the 0.1 module ``crackseg.config`` still resolve, with a
``DeprecationWarning`` (:mod:`crackseg._moved`).
"""

from crackseg._moved import package_getattr

__getattr__ = package_getattr(__name__)
