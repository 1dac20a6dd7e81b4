"""The MONAI networks our architectures are compared with, each in the configuration its best-known user runs.

Why these five: MONAI's ``UNet`` is the network of MONAI's tutorials; ``SegResNetDS`` is what MONAI Auto3DSeg (and so
SlicerMONAIAuto3DSeg) trains; ``DynUNet`` with nnU-Net's topology stands for nnU-Net and therefore TotalSegmentator;
``UNETR`` and ``SwinUNETR`` are the 3D transformer baselines the Mobile U-ViT and HyMamba papers report on BTCV.
Every builder takes the window it will run on, because some topologies depend on it (UNETR's position embedding, the
number of nnU-Net stages).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

DYNUNET_MAX_FILTERS = 320  # nnU-Net caps 3D feature maps at 320 channels
DYNUNET_MAX_DOWNSAMPLINGS = 5


def monai_unet(spatial_dims: int, in_channels: int, out_channels: int, window: Sequence[int]) -> nn.Module:
    """MONAI's residual UNet as in its tutorials (instance norm, PReLU: MONAI's defaults)."""
    from monai.networks.nets import UNet

    return UNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels,
                channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2)


def monai_segresnet(spatial_dims: int, in_channels: int, out_channels: int, window: Sequence[int]) -> nn.Module:
    """Auto3DSeg's ``segresnet`` algorithm network (its ``hyper_parameters.yaml``): ``SegResNetDS``, 32 initial
    filters, blocks (1, 2, 2, 4, 4), instance norm, 4 deep-supervision heads. The heads count in the parameters but
    run only in training; in eval the network returns the final head alone. (Auto3DSeg's default window is larger,
    224x224x144; the benchmark gives every 3D network the same 96^3.)"""
    from monai.networks.nets import SegResNetDS

    return SegResNetDS(spatial_dims=spatial_dims, init_filters=32, in_channels=in_channels, out_channels=out_channels,
                       blocks_down=(1, 2, 2, 4, 4), norm="instance", dsdepth=4)


def dynunet_strides(window: Sequence[int]) -> list[int]:
    """nnU-Net-like stage strides for a cubic window: a stride-1 first stage, then up to five halvings.

    Five halvings (six stages, 32 to 320 filters) is the topology TotalSegmentator's nnU-Net plans use; windows too
    small or not divisible by 32 (the tiny ones used to check this script) get as many halvings as they allow.
    """
    size = min(window)
    downsamplings = 0
    while downsamplings < DYNUNET_MAX_DOWNSAMPLINGS and size % 2 == 0 and size // 2 >= 2:
        size //= 2
        downsamplings += 1
    return [1] + [2] * downsamplings


def monai_dynunet(spatial_dims: int, in_channels: int, out_channels: int, window: Sequence[int]) -> nn.Module:
    """DynUNet in nnU-Net's configuration: 3x3x3 kernels, filters 32, 64, ... capped at 320, instance norm with affine,
    leaky ReLU (MONAI's defaults), transposed-convolution up-sampling, deep supervision off."""
    from monai.networks.nets import DynUNet

    strides = dynunet_strides(window)
    filters = [min(32 * 2**stage, DYNUNET_MAX_FILTERS) for stage in range(len(strides))]
    return DynUNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels,
                   kernel_size=[3] * len(strides), strides=strides, upsample_kernel_size=strides[1:],
                   filters=filters, deep_supervision=False)


def monai_unetr(spatial_dims: int, in_channels: int, out_channels: int, window: Sequence[int]) -> nn.Module:
    """UNETR in the BTCV configuration of its paper (ViT-B/16 encoder, feature size 16)."""
    from monai.networks.nets import UNETR

    return UNETR(in_channels=in_channels, out_channels=out_channels, img_size=tuple(window), feature_size=16,
                 hidden_size=768, mlp_dim=3072, num_heads=12, spatial_dims=spatial_dims)


def monai_swinunetr(spatial_dims: int, in_channels: int, out_channels: int, window: Sequence[int]) -> nn.Module:
    """Swin UNETR in the BTCV configuration of its paper (feature size 48); MONAI 1.6 no longer takes ``img_size``."""
    from monai.networks.nets import SwinUNETR

    return SwinUNETR(in_channels=in_channels, out_channels=out_channels, feature_size=48, spatial_dims=spatial_dims)


PEERS = {"monai_unet": monai_unet, "monai_segresnet": monai_segresnet, "monai_dynunet": monai_dynunet,
         "monai_unetr": monai_unetr, "monai_swinunetr": monai_swinunetr}
