"""Learn from corrections: fine-tune a model on cases a reviewer corrected, measure it before and after, save it anew.

The parent model is never changed: the new network starts from the parent's weights, is trained for a few steps on
the corrected cases with the parent's own recipe (loss, optimiser, augmentation, batch size) at a lower learning rate,
and is saved under a new id, with its own card, in a folder that is not the parent's (by default the per-user local
models folder, which the catalog searches, so the new model appears in the model selector).

Why a lower learning rate (the parent's divided by ``LEARNING_RATE_DIVISOR``, no warm-up, cosine decay to zero): the
parent already sits at a good optimum learned from a large training set; a handful of corrected cases at the full
rate would pull it far towards those few cases (overfitting them and forgetting the rest). A tenth of the rate moves
it towards what the corrections teach (a site's scanner, a reviewer's boundary convention) while staying close.

Honesty of the figures: mean Dice is measured with the engine exactly as ``segment``/``evaluate`` run the model
(native grid, the card's post-processing) on *held-out* corrected cases the fine-tuning never saw, once with the
parent and once with the new weights as saved (same dtype as the parent's). Both go into the new card's ``lineage``,
with the parent's id and weights sha256, the cases used, the date and the exact command.

Atomicity: the run works in a private folder; at the end the weights are moved into the output folder and the card
is written last, atomically, so a killed run never leaves a model the catalog would list. An id that already exists
(in the catalog or as files in the output folder) is refused, never replaced.
"""

from __future__ import annotations

import copy
import json
import math
import platform
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import SimpleITK as sitk
import torch

from ..card import CARD_SUFFIX, ModelCard, card_from_dict, load_card
from ..catalog import Catalog, model_files_exist, next_local_model_id
from ..errors import DatasetError, InputError, ModelError
from ..evaluation import evaluate_cases, summarize
from ..image_io import VOLUME_SUFFIXES, atomic_output, full_suffix, read_image, stem, write_text_atomically
from ..inference.engine import Segmenter
from ..metrics import check_same_grid
from ..model_loading import load_network
from ..progress import CancelToken
from ..resources import local_models_dir, model_search_path, models_dir
from ..weights import save_state_dict, verify_weights
from ..weights_cache import ensure_weights
from .dataset_folder import Case, VolumeDataset, case_name, make_split
from .recipe import Recipe, TrainingConfig
from .trainer import Trainer

LEARNING_RATE_DIVISOR = 10.0
DEFAULT_STEPS = 60
HELD_OUT_FRACTION = 0.25  # of the corrected cases, at least one, when no held-out cases are given
ID_PATTERN = r"^[a-z0-9][a-z0-9-]{1,62}$"
CARD_SECTIONS_NOT_INHERITED = ("weights", "training", "metrics", "lineage")

# Share of the overall progress each stage takes (training dominates).
STAGES = {"checking": 0.04, "evaluating_before": 0.08, "training": 0.76, "evaluating_after": 0.08, "saving": 0.04}


@dataclass(frozen=True)
class CorrectedCase:
    """One reviewed case: the image and the corrected label map on exactly the image's grid."""

    name: str
    image: Path
    label: Path


@dataclass
class FinetuneSettings:
    """What to train and where; ``steps`` wins over ``epochs`` when both are given."""

    parent: str
    cases: list[CorrectedCase]
    held_out: list[CorrectedCase] = field(default_factory=list)
    output: Optional[Path] = None
    new_id: Optional[str] = None
    steps: Optional[int] = DEFAULT_STEPS
    epochs: Optional[int] = None
    learning_rate: Optional[float] = None
    seed: int = 0
    held_out_fraction: float = HELD_OUT_FRACTION
    work_dir: Optional[Path] = None  # where the run's scratch files go (a private folder is made inside)
    command: str = ""
    working_directory: str = "."


@dataclass(frozen=True)
class FinetuneResult:
    card_path: Path
    model_id: str
    before: dict
    after: dict


Reporter = Callable[[str, float, str, dict], None]  # stage, overall fraction, message, extra fields


def ignore_report(stage: str, fraction: float, message: str, extra: dict) -> None:
    """Default reporter."""


# -- reading and checking the cases ------------------------------------------------------------------------------


