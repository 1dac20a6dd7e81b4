"""``train``: train a model on a dataset folder and export its weights and card."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ..devices import resolve_device
from ..errors import DatasetError
from ..training.dataset_folder import label_subset, make_split, read_split, read_volume_dataset, write_split
from ..training.export import export_model
from ..training.image_folder import is_image_folder, read_id_list, read_image_folder
from ..training.recipe import Recipe
from ..training.trainer import Trainer, prepare_cases
from .options import add_device_options, apply_thread_option


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="train a model on a dataset folder (nnU-Net volumes or 2D pictures)",
        description="Train a segmentation (or, by recipe, a reconstruction) model. DATASET holds either volumes in "
                    "the nnU-Net layout (dataset.json, imagesTr/, labelsTr/) or 2D pictures (images/<id>.png|jpg, "
                    "masks/<id>.png|jpg, optional splits/*.txt id lists). The run is checkpointed after every epoch "
                    "and resumes where it stopped when started again with the same output folder. At the end it "
                    "writes <id>.safetensors, <id>.card.json (the model card) and <id>.split.json into OUTPUT.",
    )
    parser.add_argument("dataset", type=Path, help="dataset folder")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder (checkpoints, log, model)")
    parser.add_argument("--recipe", type=Path, help="recipe JSON (card template + training settings); "
                                                    "default: derived from the dataset")
    parser.add_argument("--model-id", default=None, help="id of the model when no recipe is given")
    parser.add_argument("--split", type=Path, help="split JSON with 'train' and 'validation' case lists")
    parser.add_argument("--train-list", type=Path, metavar="FILE",
                        help="2D datasets: text file of training ids, one a line (a bare name is looked up in "
                             "DATASET/splits/); use with --validation-list instead of --split")
    parser.add_argument("--validation-list", type=Path, metavar="FILE", help="2D datasets: validation ids")
    parser.add_argument("--label-fraction", type=float, metavar="F",
                        help="train on a seeded fraction F (0-1] of the training cases, validation unchanged: "
                             "label-efficiency studies (e.g. 0.1 for MambaMIM's 10 %% labels); the split file "
                             "records it")
    parser.add_argument("--init-weights", type=Path, metavar="FILE",
                        help="start from these safetensors weights (loaded non-strictly; not when resuming)")
    parser.add_argument("--init-prefix", default="", metavar="PREFIX",
                        help="prefix the file's tensor names with PREFIX before matching them to the network, "
                             "e.g. 'reconstruction.' to load a trained srsnet_r into srsnet")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--validation-every", type=int)
    add_device_options(parser)
    parser.add_argument("--restart", action="store_true", help="ignore an existing checkpoint and start over")
    parser.set_defaults(handler=run)


def recorded_command(argv: list[str]) -> str:
    """The command as a user would type it to reproduce the run."""
    return shlex.join(["mobileuvit-segment", *argv])


def recorded_working_directory() -> str:
    """Where the command ran, so the relative paths in the recorded command resolve again.

    Relative to the checkout when the run started inside it (the usual case for shipped models), else absolute.
    """
    here = Path.cwd().resolve()
    checkout = Path(__file__).resolve().parents[3]
    try:
        return here.relative_to(checkout).as_posix() or "."
    except ValueError:
        return str(here)


def choose_split(args: argparse.Namespace, dataset, usable: list[str], training) -> tuple[dict, bool]:
    """The train/validation split and whether it was given (else drawn with the recipe's seed)."""
    if args.split and (args.train_list or args.validation_list):
        raise DatasetError("give either --split or --train-list/--validation-list, not both")
    if args.train_list or args.validation_list:
        if not (args.train_list and args.validation_list):
            raise DatasetError("--train-list and --validation-list go together")
        if not hasattr(dataset, "id_lists"):
            raise DatasetError("--train-list/--validation-list are for 2D datasets; volumes take --split")
        split = {"train": read_id_list(args.train_list, dataset),
                 "validation": read_id_list(args.validation_list, dataset)}
        missing = sorted(set(split["train"] + split["validation"]) - set(usable))
        if missing:
            raise DatasetError(f"{len(missing)} listed ids have no mask in masks/: {', '.join(missing[:5])}")
        overlap = sorted(set(split["train"]) & set(split["validation"]))
        if overlap:
            raise DatasetError(f"the id lists put images in both train and validation: {', '.join(overlap[:5])}")
        return split, True
    if args.split:
        return read_split(args.split, set(usable)), True
    return make_split(usable, training.validation_fraction, training.seed), False


def run(args: argparse.Namespace) -> int:
    apply_thread_option(args)
    dataset = read_image_folder(args.dataset) if is_image_folder(args.dataset) else read_volume_dataset(args.dataset)
    recipe = Recipe.from_file(args.recipe) if args.recipe else Recipe.from_dataset(
        dataset, args.model_id or f"{dataset.folder.name.lower()}-model")
    training = recipe.training.with_overrides(epochs=args.epochs, batch_size=args.batch_size,
                                              learning_rate=args.learning_rate, seed=args.seed,
                                              validation_every=args.validation_every)
    recipe = Recipe(card=recipe.card, training=training)
    # A reconstruction learns from every image; segmentation only from labelled ones.
    usable = [case.name for case in dataset.cases if case.label is not None or training.is_reconstruction]
    split, given = choose_split(args, dataset, usable, training)
    if args.label_fraction is not None:
        split = label_subset(split, args.label_fraction, training.seed)
    args.output.mkdir(parents=True, exist_ok=True)
    split_file = args.output / f"{recipe.card['id']}.split.json"
    seeded = not given or args.label_fraction is not None
    write_split(split, split_file, seed=training.seed if seeded else None, source=dataset.folder.name,
                label_fraction=args.label_fraction)
    device = resolve_device(args.device)
    print(f"training {recipe.card['id']} on {device}: {len(split['train'])} training, "
          f"{len(split['validation'])} validation cases, {training.epochs} epochs", flush=True)
    trainer = Trainer(recipe, dataset, split, args.output, device, log=lambda line: print(line, flush=True),
                      show_progress=sys.stderr.isatty(), initial_weights=args.init_weights,
                      initial_prefix=args.init_prefix)
    network = trainer.run(resume=not args.restart)
    validation_cases = prepare_cases(dataset, split["validation"], recipe)
    card_path = export_model(trainer, network, split_file, recorded_command(args.argv), validation_cases,
                             working_directory=recorded_working_directory())
    print(f"model card written to {card_path}")
    return 0
