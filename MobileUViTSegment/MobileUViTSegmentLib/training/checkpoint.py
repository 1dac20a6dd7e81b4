"""Resumable training checkpoints without pickle.

Tensors (model, optimiser moments, torch RNG state) go into one safetensors file; everything else (epoch, step,
optimiser hyper-parameters, Python and NumPy RNG states, the metric history) into a JSON file beside it. Both are
written through ``atomic_output`` (temporary name, then rename), so an interrupted save leaves the previous
checkpoint intact.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..image_io import atomic_output, write_text_atomically

TENSORS = "checkpoint.safetensors"
STATE = "checkpoint.json"


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def save_checkpoint(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    state: dict[str, Any]) -> None:
    tensors = {f"model.{key}": value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    optimizer_tensors, optimizer_meta = _optimizer_tensors(optimizer)
    tensors.update(optimizer_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    numpy_state = np.random.get_state()
    meta = {
        **state,
        "optimizer": optimizer_meta,
        "rng": {
            "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
            "numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
        },
    }
    with atomic_output(folder / TENSORS) as temporary:
        save_file(tensors, str(temporary))
    write_text_atomically(folder / STATE, json.dumps(meta))


def has_checkpoint(folder: Path) -> bool:
    return (folder / TENSORS).is_file() and (folder / STATE).is_file()


def load_checkpoint(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore model, optimiser and RNG states; return the JSON state (epoch, step, history, ...)."""
    tensors = load_file(str(folder / TENSORS))
    meta = json.loads((folder / STATE).read_text(encoding="utf-8"))
    model.load_state_dict({key[len("model."):]: value for key, value in tensors.items() if key.startswith("model.")})
    optimizer_state: dict[str, Any] = {"state": {}, "param_groups": meta["optimizer"]["param_groups"]}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            optimizer_state["state"].setdefault(int(index), {})[name] = value
    for key, value in meta["optimizer"]["scalars"].items():
        index, name = key.split(".", 1)
        optimizer_state["state"].setdefault(int(index), {})[name] = value
    optimizer.load_state_dict(optimizer_state)
    torch.set_rng_state(tensors["rng.torch"])
    python_state = meta["rng"]["python"]
    random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
    numpy_state = meta["rng"]["numpy"]
    np.random.set_state((numpy_state[0], np.array(numpy_state[1], dtype=np.uint32), *numpy_state[2:]))
    return {key: value for key, value in meta.items() if key not in ("optimizer", "rng")}