def read_case_source(source: str | Path) -> list[CorrectedCase]:
    """Corrected cases from a folder (``imagesTr/`` + ``labelsTr/``, nnU-Net's layout, dataset.json optional) or a
    JSON list file (``{"cases": [{"name": ..., "image": ..., "label": ...}]}``, paths relative to the file)."""
    source = Path(source)
    if source.is_file():
        return _cases_from_list(source)
    if not source.is_dir():
        raise DatasetError(f"corrected cases {source} do not exist (give a folder with imagesTr/ and labelsTr/, or a "
                           "JSON list of image and label files)")
    images, labels = source / "imagesTr", source / "labelsTr"
    if not images.is_dir():
        raise DatasetError(f"{source} has no imagesTr/ folder (corrected cases are imagesTr/<case> with "
                           "labelsTr/<case>)")
    label_files = {case_name(path): path for path in labels.iterdir()
                   if full_suffix(path) in VOLUME_SUFFIXES} if labels.is_dir() else {}
    cases = []
    for image in sorted(images.iterdir()):
        if full_suffix(image) not in VOLUME_SUFFIXES or image.name.startswith("."):
            continue
        name = case_name(image)
        if name not in label_files:
            raise DatasetError(f"corrected case {name} has no label file in {labels}")
        cases.append(CorrectedCase(name, image, label_files[name]))
    if not cases:
        raise DatasetError(f"{images} holds no images")
    return cases


def _cases_from_list(path: Path) -> list[CorrectedCase]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = data["cases"] if isinstance(data, dict) else data
        cases = [CorrectedCase(str(entry.get("name") or stem(Path(entry["image"]))),
                               (path.parent / entry["image"]).resolve(), (path.parent / entry["label"]).resolve())
                 for entry in entries]
    except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
        raise DatasetError(f"{path} is not a list of corrected cases (JSON {{\"cases\": [{{\"name\", \"image\", "
                           "\"label\"}]}})") from error
    if not cases:
        raise DatasetError(f"{path} lists no cases")
    return cases


def check_case(case: CorrectedCase, card: ModelCard) -> None:
    """Refuse, with one sentence, a case ``card``'s model cannot learn from: missing or unreadable files, a label
    map on another grid than its image, label values the model does not have, or no labelled voxel at all."""
    for what, path in (("image", case.image), ("label", case.label)):
        if not Path(path).is_file():
            raise DatasetError(f"corrected case {case.name}: the {what} file {path} does not exist")
    image, label = read_image(case.image), read_image(case.label)
    if label.GetNumberOfComponentsPerPixel() != 1:
        raise DatasetError(f"corrected case {case.name}: the label file {case.label.name} is not a label map (it has "
                           f"{label.GetNumberOfComponentsPerPixel()} components per voxel)")
    try:
        check_same_grid(image, label)
    except InputError as error:
        raise DatasetError(f"corrected case {case.name}: the label map is not on the image's grid ({error}); export "
                           "it on the image's exact grid") from error
    values = np.unique(sitk.GetArrayViewFromImage(label))
    known = {0, *(spec.value for spec in card.labels)}
    unknown = sorted(int(value) for value in values if int(value) not in known)
    if unknown:
        raise DatasetError(f"corrected case {case.name}: the label map holds values {unknown} that model {card.id} "
                           f"does not have (its labels are {', '.join(f'{s.value} {s.name}' for s in card.labels)})")
    if not (values > 0).any():
        raise DatasetError(f"corrected case {case.name}: the label map holds no labelled voxel")


def choose_held_out(cases: list[CorrectedCase], held_out: list[CorrectedCase], fraction: float,
                    seed: int) -> tuple[list[CorrectedCase], list[CorrectedCase]]:
    """The cases to train on and the ones to measure on; drawn with ``seed`` when none are given."""
    if held_out:
        train = cases
    else:
        if len(cases) < 2:
            raise DatasetError("at least two corrected cases are needed (one to learn from, one held out to measure "
                               "the improvement on); mark more cases or give --held-out cases")
        split = make_split([case.name for case in cases], fraction, seed)
        if not split["train"]:
            raise DatasetError("the held-out fraction leaves no case to learn from; lower --held-out-fraction")
        by_name = {case.name: case for case in cases}
        train = [by_name[name] for name in split["train"]]
        held_out = [by_name[name] for name in split["validation"]]
    names = [case.name for case in train + held_out]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise DatasetError(f"case names must be unique across the training and held-out cases; repeated: "
                           f"{', '.join(duplicates[:5])}")
    shared = {case.image.resolve() for case in train} & {case.image.resolve() for case in held_out}
    if shared:
        raise DatasetError(f"an image is both a training and a held-out case: {sorted(shared)[0]}")
    return train, held_out


