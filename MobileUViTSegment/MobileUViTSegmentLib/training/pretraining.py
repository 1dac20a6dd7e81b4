"""Self-supervised MambaMIM pre-training of a HyMamba encoder on unlabelled volumes.

A pre-training recipe is JSON::

    {"id": "hymamba-small-mri", "architecture": {"name": "hymamba_small", "config": {...}},
     "input": {<the input section of a model card: spacing, orientation, intensity, patch_size>},
     "pretraining": {<PretrainConfig fields>}}

Volumes are prepared exactly as for segmentation (``preparation.prepare_image``: orientation, resampling, intensity),
then random crops of the patch size (padded when smaller) with random flips feed :class:`..models.mambamim.MambaMIM`.
Optimiser as in the official recipe: AdamW, linear warm-up from 0.005 lr then cosine to 0.001 lr, weight decay on a
cosine from 0.04 up to 0.2 (the constructor's value is overwritten every step, quirk 7), gradient clipping 5. The run
is checkpointed every epoch (``checkpoint.py``) and resumes; losses go to ``pretrain_log.jsonl``. The result is
``<id>.encoder.safetensors`` (HyMamba's encoder keys exactly) and ``<id>.encoder.json`` (configuration and losses).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from monai import transforms as mt
from monai.data import DataLoader, Dataset
from monai.utils import set_determinism

from ..card import InputSpec
from ..errors import DatasetError
from ..image_io import VOLUME_SUFFIXES, full_suffix, read_image, write_text_atomically
from ..models.hymamba import SMALL_VARIANT, HyMambaConfig
from ..models.mambamim import MambaMIM, MambaMIMConfig
from ..preparation import prepare_image
from ..progress import CancelToken
from ..weights import save_state_dict
from .checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from .dataset_folder import case_name

LOG_FILE = "pretrain_log.jsonl"
ARCHITECTURE_DEFAULTS = {"hymamba": {}, "hymamba_small": SMALL_VARIANT}


@dataclass(frozen=True)
class PretrainConfig:
    epochs: int = 100
    batch_size: int = 2
    learning_rate: float = 1e-4
    warmup_epochs: int = 40
    weight_decay_start: float = 0.04
    weight_decay_end: float = 0.2
    gradient_clip: float = 5.0
    mask_ratio: float = 0.75
    decoder_width: Optional[int] = None
    crops_per_volume: int = 1
    flip_axes: tuple[int, ...] = (0, 1, 2)
    seed: int = 0

    @classmethod
    def from_dict(cls, data: dict) -> PretrainConfig:
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise DatasetError(f"unknown pretraining settings in recipe: {', '.join(sorted(unknown))}")
        data = dict(data)
        if "flip_axes" in data:
            data["flip_axes"] = tuple(data["flip_axes"])
        return cls(**data)

    def with_overrides(self, **overrides: Any) -> PretrainConfig:
        return replace(self, **{key: value for key, value in overrides.items() if value is not None})


@dataclass(frozen=True)
class PretrainRecipe:
    id: str
    architecture: str
    architecture_config: dict
    input: InputSpec
    training: PretrainConfig

    @classmethod
    def from_file(cls, path: str | Path) -> PretrainRecipe:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise DatasetError(f"pretraining recipe {path} cannot be read as JSON: {error}") from error
        try:
            architecture = data["architecture"]
            recipe = cls(id=data["id"], architecture=architecture["name"],
                         architecture_config=dict(architecture.get("config", {})),
                         input=InputSpec.from_dict(data["input"]),
                         training=PretrainConfig.from_dict(data.get("pretraining", {})))
        except (KeyError, TypeError) as error:
            raise DatasetError(f"pretraining recipe {path} lacks or mistypes {error}") from error
        if recipe.architecture not in ARCHITECTURE_DEFAULTS:
            raise DatasetError(f"pretraining needs a HyMamba architecture ({', '.join(ARCHITECTURE_DEFAULTS)}), "
                               f"the recipe names {recipe.architecture!r}")
        return recipe

    def encoder_config(self) -> HyMambaConfig:
        """The HyMamba configuration, its img_size the recipe's patch size (the position embedding's grid)."""
        settings = {**ARCHITECTURE_DEFAULTS[self.architecture], **self.architecture_config}
        settings = {key: tuple(value) if isinstance(value, list) else value for key, value in settings.items()}
        settings.setdefault("img_size", tuple(self.input.patch_size))
        settings.setdefault("in_channels", self.input.channels)
        config = HyMambaConfig(**settings)
        if config.input_size != tuple(self.input.patch_size):
            raise DatasetError(f"the recipe's patch size {tuple(self.input.patch_size)} differs from the "
                               f"architecture's img_size {config.input_size}")
        return config


def find_volumes(folder: str | Path) -> list[Path]:
    """imagesTr/ of an nnU-Net-style dataset (labels ignored), or the volumes directly in a plain folder."""
    folder = Path(folder)
    source = folder / "imagesTr" if (folder / "dataset.json").is_file() and (folder / "imagesTr").is_dir() else folder
    if not source.is_dir():
        raise DatasetError(f"{folder} is not a folder")
    volumes = sorted(path for path in source.iterdir()
                     if full_suffix(path) in VOLUME_SUFFIXES and not path.name.startswith("."))
    if not volumes:
        raise DatasetError(f"{source} holds no volumes ({', '.join(sorted(VOLUME_SUFFIXES))})")
    return volumes


def select_cases(volumes: list[Path], names: list[str]) -> list[Path]:
    """The volumes of the named cases, so pre-training can leave a split's validation cases unseen."""
    by_name = {case_name(path): path for path in volumes}
    missing = sorted(set(names) - set(by_name))
    if missing:
        raise DatasetError(f"{len(missing)} cases of the split have no volume: {', '.join(missing[:5])}")
    return [by_name[name] for name in sorted(set(names))]


