"""Mapping official checkpoints (state-dict names and shapes of the papers' code) onto our networks."""

from . import (
    hymamba_formats,  # noqa: F401  (registers hymamba_official, mambamim_encoder_official)
    mobile_u_vit_formats,  # noqa: F401  (registers mobileuvit_*_official, mobileutr_*_2024_official)
    srsnet_formats,  # noqa: F401  (registers srsnet_r_official, srsnet_s_official)
)
from .registry import OfficialFormat, get_format, list_formats, register_format

__all__ = ["OfficialFormat", "get_format", "list_formats", "register_format"]