# -- the parent and the new model's identity ---------------------------------------------------------------------


def parent_card(model: str, catalog: Catalog) -> ModelCard:
    card = catalog.get(model)
    if not card.is_segmenter:
        raise ModelError(f"model {card.id} is a {card.kind} network, not a segmenter; only segmentation models can "
                         "learn from corrected segmentations")
    if card.input.spatial_dims != 3:
        raise ModelError(f"model {card.id} is a 2D model; fine-tuning from corrections is available for 3D volume "
                         "models only")
    return card


def parent_training_config(card: ModelCard) -> tuple[TrainingConfig, str]:
    """The parent's recipe settings as its card records them, else the defaults; and which one it was."""
    recorded = card.training.get("config")
    if isinstance(recorded, dict):
        try:
            return TrainingConfig.from_dict(recorded), f"the parent's recipe (card of {card.id})"
        except (DatasetError, TypeError, ValueError):
            pass
    return TrainingConfig(), f"the default recipe (the card of {card.id} records no usable training settings)"


def check_new_id(model_id: str, output: Path, catalog: Catalog) -> None:
    if not re.match(ID_PATTERN, model_id):
        raise ModelError(f"model id {model_id!r} is not valid: use 2 to 63 lower-case letters, digits and dashes, "
                         "starting with a letter or digit")
    if model_id in catalog.ids() or model_files_exist(output, model_id):
        raise ModelError(f"a model with id {model_id!r} already exists; choose another id (models are never "
                         "replaced)")


def check_output_folder(output: Path, parent: ModelCard) -> None:
    """Refuse the bundled models folder and the parent's folder, except the local models folder: everything there
    was made on this machine under ids that are never reused, so a model improved again goes beside its parent."""
    resolved = output.resolve()
    protected = {models_dir().resolve(): "the bundled models folder",
                 parent.folder.resolve(): f"the folder of the parent model {parent.id}"}  # the parent's wins
    protected.pop(local_models_dir().resolve(), None)
    if resolved in protected:
        raise ModelError(f"the output folder {output} is {protected[resolved]}; a fine-tuned model goes into another "
                         "folder (by default the local models folder), so the original is never touched")


# -- the run -----------------------------------------------------------------------------------------------------


class _StageReporter:
    """Maps (stage, fraction within it) to one overall fraction and hands it to the reporter."""

    def __init__(self, report: Reporter):
        self._report = report
        self._starts, start = {}, 0.0
        for stage, share in STAGES.items():
            self._starts[stage] = start
            start += share

    def __call__(self, stage: str, fraction: float, message: str = "", **extra) -> None:
        overall = self._starts[stage] + STAGES[stage] * min(max(fraction, 0.0), 1.0)
        self._report(stage, round(overall, 4), message, extra)


def evaluate_held_out(card: ModelCard, cases: list[CorrectedCase], device: torch.device,
                      on_case: Callable[[int], None]) -> tuple[dict, dict]:
    """The engine's figures on ``cases`` (as ``evaluate`` measures them): the full summary and a compact one."""
    done = []

    def counted(_evaluation) -> None:
        done.append(_evaluation)
        on_case(len(done))

    segmenter = Segmenter(card, device)
    evaluations = evaluate_cases(segmenter, [(case.name, case.image, case.label) for case in cases], on_case=counted)
    summary = summarize(evaluations, card, device)
    compact = {
        "mean_dice": summary["mean_dice"],
        "dice_per_label": {name: figures["dice"]["mean"] for name, figures in summary["per_label"].items()},
        "dice_per_case": {evaluation.case: round(float(np.mean([score.dice for score in evaluation.scores.values()])),
                                                 4) for evaluation in evaluations},
    }
    return summary, compact


