"""MambaMIM: masked-image-modelling pre-training of HyMamba's encoder with state-space token interpolation (TOKI).

Re-implemented from ``shared/reference/models/mambamim.md`` section 4. ``forward(x) -> (loss, reconstruction, mask)``.

1. Bottom-up hybrid masking: one random mask per sample on the 1/16 grid (``mask_ratio`` 0.75, exactly
   round(N * (1 - ratio)) visible cells per sample), repeated up to every scale ("masking consistency"). The input is
   multiplied by it and, SparK style, the output of every convolution, pooling and channel LayerNorm of the CNN
   encoder is multiplied by the mask at its resolution (forward hooks, so the encoder keeps HyMamba's module names).
2. Only visible tokens (raster order, plus the fixed position embedding) go through the Mamba layers.
3. TOKI at 1/16: masked tokens are interpolated from the visible anchors (positions 0 and N-1 always anchors, taking
   the learned ``bottleneck_mask_token`` where masked): inside the gap from anchor i_k up to the next anchor, token j
   of m is the linear interpolation of the two anchors with alpha = j / (m - 1), multiplied by A^(m-1-j) with the
   learned ``A_interpolation`` (zero-initialised, so A^0 = I and higher powers vanish), then summed cumulatively
   inside the gap (the unrolled recurrence h = A h + x); the last position uses A once. Shallower levels fill masked
   positions with per-level learned ``mask_tokens``.
4. Densify projections (1x1 at 1/16, 3x3 elsewhere) into a light SparK-style decoder whose width halves per level;
   the loss is the MSE to per-patch-normalised input patches (patch = one 1/16 cell), on masked patches only.

Decisions on the official code's quirks (reference section 11):

1. TOKI's result is reshaped token-major -> channel-major without a transpose in the official code, which scrambles
   tokens and channels: we place each interpolated token at its own grid position, as the paper's figure shows.
2. len_keep is summed over the batch there (samples keep masked tokens when batch > 1): we keep exactly the visible
   tokens of each sample (every sample has the same number, so they stack).
3. ``A_interpolation`` zero-initialised: kept.
4. Hard-coded GPU placement in TOKI: none here; everything follows the input's device.
13. The official decoder computes a full-resolution densified skip it never uses (and a fuse block for the first
   level that never runs); we build neither. Consequently, as in the official code, ``embeddings.encoder1`` gets no
   gradient during pre-training. The official ``mae.mask_token`` becomes our ``bottleneck_mask_token``, outside the
   encoder, so the encoder's state dict is exactly HyMamba's encoder keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from .hymamba import DOWNSAMPLING, HyMamba, HyMambaConfig
from .hymamba_blocks import ChannelsFirstLayerNorm
from .layers import flatten_tokens, unflatten_tokens

ENCODER_PREFIXES = ("embeddings.", "mae.")


@dataclass(frozen=True)
class MambaMIMConfig:
    mask_ratio: float = 0.75
    decoder_width: Optional[int] = None  # default: twice the bottleneck width (768 for the official 384)


def repeat_mask(mask: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """A (B, 1, *grid) mask repeated up to ``size`` (every axis an integer multiple of the grid)."""
    for axis, length in enumerate(size):
        mask = mask.repeat_interleave(length // mask.shape[2 + axis], dim=2 + axis)
    return mask


def patchify(volume: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W, D) -> (B, cells, C * patch^3) with cells in raster order of the coarse grid."""
    b, c, h, w, d = volume.shape
    cells = volume.reshape(b, c, h // patch, patch, w // patch, patch, d // patch, patch)
    return cells.permute(0, 2, 4, 6, 3, 5, 7, 1).reshape(b, (h // patch) * (w // patch) * (d // patch), -1)


def masked_patch_loss(reconstruction: torch.Tensor, target: torch.Tensor, masked: torch.Tensor,
                      patch: int = DOWNSAMPLING) -> torch.Tensor:
    """MSE between the reconstruction and per-patch-normalised target patches, averaged over masked patches only.

    ``masked``: (B, 1, *grid) boolean, True where the cell was hidden from the encoder.
    """
    target_patches = patchify(target, patch)
    mean = target_patches.mean(dim=-1, keepdim=True)
    std = (target_patches.var(dim=-1, keepdim=True) + 1e-6).sqrt()
    per_patch = ((patchify(reconstruction, patch) - (target_patches - mean) / std) ** 2).mean(dim=-1)
    weights = masked.flatten(1).to(per_patch.dtype)
    return (per_patch * weights).sum() / (weights.sum() + 1e-8)


class UpBlock(nn.Module):
    """x2 transposed-conv up-sampling, then two conv 3^3 + BatchNorm + ReLU."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.up_sample = nn.ConvTranspose3d(in_channels, in_channels, 2, stride=2)
        self.conv = _double_conv(in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.up_sample(x))


def _double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(in_channels, out_channels, 3, padding=1), nn.BatchNorm3d(out_channels),
                         nn.ReLU(inplace=True), nn.Conv3d(out_channels, out_channels, 3, padding=1),
                         nn.BatchNorm3d(out_channels), nn.ReLU(inplace=True))


class LightDecoder(nn.Module):
    """SparK-style decoder: four up blocks from 1/16 to full scale; the skips at 1/8..1/2 are fused in first."""

    def __init__(self, width: int):
        super().__init__()
        widths = [width // 2 ** level for level in range(5)]
        self.dec = nn.ModuleList(UpBlock(widths[i], widths[i + 1]) for i in range(4))
        self.fuse = nn.ModuleList(_double_conv(2 * widths[i], widths[i]) for i in range(1, 4))
        self.proj = nn.Conv3d(widths[-1], 1, 1)
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.ConvTranspose3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        """``levels``: densified features from 1/16 to 1/2 scale."""
        x = self.dec[0](levels[0])
        for index in range(1, 4):
            x = self.dec[index](self.fuse[index - 1](torch.cat([x, levels[index]], dim=1)))
        return self.proj(x)


class MambaMIM(nn.Module):
    """Pre-training model around a HyMamba encoder (``embeddings`` + ``mae``; HyMamba's decoder is not built)."""

    def __init__(self, encoder_config: HyMambaConfig, config: MambaMIMConfig = MambaMIMConfig()):
        super().__init__()
        if not 0 < config.mask_ratio < 1:
            raise ValueError(f"mask_ratio must be between 0 and 1, got {config.mask_ratio}")
        self.encoder_config, self.config = encoder_config, config
        network = HyMamba(encoder_config)
        self.embeddings, self.mae = network.embeddings, network.mae
        grid_cells = encoder_config.token_grid[0] * encoder_config.token_grid[1] * encoder_config.token_grid[2]
        self.len_keep = max(1, round(grid_cells * (1 - config.mask_ratio)))
        c = encoder_config.channels
        bottleneck = c[-1]
        width = config.decoder_width or 2 * bottleneck
        level_widths = [c[4], c[4], c[3], c[2]]  # x5 (after Mamba), x4, x3, x2
        self.A_interpolation = nn.Parameter(torch.zeros(1, bottleneck, bottleneck))
        self.bottleneck_mask_token = nn.Parameter(torch.empty(1, 1, bottleneck).normal_(std=0.02))
        self.mask_tokens = nn.ParameterList(
            nn.Parameter(nn.init.trunc_normal_(torch.empty(1, w, 1, 1, 1), std=0.02, a=-0.02, b=0.02))
            for w in level_widths[1:])  # TOKI fills the 1/16 level
        self.densify_projs = nn.ModuleList(
            nn.Conv3d(w, width // 2 ** level, 1 if level == 0 else 3, padding=0 if level == 0 else 1)
            for level, w in enumerate(level_widths))
        self.dense_decoder = LightDecoder(width)
        self._visible: Optional[torch.Tensor] = None
        for module in self.embeddings.modules():
            if isinstance(module, (nn.Conv3d, nn.MaxPool3d, ChannelsFirstLayerNorm)):
                module.register_forward_hook(self._sparsify)

    # ------------------------------------------------------------------------------------------------ masking

    def _sparsify(self, module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
        """Zero the masked positions of an encoder layer's output (only while a mask is active)."""
        if self._visible is None:
            return output
        return output * repeat_mask(self._visible, tuple(output.shape[2:])).to(output.dtype)

    def random_mask(self, batch: int, device: torch.device, generator: Optional[torch.Generator] = None
                    ) -> torch.Tensor:
        """(B, 1, *grid) boolean, True where masked; exactly ``len_keep`` visible cells per sample."""
        grid = self.encoder_config.token_grid
        cells = grid[0] * grid[1] * grid[2]
        order = torch.rand(batch, cells, generator=generator).argsort(dim=1)
        masked = torch.ones(batch, cells, dtype=torch.bool)
        masked.scatter_(1, order[:, :self.len_keep], False)
        return masked.view(batch, 1, *grid).to(device)

    # ---------------------------------------------------------------------------------------------- bottleneck

    def _visible_mamba(self, x5: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        """Visible tokens (raster order) through the Mamba layers; masked positions get the bottleneck mask token."""
        tokens = flatten_tokens(x5) + self.mae.pos_embed
        batch, count, width = tokens.shape
        hidden = masked.flatten(1)
        visible_first = torch.sort(hidden.to(torch.int8), dim=1, stable=True).indices  # visible positions first
        keep = visible_first[:, :self.len_keep, None].expand(-1, -1, width)
        mixed = self.mae.run_blocks(torch.gather(tokens, 1, keep))
        full = self.bottleneck_mask_token.expand(batch, count, width).clone()
        full = full.scatter(1, keep, mixed)
        return unflatten_tokens(full, tuple(x5.shape[2:]))

    def _powers(self, exponents: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """A^e x for each token row x of (B, N, C) with integer exponents (B, N), by binary exponentiation."""
        transition = self.A_interpolation[0]
        result = tokens
        power = transition
        bit = 0
        while int(exponents.max()) >> bit:
            use = ((exponents >> bit) & 1).bool()[..., None]
            result = torch.where(use, result @ power.t(), result)
            power = power @ power
            bit += 1
        return result

    def token_interpolation(self, features: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        """TOKI: (B, C, *grid) features -> the same with masked tokens interpolated from the visible anchors."""
        tokens = flatten_tokens(features)  # (B, N, C)
        batch, count, _ = tokens.shape
        anchors = ~masked.flatten(1)
        anchors[:, 0] = True
        anchors[:, -1] = True
        positions = torch.arange(count, device=tokens.device).expand(batch, count)
        minus_one = torch.full_like(positions, -1)
        start = torch.cummax(torch.where(anchors, positions, minus_one), dim=1).values  # anchor at or before
        big = torch.full_like(positions, count)
        after = torch.where(anchors, positions, big).flip(1).cummin(dim=1).values.flip(1)  # anchor at or after
        nxt = torch.cat([after[:, 1:], big[:, :1] - 1], dim=1)  # anchor strictly after (last: itself)
        gap = (nxt - start).clamp(min=1)
        offset = positions - start
        alpha = torch.where(gap > 1, offset / (gap - 1).clamp(min=1), torch.zeros_like(offset, dtype=torch.float))
        alpha = alpha.to(tokens.dtype)[..., None]
        start_tokens = torch.gather(tokens, 1, start[..., None].expand_as(tokens))
        next_tokens = torch.gather(tokens, 1, nxt[..., None].expand_as(tokens))
        interpolated = (1 - alpha) * start_tokens + alpha * next_tokens
        exponents = gap - 1 - offset
        exponents[:, -1] = 1  # the last position is multiplied by A once
        weighted = self._powers(exponents, interpolated)
        running = weighted.cumsum(dim=1)
        before_gap = torch.cat([torch.zeros_like(running[:, :1]), running[:, :-1]], dim=1)
        restart = torch.gather(before_gap, 1, start[..., None].expand_as(running))
        filled = running - restart
        filled[:, -1] = weighted[:, -1]
        result = torch.where(masked.flatten(1)[..., None], filled, tokens)
        return unflatten_tokens(result, tuple(features.shape[2:]))

    # ----------------------------------------------------------------------------------------------- forward

    def encoder_state_dict(self) -> dict[str, torch.Tensor]:
        """The pre-trained encoder under HyMamba's keys (``embeddings.*``, ``mae.*``)."""
        return {key: value for key, value in self.state_dict().items() if key.startswith(ENCODER_PREFIXES)}

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (loss, reconstruction in per-patch-normalised units (B, 1, *size), mask (B, 1, *grid), True =
        masked)."""
        expected = self.encoder_config.input_size
        if x.ndim != 5 or tuple(x.shape[2:]) != expected or x.shape[1] != self.encoder_config.in_channels:
            raise ValueError(f"MambaMIM expects (batch, {self.encoder_config.in_channels}, "
                             f"{', '.join(map(str, expected))}) inputs, got shape {tuple(x.shape)}")
        masked = self.random_mask(x.shape[0], x.device) if mask is None else mask.to(x.device, torch.bool)
        visible = ~masked
        self._visible = visible
        try:
            features = self.embeddings.stages(x * repeat_mask(visible, expected).to(x.dtype))
            skips = [self.embeddings.refine(level, features[level - 1]) for level in (2, 3, 4)]
        finally:
            self._visible = None
        bottleneck = self._visible_mamba(features[4], masked)
        levels = [bottleneck, skips[2], skips[1], skips[0]]  # 1/16, 1/8, 1/4, 1/2
        dense = []
        for index, feature in enumerate(levels):
            level_visible = repeat_mask(visible, tuple(feature.shape[2:]))
            fill = (self.token_interpolation(feature, masked) if index == 0
                    else self.mask_tokens[index - 1].expand_as(feature))
            dense.append(self.densify_projs[index](torch.where(level_visible, feature, fill)))
        reconstruction = self.dense_decoder(dense)
        loss = masked_patch_loss(reconstruction, x, masked)
        return loss, reconstruction, masked


def reconstruction_in_input_units(reconstruction: torch.Tensor, x: torch.Tensor,
                                  patch: int = DOWNSAMPLING) -> torch.Tensor:
    """Undo the per-patch normalisation of a reconstruction with the statistics of the input's patches."""
    target = patchify(x, patch)
    mean = target.mean(dim=-1, keepdim=True)
    std = (target.var(dim=-1, keepdim=True) + 1e-6).sqrt()
    values = patchify(reconstruction, patch) * std + mean
    b, _, h, w, d = x.shape
    grid = (h // patch, w // patch, d // patch)
    cells = values.reshape(b, *grid, patch, patch, patch, 1)
    return cells.permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(b, 1, h, w, d)

