"""The training loop: resumable, seeded, logged, the same on CPU and GPU.

A recipe picks the task (segmentation, or reconstruction of the input), the loss and the optimiser; the defaults are
DiceCE and AdamW with linear warm-up and cosine decay (the UNETR/BTCV recipe Mobile U-ViT 3D follows), the 2D papers'
recipe is BCE + Dice and SGD with poly decay. Rates are computed from the global step, so a resumed run continues the
same schedule. Only parameters that require a gradient are optimised (frozen sub-networks stay as loaded). A run can
start from given weights (``initial_weights``, loaded non-strictly under a prefix) unless it resumes from its own
checkpoint. A checkpoint is written after every epoch; validation figures in model space are logged every few epochs
to watch progress. The final epoch's weights are exported: no checkpoint is picked on the validation cases, so the
figures measured on them afterwards are not biased by selection.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import SimpleITK as sitk
import torch
from monai.data import DataLoader, Dataset
from monai.utils import set_determinism
from tqdm import tqdm

from ..card import card_from_dict
from ..devices import training_memory_format
from ..errors import DatasetError
from ..image_io import read_image
from ..models import create_model
from ..preparation import prepare_image, prepare_label
from ..progress import CancelToken
from .augment import training_transforms
from .checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from .dataset_folder import VolumeDataset
from .image_folder import ImageFolderDataset, prepare_picture_case
from .initial_weights import load_initial_weights, weights_provenance
from .recipe import Recipe
from .schedules import build_optimizer, scheduled_learning_rate, trainable_parameters
from .tasks import PreparedCase, build_task

Dataset2DOr3D = VolumeDataset | ImageFolderDataset


def card_template(recipe: Recipe) -> dict:
    """The recipe's card as the trained model's card will start: reconstruction networks marked as such."""
    card = dict(recipe.card)
    if recipe.training.is_reconstruction:
        card["kind"] = "reconstruction"
        card.setdefault("labels", [])
    return card


def prepare_cases(dataset: Dataset2DOr3D, names: list[str], recipe: Recipe, *,
                  show_progress: bool = False) -> list[PreparedCase]:
    spec = card_from_dict(_card_with_placeholder_weights(card_template(recipe)), dataset.folder).input
    pictures = isinstance(dataset, ImageFolderDataset)
    if pictures != (spec.spatial_dims == 2):
        raise DatasetError(f"the recipe's model is {spec.spatial_dims}D but {dataset.folder} is in the "
                           f"{'2D (images/, masks/)' if pictures else 'volume (imagesTr/, labelsTr/)'} layout; 2D "
                           "models train on the 2D layout, 3D models on volumes")
    with_label = not recipe.training.is_reconstruction
    prepared = []
    for name in tqdm(names, desc="preparing", unit="case", leave=False, disable=not show_progress):
        case = dataset.case(name)
        if pictures:
            image, label = prepare_picture_case(case, spec, len(recipe.card["labels"]), with_label)
            prepared.append(PreparedCase(name, image, label))
            continue
        image = read_image(case.image)
        ready = prepare_image(image, spec, name=case.image.name)
        label = prepare_label(sitk.ReadImage(str(case.label)), spec, image) if with_label else None
        prepared.append(PreparedCase(name, ready.array, label))
    return prepared


def _card_with_placeholder_weights(card: dict) -> dict:
    """Cards require a weights entry; before training there is none yet."""
    placeholder = {"file": "pending.safetensors", "sha256": "0" * 64, "size": 1}
    metrics = card.get("metrics", {})
    return {**card, "weights": card.get("weights", placeholder), "training": card.get("training", {}),
            "metrics": metrics}


class Trainer:
    """Train one recipe on one dataset split into ``output_dir``.

    Example::

        trainer = Trainer(recipe, dataset, split, Path("runs/hippocampus"), torch.device("cpu"))
        network = trainer.run(resume=True)
    """

    def __init__(self, recipe: Recipe, dataset: Dataset2DOr3D, split: dict[str, list[str]], output_dir: Path,
                 device: torch.device, *, log: Callable[[str], None] = print,
                 cancel: Optional[CancelToken] = None, show_progress: bool = True,
                 initial_weights: Optional[Path] = None, initial_prefix: str = ""):
        self.recipe = recipe
        self.config = recipe.training
        self.dataset = dataset
        self.split = split
        self.output_dir = output_dir
        self.device = device
        self.log = log
        self.cancel = cancel or CancelToken()
        self.show_progress = show_progress
        self.initial_weights = initial_weights
        self.initial_prefix = initial_prefix
        self.initial_weights_record: Optional[dict] = None  # what the exported card says the run started from
        self.architecture = recipe.card["architecture"]
        self.patch_size = tuple(recipe.card["input"]["patch_size"])
        self.task = build_task(recipe.training, recipe.card)

    def build_network(self) -> torch.nn.Module:
        return create_model(self.architecture["name"], **self.architecture.get("config", {}))

    def run(self, resume: bool = True) -> torch.nn.Module:
        config, task = self.config, self.task
        set_determinism(seed=config.seed)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        train_cases = prepare_cases(self.dataset, self.split["train"], self.recipe, show_progress=self.show_progress)
        validation_cases = prepare_cases(self.dataset, self.split["validation"], self.recipe,
                                         show_progress=self.show_progress)
        self.log(f"{len(train_cases)} training and {len(validation_cases)} validation cases prepared")

        memory_format = training_memory_format(int(self.recipe.card["input"]["spatial_dims"]))
        network = self.build_network().to(self.device, memory_format=memory_format)
        optimizer = build_optimizer(config.optimizer, network, config.learning_rate, config.weight_decay,
                                    config.momentum)
        trainable = trainable_parameters(network)
        transforms = training_transforms(self.patch_size, config.augmentation, task.keys)
        data = Dataset([task.item(case) for case in train_cases], transforms)
        steps_per_epoch = math.ceil(len(train_cases) / config.batch_size)
        total_steps = steps_per_epoch * config.epochs
        warmup_steps = steps_per_epoch * config.warmup_epochs
        amp = self.device.type == "cuda"
        scaler = torch.amp.GradScaler("cuda", enabled=amp)

        state = {"epoch": 0, "step": 0, "history": []}
        if resume and has_checkpoint(self.output_dir):
            state = load_checkpoint(self.output_dir, network, optimizer)
            ignored = " (initial weights not loaded again: the checkpoint holds the run's own)" \
                if self.initial_weights is not None else ""
            self.log(f"resumed from epoch {state['epoch']} (step {state['step']}){ignored}")
            state = self._with_provenance(state)
        elif self.initial_weights is not None:
            report = load_initial_weights(network, self.initial_weights, self.initial_prefix)
            state["initial_weights"] = report.to_dict()  # kept in the checkpoint, so a resumed run still records it
            self.log(report.summary())
        self.initial_weights_record = state.get("initial_weights")
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
                        group["lr"] = scheduled_learning_rate(config.optimizer, state["step"], total_steps,
                                                              warmup_steps, config.learning_rate, config.poly_power)
                    images = batch["image"].to(self.device, memory_format=memory_format)
                    with torch.autocast(self.device.type, enabled=amp):
                        loss = task.loss(network(images), batch, images)
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.unscale_(optimizer)
                    if config.gradient_clip is not None:
                        torch.nn.utils.clip_grad_norm_(trainable, config.gradient_clip)
                    scaler.step(optimizer)
                    scaler.update()
                    state["step"] += 1
                    losses.append(float(loss.detach()))
                    bar.set_postfix(loss=f"{np.mean(losses):.4f}")
                record = {"epoch": epoch + 1, "loss": float(np.mean(losses)),
                          "seconds": round(time.time() - started, 1), "lr": optimizer.param_groups[0]["lr"]}
                validated = (epoch + 1) % config.validation_every == 0 or epoch + 1 == config.epochs
                if validated:
                    record.update(self.evaluate(network, validation_cases))
                state["epoch"] = epoch + 1
                state["history"].append(record)
                save_checkpoint(self.output_dir, network, optimizer, state)
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
                summary = f"epoch {epoch + 1}/{config.epochs} loss {record['loss']:.4f} ({record['seconds']} s)"
                if validated:
                    summary += " " + task.describe(record)
                self.log(summary)
        finally:
            log_file.close()
        return network.eval()

    def _with_provenance(self, state: dict) -> dict:
        """A checkpoint written before initial weights carried their sha256 and parent gets them on resume, from the
        same ``--init-weights`` file (matched by name), so the exported card still says what the run grew from."""
        record = state.get("initial_weights")
        if not record or "sha256" in record or self.initial_weights is None \
                or Path(self.initial_weights).name != record.get("file") or not Path(self.initial_weights).is_file():
            return state
        provenance = weights_provenance(self.initial_weights)
        self.log(f"initial weights {record['file']}: sha256 {provenance['sha256'][:12]}... recorded on resume")
        return {**state, "initial_weights": {**record, **provenance, "recorded": "on resume"}}

    def evaluate(self, network: torch.nn.Module, cases: list[PreparedCase]) -> dict:
        """The task's validation figures over ``cases`` in model space (no post-processing)."""
        network.eval()
        try:
            return self.task.validate(network, cases, self.device, self.cancel)
        finally:
            network.train()

    def headline(self, network: torch.nn.Module, cases: list[PreparedCase]) -> float:
        """The one figure that says how good ``network`` is (mean Dice, or reconstruction MSE)."""
        return float(self.evaluate(network, cases)[self.task.headline])