def finetune(settings: FinetuneSettings, device: torch.device, report: Reporter = ignore_report,
             catalog: Optional[Catalog] = None, cancel: Optional[CancelToken] = None) -> FinetuneResult:
    """Fine-tune ``settings.parent`` on the corrected cases and save the new model; see the module docstring."""
    stage = _StageReporter(report)
    catalog = catalog or Catalog()
    stage("checking", 0.0, "checking the parent model and the corrected cases")
    parent = parent_card(settings.parent, catalog)
    train_cases, held_out = choose_held_out(settings.cases, settings.held_out, settings.held_out_fraction,
                                            settings.seed)
    for index, case in enumerate(train_cases + held_out):
        check_case(case, parent)
        stage("checking", (index + 1) / (len(train_cases) + len(held_out)), f"checked {case.name}")
    output = Path(settings.output) if settings.output is not None else local_models_dir()
    check_output_folder(output, parent)
    output.mkdir(parents=True, exist_ok=True)
    model_id = settings.new_id or next_local_model_id(parent.id, output, catalog)
    check_new_id(model_id, output, catalog)
    parent_weights = ensure_weights(parent)  # verified: size and sha256 as the card says
    load_network(parent, torch.device("cpu"))  # refuses weights that do not fit the architecture exactly

    if settings.work_dir is not None:
        Path(settings.work_dir).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{model_id}.", suffix=".partial",
                                 dir=settings.work_dir if settings.work_dir is not None else output))
    try:
        return _run(settings, parent, parent_weights, train_cases, held_out, output, model_id, work, device, stage,
                    cancel or CancelToken())
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(settings: FinetuneSettings, parent: ModelCard, parent_weights: Path, train_cases: list[CorrectedCase],
         held_out: list[CorrectedCase], output: Path, model_id: str, work: Path, device: torch.device,
         stage: _StageReporter, cancel: CancelToken) -> FinetuneResult:
    started = time.time()
    stage("evaluating_before", 0.0, f"measuring {parent.id} on {len(held_out)} held-out cases")
    _, before = evaluate_held_out(parent, held_out, device,
                                  lambda count: stage("evaluating_before", count / len(held_out),
                                                      f"measured {parent.id} on {count}/{len(held_out)} cases"))
    stage("evaluating_before", 1.0, f"{parent.id}: mean Dice {before['mean_dice']:.4f} on the held-out cases",
          mean_dice=before["mean_dice"])

    config, recipe_source = parent_training_config(parent)
    batch_size = max(1, min(config.batch_size, len(train_cases)))
    steps_per_epoch = math.ceil(len(train_cases) / batch_size)
    epochs = math.ceil(settings.steps / steps_per_epoch) if settings.steps else (settings.epochs or 1)
    learning_rate = settings.learning_rate or config.learning_rate / LEARNING_RATE_DIVISOR
    config = config.with_overrides(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                                   warmup_epochs=0, validation_every=epochs, seed=settings.seed)
    template = {key: copy.deepcopy(value) for key, value in parent.raw.items()
                if key not in CARD_SECTIONS_NOT_INHERITED}
    template["id"] = model_id
    recipe = Recipe(card=template, training=config)
    labels = {0: "background", **{label.value: label.name for label in parent.labels}}
    dataset = VolumeDataset(work, tuple(Case(case.name, case.image, case.label) for case in train_cases + held_out),
                            labels, parent.modality, {})
    split = {"train": [case.name for case in train_cases], "validation": [case.name for case in held_out]}
    run_dir = work / "run"
    total_steps = epochs * steps_per_epoch
    seen_epochs: list[dict] = []

    def on_log(line: str) -> None:
        for record in _new_log_records(run_dir, len(seen_epochs)):
            seen_epochs.append(record)
            step = record["epoch"] * steps_per_epoch
            stage("training", record["epoch"] / epochs, f"step {step}/{total_steps}, loss {record['loss']:.4f}",
                  step=step, steps=total_steps, loss=round(record["loss"], 5))
        if not line.startswith("epoch "):
            stage("training", len(seen_epochs) / epochs, line)

    stage("training", 0.0, f"fine-tuning {len(train_cases)} cases for {total_steps} steps at learning rate "
                           f"{learning_rate:g} ({recipe_source})")
    trainer = Trainer(recipe, dataset, split, run_dir, device, log=on_log, cancel=cancel, show_progress=False,
                      initial_weights=parent_weights)
    network = trainer.run(resume=False)
    history = seen_epochs or _new_log_records(run_dir, 0)

    stage("evaluating_after", 0.0, "saving the new weights and measuring them on the held-out cases")
    dtype = parent.weights.dtype
    staged_weights = work / f"{model_id}.safetensors"
    spec = save_state_dict(network.state_dict(), staged_weights, dtype)
    date = datetime.now(timezone.utc).isoformat(timespec="seconds")
    card = _new_card(template, parent, spec.to_dict(), settings, config, recipe_source, train_cases, held_out,
                     history, device, date, before)
    staged_card = card_from_dict(card, work, "the new model's card")
    summary_after, after = evaluate_held_out(
        staged_card, held_out, device,
        lambda count: stage("evaluating_after", count / len(held_out), f"measured the new model on {count}/"
                                                                       f"{len(held_out)} cases"))
    card["lineage"]["figures"]["after"] = after
    card["metrics"] = {"held_out": {**summary_after, "subset": "held-out corrected cases", "command": settings.command}}
    card["training"]["seconds"] = round(time.time() - started, 1)
    card_from_dict(card, output, "the new model's card")  # never write a card the catalog would refuse
    stage("evaluating_after", 1.0, f"{model_id}: mean Dice {after['mean_dice']:.4f} on the held-out cases (was "
                                   f"{before['mean_dice']:.4f})", mean_dice=after["mean_dice"])

    stage("saving", 0.0, f"saving {model_id} into {output}")
    cancel.raise_if_cancelled()
    check_new_id(model_id, output, Catalog(_catalog_folders(output)))  # nobody took the id meanwhile
    weights_path = output / spec.file
    with atomic_output(weights_path) as temporary:  # the weights first: without a card they are never listed
        shutil.copyfile(staged_weights, temporary)
    card_path = output / f"{model_id}{CARD_SUFFIX}"
    write_text_atomically(card_path, json.dumps(card, indent=2) + "\n")
    verify_weights(weights_path, load_card(card_path).weights)
    stage("saving", 1.0, f"saved {model_id}")
    return FinetuneResult(card_path, model_id, before, after)


