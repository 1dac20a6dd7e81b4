"""Synthetic official checkpoints for the conversion tests: random tensors with exactly the names and shapes that the
official models' key listings in ``shared/reference/models/keys`` record (no official weights are needed or held)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Optional

import pytest
import torch

KEY_LISTINGS = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "models" / "keys"


def official_state_dict(listing: str, rename: Optional[tuple[str, str]] = None,
                        seed: int = 0) -> dict[str, torch.Tensor]:
    """The listing's state dict (after its two header lines: one ``key<TAB>shape`` a line); ``rename`` replaces a
    substring in every key; BatchNorm's ``num_batches_tracked`` counters are integers, as in a real checkpoint."""
    path = KEY_LISTINGS / listing
    if not path.is_file():
        pytest.skip(f"official key listing not found: {path}")
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for line in path.read_text(encoding="utf-8").splitlines()[2:]:
        key, shape = line.split("\t")
        if rename:
            key = key.replace(*rename)
        state[key] = (torch.randint(0, 1000, (), generator=generator) if key.endswith("num_batches_tracked")
                      else torch.randn(ast.literal_eval(shape), generator=generator))
    return state
