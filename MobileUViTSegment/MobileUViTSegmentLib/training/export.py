"""Turn a trained network into a shippable model: safetensors weights and a model card that records how it was made.

Weights are stored in half precision when that costs nothing measurable: the export compares validation Dice of
the full-precision and the rounded weights and keeps float32 if the rounded ones lose more than 0.001 (for a
reconstruction network: if the rounded weights' validation MSE is more than 1 % higher).

A reconstruction network's card says ``"kind": "reconstruction"``: it is an ingredient for ``train --init-weights``
(SRSNet's R), and ``segment`` refuses it.
"""

from __future__ import annotations

import copy
import json
import platform
from pathlib import Path

import torch

from ..card import CARD_SUFFIX, card_from_dict
from ..image_io import write_text_atomically
from ..weights import load_state_dict, save_state_dict
from .trainer import card_template

HALF_PRECISION_TOLERANCE = 1e-3  # Dice lost
HALF_PRECISION_MSE_TOLERANCE = 0.01  # relative MSE gained


def _rounded_copy(network: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    rounded = copy.deepcopy(network)
    with torch.no_grad():
        for tensor in list(rounded.parameters()) + list(rounded.buffers()):
            if tensor.is_floating_point():
                tensor.copy_(tensor.to(dtype).float())
    return rounded


def export_model(trainer, network: torch.nn.Module, split_file: Path, command: str,
                 validation_cases: list, working_directory: str = ".") -> Path:
    """Write ``<id>.safetensors`` and ``<id>.card.json`` into the trainer's output folder; return the card path."""
    recipe, output_dir, task = trainer.recipe, trainer.output_dir, trainer.task
    card = copy.deepcopy(card_template(recipe))
    dtype = recipe.training.weights_dtype
    dtype_check = {}
    if dtype != "float32" and validation_cases:
        full = trainer.headline(network, validation_cases)
        rounded = trainer.headline(_rounded_copy(network, getattr(torch, dtype)), validation_cases)
        figure = "validation_dice" if task.higher_is_better else "validation_mse"
        digits = 4 if task.higher_is_better else 8
        dtype_check = {f"float32_{figure}": round(full, digits), f"{dtype}_{figure}": round(rounded, digits)}
        worse = full - rounded > HALF_PRECISION_TOLERANCE if task.higher_is_better \
            else rounded > full * (1 + HALF_PRECISION_MSE_TOLERANCE)
        if worse:
            dtype = "float32"
    weights_path = output_dir / f"{card['id']}.safetensors"
    spec = save_state_dict(network.state_dict(), weights_path, dtype)
    # Prove the file round-trips into the architecture before a card points at it.
    trainer.build_network().load_state_dict(load_state_dict(weights_path), strict=True)

    history = trainer_history(output_dir)
    last_validation = next((record for record in reversed(history) if task.headline in record), {})
    card["architecture"]["parameters"] = sum(p.numel() for p in network.parameters())
    card["weights"] = spec.to_dict()
    card["training"] = {
        "command": command,
        "working_directory": working_directory,
        "dataset": trainer.dataset.folder.name,
        "split_file": split_file.name,
        "train_cases": len(trainer.split["train"]),
        "validation_cases": len(trainer.split["validation"]),
        "selection": "final epoch (no checkpoint selection on the validation cases)",
        "config": recipe.training.to_dict(),
        "epochs_run": len(history),
        "final_loss": history[-1]["loss"] if history else None,
        **_validation_figures(task.name, last_validation),
        "weights_dtype_check": dtype_check,
        "device": str(trainer.device),
        "platform": f"{platform.system()} {platform.machine()}, torch {torch.__version__}",
        "seconds": round(sum(record["seconds"] for record in history), 1),
    }
    if trainer.initial_weights_record:  # set by the run, from its checkpoint when it resumed
        card["training"]["initial_weights"] = trainer.initial_weights_record
    card.setdefault("metrics", {})
    card_from_dict(card, output_dir, "the exported card")  # never write a card the catalog would refuse
    card_path = output_dir / f"{card['id']}{CARD_SUFFIX}"
    write_text_atomically(card_path, json.dumps(card, indent=2) + "\n")
    return card_path


def _validation_figures(task: str, record: dict) -> dict:
    if task == "reconstruction":
        return {"task": task, "model_space_validation_mse": record.get("validation_mse")}
    figures = {"model_space_validation_dice": record.get("validation_dice")}
    if "validation_iou" in record:
        figures["model_space_validation_iou"] = record["validation_iou"]
    return figures


def trainer_history(output_dir: Path) -> list[dict]:
    log = output_dir / "train_log.jsonl"
    if not log.is_file():
        return []
    records: dict[int, dict] = {}
    for line in log.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            records[record["epoch"]] = record  # a resumed run may log an epoch twice; keep the last
    return [records[epoch] for epoch in sorted(records)]
