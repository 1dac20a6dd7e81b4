"""The training loop: resumable, seeded, logged, the same on CPU and GPU.

Loss DiceCE (the UNETR/BTCV recipe Mobile U-ViT 3D follows), AdamW with linear warm-up and cosine decay computed
from the global step (so a resumed run continues the same schedule). A checkpoint is written after every epoch;
validation Dice in model space is logged every few epochs to watch progress. The final epoch's weights are exported:
no checkpoint is picked on the validation cases, so the figures measured on them afterwards are not biased by
selection.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import SimpleITK as sitk
import torch
from monai.data import DataLoader, Dataset
from monai.losses import DiceCELoss
from monai.utils import set_determinism
from tqdm import tqdm

from ..card import card_from_dict
from ..image_io import read_image
from ..inference.predictor import sliding_window_probabilities
from ..models import create_model
from ..preparation import prepare_image, prepare_label
from ..progress import CancelToken
from .augment import training_transforms
from .checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from .dataset_folder import VolumeDataset
from .recipe import Recipe


@dataclass
class PreparedCase:
    name: str
    image: np.ndarray  # (channels, x, y, z) normalised
    label: np.ndarray  # (x, y, z) uint8


def prepare_cases(dataset: VolumeDataset, names: list[str], recipe: Recipe, *,
                  show_progress: bool = False) -> list[PreparedCase]:
    spec = card_from_dict(_card_with_placeholder_weights(recipe.card), dataset.folder).input
    prepared = []
    for name in tqdm(names, desc="preparing", unit="case", leave=False, disable=not show_progress):
        case = dataset.case(name)
        image = read_image(case.image)
        ready = prepare_image(image, spec, name=case.image.name)
        label = prepare_label(sitk.ReadImage(str(case.label)), spec, image)
        prepared.append(PreparedCase(name, ready.array, label))
    return prepared


def _card_with_placeholder_weights(card: dict) -> dict:
    """Cards require a weights entry; before training there is none yet."""
    placeholder = {"file": "pending.safetensors", "sha256": "0" * 64, "size": 1}
    metrics = card.get("metrics", {})
    return {**card, "weights": card.get("weights", placeholder), "training": card.get("training", {}),
            "metrics": metrics}


def learning_rate_at(step: int, total_steps: int, warmup_steps: int, base: float) -> float:
    if step < warmup_steps:
        return base * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
    return base * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def dice_per_class(prediction: np.ndarray, target: np.ndarray, num_classes: int) -> list[float]:
    scores = []
    for value in range(1, num_classes):
        predicted, expected = prediction == value, target == value
        denominator = predicted.sum() + expected.sum()
        scores.append(1.0 if denominator == 0 else float(2 * (predicted & expected).sum() / denominator))
    return scores


class Trainer:
    """Train one recipe on one dataset split into ``output_dir``.

    Example::

        trainer = Trainer(recipe, dataset, split, Path("runs/hippocampus"), torch.device("cpu"))
        network = trainer.run(resume=True)
    """

    def __init__(self, recipe: Recipe, dataset: VolumeDataset, split: dict[str, list[str]], output_dir: Path,
                 device: torch.device, *, log: Callable[[str], None] = print,
                 cancel: Optional[CancelToken] = None, show_progress: bool = True):
        self.recipe = recipe
        self.config = recipe.training
        self.dataset = dataset
        self.split = split
        self.output_dir = output_dir
        self.device = device
        self.log = log
        self.cancel = cancel or CancelToken()
        self.show_progress = show_progress
        self.architecture = recipe.card["architecture"]
        self.patch_size = tuple(recipe.card["input"]["patch_size"])
        self.num_classes = len(recipe.card["labels"]) + 1

    def build_network(self) -> torch.nn.Module:
        return create_model(self.architecture["name"], **self.architecture.get("config", {}))

    def run(self, resume: bool = True) -> torch.nn.Module:
        config = self.config
        set_determinism(seed=config.seed)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        train_cases = prepare_cases(self.dataset, self.split["train"], self.recipe, show_progress=self.show_progress)
        validation_cases = prepare_cases(self.dataset, self.split["validation"], self.recipe,
                                         show_progress=self.show_progress)
        self.log(f"{len(train_cases)} training and {len(validation_cases)} validation cases prepared")

        network = self.build_network().to(self.device)
        optimizer = torch.optim.AdamW(network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
        loss_function = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)
        transforms = training_transforms(self.patch_size, config.augmentation)
        data = Dataset([{"image": case.image, "label": case.label[None]} for case in train_cases], transforms)
        steps_per_epoch = math.ceil(len(train_cases) / config.batch_size)
        total_steps = steps_per_epoch * config.epochs
        warmup_steps = steps_per_epoch * config.warmup_epochs
        amp = self.device.type == "cuda"
        scaler = torch.amp.GradScaler("cuda", enabled=amp)

        state = {"epoch": 0, "step": 0, "history": []}
        if resume and has_checkpoint(self.output_dir):
            state = load_checkpoint(self.output_dir, network, optimizer)
            self.log(f"resumed from epoch {state['epoch']} (step {state['step']})")
        log_file = (self.output_dir / "train_log.jsonl").open("a", encoding="utf-8")
        try:
            for epoch in range(state["epoch"], config.epochs):
                transforms.set_random_state(seed=config.seed + epoch)
                generator = torch.Generator().manual_seed(config.seed + epoch)
                loader = DataLoader(data, batch_size=config.batch_size, shuffle=True, generator=generator,
                                    num_workers=0, drop_last=False)
                network.train()
                losses = []
                started = time.time()
                bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", leave=False,
                           disable=not self.show_progress)
                for batch in bar:
                    self.cancel.raise_if_cancelled()
                    for group in optimizer.param_groups:
                        group["lr"] = learning_rate_at(state["step"], total_steps, warmup_steps,
                                                       config.learning_rate)
                    images = batch["image"].to(self.device)
                    labels = batch["label"].to(self.device)
                    with torch.autocast(self.device.type, enabled=amp):
                        loss = loss_function(network(images), labels)
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(network.parameters(), config.gradient_clip)
                    scaler.step(optimizer)
                    scaler.update()
                    state["step"] += 1
                    losses.append(float(loss.detach()))
                    bar.set_postfix(loss=f"{np.mean(losses):.4f}")
                record = {"epoch": epoch + 1, "loss": float(np.mean(losses)),
                          "seconds": round(time.time() - started, 1), "lr": optimizer.param_groups[0]["lr"]}
                if (epoch + 1) % config.validation_every == 0 or epoch + 1 == config.epochs:
                    record["validation_dice"] = self.validate(network, validation_cases)
                    record["validation_mean_dice"] = float(np.mean(record["validation_dice"]))
                state["epoch"] = epoch + 1
                state["history"].append(record)
                save_checkpoint(self.output_dir, network, optimizer, state)
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
                summary = f"epoch {epoch + 1}/{config.epochs} loss {record['loss']:.4f} ({record['seconds']} s)"
                if "validation_mean_dice" in record:
                    summary += f" validation Dice {record['validation_mean_dice']:.4f} " \
                               f"{[round(d, 4) for d in record['validation_dice']]}"
                self.log(summary)
        finally:
            log_file.close()
        return network.eval()

    def validate(self, network: torch.nn.Module, cases: list[PreparedCase]) -> list[float]:
        """Mean Dice per foreground class over ``cases`` in model space (no post-processing)."""
        network.eval()
        scores = []
        for case in cases:
            self.cancel.raise_if_cancelled()
            probabilities = sliding_window_probabilities(network, case.image, self.patch_size, overlap=0.5,
                                                         device=self.device, amp=self.device.type == "cuda")
            scores.append(dice_per_class(probabilities.argmax(0), case.label, self.num_classes))
        network.train()
        return [float(value) for value in np.mean(scores, axis=0)]
