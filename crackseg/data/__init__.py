"""Data: samples and datasets, built by name, split and limited as a config's ``data:`` section says.

The names this package had as the 0.1 module ``crackseg.data`` still resolve, with a
``DeprecationWarning`` (:mod:`crackseg._moved`).
"""

from crackseg._moved import package_getattr

__getattr__ = package_getattr(__name__)
