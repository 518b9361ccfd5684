"""Mask-guided tile embeddings cached in HDF5, and class-weighted heads that vote per image."""

__version__ = "0.1.0"