def _catalog_folders(output: Path) -> list[Path]:
    return [*model_search_path(), output]


def _new_log_records(run_dir: Path, already: int) -> list[dict]:
    """Epoch records the trainer appended to its ``train_log.jsonl`` since ``already`` were read."""
    log = run_dir / "train_log.jsonl"
    if not log.is_file():
        return []
    lines = [line for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [json.loads(line) for line in lines[already:]]


def _new_card(template: dict, parent: ModelCard, weights: dict, settings: FinetuneSettings, config: TrainingConfig,
              recipe_source: str, train_cases: list[CorrectedCase], held_out: list[CorrectedCase],
              history: list[dict], device: torch.device, date: str, before: dict) -> dict:
    card = copy.deepcopy(template)
    count = len(train_cases)
    card["version"] = "1.0.0"
    card["title"] = f"{parent.title} (improved locally)"
    card["description"] = (f"{parent.description} Fine-tuned on this computer from {parent.id} on {count} corrected "
                           f"case{'s' if count != 1 else ''} ({date[:10]}); see its lineage.")
    card["weights"] = weights
    card["licenses"] = {**card.get("licenses", {}),
                        "fine_tuning_data": "the user's own corrected cases, kept on this computer"}
    card["training"] = {
        "kind": "fine-tuning from corrected cases",
        "command": settings.command,
        "working_directory": settings.working_directory,
        "parent": parent.id,
        "recipe": recipe_source,
        "config": config.to_dict(),
        "train_cases": count,
        "held_out_cases": len(held_out),
        "steps": len(history) * math.ceil(count / config.batch_size),
        "epochs_run": len(history),
        "final_loss": history[-1]["loss"] if history else None,
        "model_space_held_out_dice": next((record["validation_dice"] for record in reversed(history)
                                           if "validation_dice" in record), None),
        "selection": "final step (no selection on the held-out cases)",
        "device": str(device),
        "platform": f"{platform.system()} {platform.machine()}, torch {torch.__version__}",
    }
    card["lineage"] = {
        "parent": {"id": parent.id, "version": parent.version, "title": parent.title,
                   "weights_sha256": parent.weights.sha256},
        "cases": [case.name for case in train_cases],
        "held_out_cases": [case.name for case in held_out],
        "figures": {"before": before, "after": {"mean_dice": before["mean_dice"]}},  # "after" is measured next
        "date": date,
        "command": settings.command,
    }
    card["metrics"] = {}
    return card