def prepare_volumes(paths: list[Path], spec: InputSpec) -> list[np.ndarray]:
    return [prepare_image(read_image(path), spec, name=path.name).array for path in paths]


def crop_transforms(patch_size: tuple[int, ...], flip_axes: tuple[int, ...]) -> mt.Compose:
    steps: list = [mt.SpatialPadd("image", spatial_size=patch_size),
                   mt.RandSpatialCropd("image", roi_size=patch_size, random_size=False)]
    steps += [mt.RandFlipd("image", prob=0.5, spatial_axis=axis) for axis in flip_axes]
    steps.append(mt.EnsureTyped("image", track_meta=False))
    return mt.Compose(steps)


def schedule_at(step: int, total_steps: int, warmup_steps: int, config: PretrainConfig) -> tuple[float, float]:
    """(learning rate, weight decay) at ``step``: warm-up cosine lr, cosine weight decay rising 0.04 -> 0.2."""
    base = config.learning_rate
    if step < warmup_steps:
        lr = base * (0.005 + (1 - 0.005) * step / warmup_steps)
    else:
        progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
        lr = 0.001 * base + (base - 0.001 * base) * 0.5 * (1 + math.cos(math.pi * progress))
    progress = min(step / max(total_steps - 1, 1), 1.0)
    decay = config.weight_decay_end + (config.weight_decay_start - config.weight_decay_end) * 0.5 * (
        1 + math.cos(math.pi * progress))
    return lr, decay


def read_log(output_dir: Path) -> list[dict]:
    log = output_dir / LOG_FILE
    if not log.is_file():
        return []
    records = {}
    for line in log.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            records[record["epoch"]] = record  # a resumed run may log an epoch twice; keep the last
    return [records[epoch] for epoch in sorted(records)]


def pretrain(recipe: PretrainRecipe, volumes: list[Path], output_dir: Path, device: torch.device, *,
             resume: bool = True, log: Callable[[str], None] = print,
             cancel: Optional[CancelToken] = None) -> Path:
    """Run (or resume) the pre-training; return the path of the written encoder file."""
    config, cancel = recipe.training, cancel or CancelToken()
    set_determinism(seed=config.seed)
    output_dir.mkdir(parents=True, exist_ok=True)
    arrays = prepare_volumes(volumes, recipe.input)
    log(f"{len(arrays)} volumes prepared")
    model = MambaMIM(recipe.encoder_config(), MambaMIMConfig(config.mask_ratio, config.decoder_width)).to(device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate,
                                  weight_decay=config.weight_decay_start)
    transforms = crop_transforms(tuple(recipe.input.patch_size), config.flip_axes)
    data = Dataset([{"image": array} for array in arrays for _ in range(config.crops_per_volume)], transforms)
    steps_per_epoch = math.ceil(len(data) / config.batch_size)
    total_steps, warmup_steps = steps_per_epoch * config.epochs, steps_per_epoch * config.warmup_epochs
    state: dict[str, Any] = {"epoch": 0, "step": 0}
    if resume and has_checkpoint(output_dir):
        state = load_checkpoint(output_dir, model, optimizer)
        log(f"resumed from epoch {state['epoch']} (step {state['step']})")
    with (output_dir / LOG_FILE).open("a", encoding="utf-8") as log_file:
        for epoch in range(state["epoch"], config.epochs):
            transforms.set_random_state(seed=config.seed + epoch)
            loader = DataLoader(data, batch_size=config.batch_size, shuffle=True, num_workers=0,
                                generator=torch.Generator().manual_seed(config.seed + epoch))
            model.train()
            losses, started = [], time.time()
            for batch in loader:
                cancel.raise_if_cancelled()
                lr, decay = schedule_at(state["step"], total_steps, warmup_steps, config)
                for group in optimizer.param_groups:
                    group["lr"], group["weight_decay"] = lr, decay
                loss, _, _ = model(batch["image"].to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.gradient_clip)
                optimizer.step()
                state["step"] += 1
                losses.append(float(loss.detach()))
            record = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "seconds": round(time.time() - started, 1),
                      "lr": lr, "weight_decay": decay}
            state["epoch"] = epoch + 1
            save_checkpoint(output_dir, model, optimizer, state)
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()
            log(f"epoch {epoch + 1}/{config.epochs} reconstruction loss {record['loss']:.4f} ({record['seconds']} s)")
    return export_encoder(recipe, model, output_dir, volumes, str(device))


def export_encoder(recipe: PretrainRecipe, model: MambaMIM, output_dir: Path, volumes: list[Path],
                   device: str) -> Path:
    """``<id>.encoder.safetensors`` (HyMamba encoder keys) and ``<id>.encoder.json`` describing it."""
    weights_path = output_dir / f"{recipe.id}.encoder.safetensors"
    spec = save_state_dict(model.encoder_state_dict(), weights_path)
    history = read_log(output_dir)
    description = {
        "id": recipe.id,
        "method": "MambaMIM (masked image modelling with state space token interpolation)",
        "architecture": {"name": recipe.architecture, "config": recipe.encoder_config().to_dict()},
        "input": {**asdict(recipe.input), "intensity": asdict(recipe.input.intensity)},
        "pretraining": asdict(recipe.training),
        "volumes": len(volumes),
        "cases": [case_name(path) for path in volumes],
        "device": device,
        "weights": spec.to_dict(),
        "losses": [record["loss"] for record in history],
        "usage": "mobileuvit-segment train ... --init-weights <this .safetensors> (missing keys: decoder.*)",
    }
    write_text_atomically(output_dir / f"{recipe.id}.encoder.json", json.dumps(description, indent=2) + "\n")
    return weights_path
