"""everlearn's version, recorded in every run directory, cache key and dataset."""

__version__ = "0.1.0"
