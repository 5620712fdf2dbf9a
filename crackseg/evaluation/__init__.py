"""Scoring: ODS / OIS / AP exactly as the authors compute them, and a run's test split.

The names this package had as the 0.1 module ``crackseg.evaluation`` still resolve, with a
``DeprecationWarning`` (:mod:`crackseg._moved`).
"""

from crackseg._moved import package_getattr

__getattr__ = package_getattr(__name__)
