"""The release of crackseg (semantic versioning: a moved or removed public name warns for one minor release)."""

__version__ = "0.2.0"
