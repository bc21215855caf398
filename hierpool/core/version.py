"""The package version (one place; ``hierpool.__version__`` and the fits' attrs read it)."""

__version__ = "0.1.0"
