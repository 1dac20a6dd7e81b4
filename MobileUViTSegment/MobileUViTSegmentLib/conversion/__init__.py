"""Mapping official checkpoints (state-dict names and shapes of the papers' code) onto our networks."""

from .registry import OfficialFormat, get_format, list_formats, register_format

__all__ = ["OfficialFormat", "get_format", "list_formats", "register_format"]
