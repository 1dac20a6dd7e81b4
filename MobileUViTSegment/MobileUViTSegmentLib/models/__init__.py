"""Network architectures, registered by name (see :mod:`.registry`)."""

from . import (
    hymamba,  # noqa: F401  (registers hymamba, hymamba_small)
    mobile_u_vit,  # noqa: F401  (registers the Mobile U-ViT factories)
    srsnet,  # noqa: F401  (registers srsnet, srsnet_r, srsnet_s)
)
from .mobile_u_vit import MobileUViT, MobileUViTConfig
from .registry import create_model, list_models, register_model

__all__ = ["MobileUViT", "MobileUViTConfig", "create_model", "list_models", "register_model"]
