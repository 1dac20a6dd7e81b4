"""Mamba's selective scan (S6) in plain PyTorch, so HyMamba trains and runs on a CPU.

Semantics (those of mamba-ssm's ``selective_scan_fn``, re-implemented from its description)::

    delta = softplus(delta + delta_bias)            (bias and softplus optional)
    h_t   = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t        (per channel d and state n)
    y_t   = <C_t, h_t> + D * u_t ;  y = y * silu(z)                  (D and z optional)

Why not a loop over tokens: a Python step per token costs autograd nodes and interpreter time per token. Why not the
closed form ``h_t = P_t * (h_0 + sum_s x_s / P_s)`` with ``P_t = prod exp(delta A)``: ``1 / P_s`` overflows as soon as
``delta * |A|`` summed over the span exceeds ~88, which large timesteps reach within a few tokens.

What we do instead: a loop over chunks of ``CHUNK`` tokens (not over tokens). Inside a chunk a doubling
(Hillis-Steele) scan combines pairs ``(decay, state)`` with ``(a1, b1) . (a2, b2) = (a1 a2, a2 b1 + b2)`` in
log2(CHUNK) vectorised steps; it only ever multiplies decays in [0, 1] and never divides, so it cannot overflow (long
products underflow to 0, which is the exact limit). The chunk's states are then ``h_t = a_t * h_carry + b_t`` with
the previous chunk's last state as carry. Working chunk by chunk keeps the (batch, channels, chunk, state) tensors
cache-sized and the memory of a no-grad pass independent of the sequence length. With ``return_last_state`` the final
state is returned too.

Cost: at HyMamba's size (216 tokens, 768 channels, 16 states) the scan takes tens of milliseconds on two CPU threads,
about as long as a per-token loop (whose 216 steps are cheap there); the gain is on long sequences and in autograd
graph size (log2(CHUNK) nodes per chunk instead of several per token).

When mamba-ssm is importable, the tensors are on CUDA and ``use_kernel`` is not False, its fused CUDA kernel is used
instead; it computes the same function (see ``Testing/core/test_selective_scan.py``).
"""

from __future__ import annotations

import functools
from typing import Optional

import torch
import torch.nn.functional as F

CHUNK = 32


@functools.lru_cache(maxsize=1)
def _cuda_kernel():
    """mamba-ssm's ``selective_scan_fn`` or None (its import fails without the compiled CUDA extension)."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:  # ImportError, or the extension's own load errors
        return None
    return selective_scan_fn


def _expand_input_matrix(matrix: torch.Tensor, channels: int, length: int) -> torch.Tensor:
    """B or C as (batch or 1, channels, length, state) whatever layout mamba-ssm allows for it.

    (channels, state): time-invariant; (batch, state, length): shared by all channels; (batch, groups, state, length):
    shared inside each of ``groups`` channel groups.
    """
    if matrix.ndim == 2:
        return matrix[None, :, None, :]
    if matrix.ndim == 3:
        return matrix.transpose(1, 2)[:, None]
    if matrix.ndim == 4:
        groups = matrix.shape[1]
        if channels % groups:
            raise ValueError(f"{channels} channels cannot be split into {groups} groups of B/C")
        return matrix.transpose(2, 3).repeat_interleave(channels // groups, dim=1)
    raise ValueError(f"B and C must have 2, 3 or 4 dimensions, got shape {tuple(matrix.shape)}")


def _time_slice(matrix: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Steps start..stop of an expanded B or C; a time-invariant one (length 1) is used as it is."""
    return matrix if matrix.shape[2] == 1 else matrix[:, :, start:stop]


def _chunk_scan(decay: torch.Tensor, increment: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inclusive scan inside each chunk of (..., chunks, CHUNK, state) tensors.

    Returns (cumulative decay since the chunk start, state reached from a zero state at the chunk start).
    """
    length = decay.shape[-2]
    step = 1
    while step < length:
        increment = increment + decay * F.pad(increment[..., :-step, :], (0, 0, step, 0))
        decay = decay * F.pad(decay[..., :-step, :], (0, 0, step, 0), value=1.0)
        step *= 2
    return decay, increment


def selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,  # noqa: N803
                   C: torch.Tensor, D: Optional[torch.Tensor] = None,  # noqa: N803  (mamba-ssm's names)
                   z: Optional[torch.Tensor] = None,
                   delta_bias: Optional[torch.Tensor] = None, delta_softplus: bool = False,
                   return_last_state: bool = False, use_kernel: Optional[bool] = None):
    """The selective scan of mamba-ssm, same arguments and result.

    u, delta, z: (batch, channels, length); A: (channels, state) real; B, C: (batch, state, length), (batch, groups,
    state, length) or (channels, state); D, delta_bias: (channels,). Returns y (batch, channels, length) in u's dtype,
    and the last state (batch, channels, state) when ``return_last_state``.
    """
    kernel = _cuda_kernel() if use_kernel is not False and u.is_cuda else None
    if kernel is not None:
        return kernel(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    if A.is_complex():
        raise ValueError("the plain PyTorch selective scan supports real A only")
    dtype_in = u.dtype
    u, delta = u.float(), delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias[None, :, None].float()
    if delta_softplus:
        delta = F.softplus(delta)
    batch, channels, length = u.shape
    transition = A.float()
    input_matrix = _expand_input_matrix(B.float(), channels, length)  # (b|1, d|1, L|1, n)
    output_matrix = _expand_input_matrix(C.float(), channels, length)
    delta_u = delta * u
    carry = u.new_zeros(batch, channels, transition.shape[1])
    outputs = []
    for start in range(0, length, CHUNK):  # chunk by chunk: each chunk's tensors stay cache-sized
        stop = min(start + CHUNK, length)
        decay = torch.exp(delta[:, :, start:stop, None] * transition[None, :, None, :])  # in [0, 1] for A <= 0
        increment = delta_u[:, :, start:stop, None] * _time_slice(input_matrix, start, stop)
        decay, local_state = _chunk_scan(decay, increment)
        states = decay * carry[:, :, None] + local_state
        carry = states[:, :, -1]
        outputs.append((states * _time_slice(output_matrix, start, stop)).sum(-1))
    y = torch.cat(outputs, dim=-1)
    if D is not None:
        y = y + u * D.float()[None, :, None]
    if z is not None:
        y = y * F.silu(z.float())
    y = y.to(dtype_in)
    return (y, carry) if return_last_state else y
