"""The ``mobileuvit-segment`` command line (also ``python -m MobileUViTSegmentLib``)."""

from .main import main

__all__ = ["main"]
