"""``pretrain``: MambaMIM self-supervised pre-training of a HyMamba encoder on unlabelled volumes."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..devices import resolve_device
from ..training.dataset_folder import case_name, read_split
from ..training.pretraining import PretrainRecipe, find_volumes, pretrain, select_cases
from .options import add_device_options, apply_thread_option


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "pretrain", help="pre-train a HyMamba encoder with MambaMIM on unlabelled volumes",
        description="Masked-image-modelling pre-training (MambaMIM). DATASET is a dataset folder with dataset.json and "
                    "imagesTr/ (labels are ignored) or a plain folder of volumes. The run is checkpointed after every "
                    "epoch and resumes when started again with the same output folder. At the end it writes "
                    "<id>.encoder.safetensors (HyMamba encoder weights, for train --init-weights) and "
                    "<id>.encoder.json into OUTPUT.",
    )
    parser.add_argument("dataset", type=Path, help="dataset folder or folder of volumes")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder (checkpoints, log, encoder)")
    parser.add_argument("--recipe", type=Path, required=True, help="pretraining recipe JSON (architecture, input, "
                                                                   "pretraining settings)")
    parser.add_argument("--split", type=Path, metavar="FILE",
                        help="split JSON: pre-train only on its 'train' cases, so that the validation cases a "
                             "fine-tuned model is measured on stay unseen")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--seed", type=int)
    add_device_options(parser)
    parser.add_argument("--restart", action="store_true", help="ignore an existing checkpoint and start over")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    apply_thread_option(args)
    recipe = PretrainRecipe.from_file(args.recipe)
    training = recipe.training.with_overrides(epochs=args.epochs, batch_size=args.batch_size,
                                              learning_rate=args.learning_rate, seed=args.seed)
    recipe = PretrainRecipe(recipe.id, recipe.architecture, recipe.architecture_config, recipe.input, training)
    volumes = find_volumes(args.dataset)
    if args.split:
        volumes = select_cases(volumes, read_split(args.split, {case_name(path) for path in volumes})["train"])
    device = resolve_device(args.device)
    print(f"pre-training {recipe.id} ({recipe.architecture}) on {device}: {len(volumes)} volumes, "
          f"{training.epochs} epochs", flush=True)
    encoder = pretrain(recipe, volumes, args.output, device, resume=not args.restart,
                       log=lambda line: print(line, flush=True))
    print(f"encoder weights written to {encoder}")
    return 0
