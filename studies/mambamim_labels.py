"""MambaMIM's claim at our scale: does masked pre-training help HyMamba when few cases are labelled?

On the hippocampus data and the split of the shipped ``hippocampus-mri`` model (so the figures sit beside Mobile
U-ViT's on the same validation cases), the study runs, with the project's own commands:

1. ``pretrain``: MambaMIM on the split's training images only, so the validation images stay unseen;
2. four ``train`` runs of HyMamba-small, {from scratch, from the MambaMIM encoder} x {10 %, 100 % of the training
   labels} (``--label-fraction``; the 10 % cases are a seeded subset, the validation cases are the same), each with
   the same number of optimisation steps and of warm-up steps (a 10 % run takes ten times the epochs), the final
   epoch kept;
3. ``evaluate`` of each on the split's validation cases, as for a shipped model;

and writes the results JSON (default ``studies/results/mambamim_hippocampus.json``) that ``tools/readme_tables.py``
renders into the README. Each stage resumes from its checkpoint and a finished stage is skipped, so an interrupted
study goes on when the same command is started again::

    python studies/mambamim_labels.py --output ../runs/mambamim-study --epochs 20 --threads 2

Importing this module does not import PyTorch (the README generator uses :func:`markdown`).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

REPOSITORY = Path(__file__).resolve().parents[1]
MODELS = REPOSITORY / "MobileUViTSegment" / "Resources" / "Models"
RESULTS = REPOSITORY / "studies" / "results" / "mambamim_hippocampus.json"
DEFAULT_DATA = Path(os.environ.get("MOBILEUVIT_DATA", REPOSITORY.parent / "shared" / "data")) / "hippocampus"
DEFAULT_SPLIT = MODELS / "hippocampus-mri.split.json"
PRETRAIN_RECIPE = MODELS / "recipes" / "hymamba-small-pretrain.recipe.json"
SEGMENTATION_RECIPE = MODELS / "recipes" / "hippocampus-mri-hymamba-small.recipe.json"
COMPARED_MODEL = "hippocampus-mri"  # Mobile U-ViT on the same split, shown beside the four runs


@dataclass(frozen=True)
class Run:
    """One fine-tuning run of the study."""

    pretrained: bool
    fraction: float

    @property
    def name(self) -> str:
        return f"{'mambamim' if self.pretrained else 'scratch'}-{round(self.fraction * 100)}pct"


def label_count(train_cases: int, fraction: float) -> int:
    """How many training cases ``train --label-fraction`` keeps (its rule: rounded, at least one)."""
    return max(1, round(train_cases * fraction))


def epochs_for_equal_steps(full_epochs: int, train_cases: int, fraction: float, batch_size: int) -> int:
    """Epochs that give a run on ``fraction`` of the labels as many optimisation steps as ``full_epochs`` on all."""
    full_steps = full_epochs * math.ceil(train_cases / batch_size)
    return math.ceil(full_steps / math.ceil(label_count(train_cases, fraction) / batch_size))


def recipe_with_equal_warmup(recipe_path: Path, train_cases: int, fraction: float, folder: Path) -> Path:
    """The recipe a run on ``fraction`` of the labels trains with: its warm-up as many steps as the 100 % run's.

    The trainer counts warm-up in epochs, and a 10 % epoch is a tenth of the steps, so with the recipe as it is the
    10 % runs would warm up for a tenth of the steps and reach the full learning rate ten times sooner than the 100 %
    runs; the comparison across label fractions would then confound labels with schedule. A run on all labels keeps
    the recipe file itself.
    """
    recipe = _read_json(recipe_path)
    training = recipe["training"]
    warmup = epochs_for_equal_steps(training.get("warmup_epochs", 0), train_cases, fraction, training["batch_size"])
    if fraction >= 1.0 or warmup == training.get("warmup_epochs", 0):
        return recipe_path
    training["warmup_epochs"] = warmup
    folder.mkdir(parents=True, exist_ok=True)
    derived = folder / recipe_path.name
    derived.write_text(json.dumps(recipe, indent=1) + "\n", encoding="utf-8")
    return derived


def _cli(arguments: list[str], log) -> None:
    from MobileUViTSegmentLib.cli import main  # imports PyTorch; only when the study runs

    log("$ mobileuvit-segment " + " ".join(arguments))
    code = main(arguments)
    if code != 0:
        raise SystemExit(f"the study stopped: mobileuvit-segment {arguments[0]} exited with {code}")


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _log_by_epoch(path: Path) -> list[dict]:
    """A JSON-lines training log in epoch order, one record an epoch (a resumed run may log an epoch twice)."""
    by_epoch = {record["epoch"]: record for record in map(json.loads, path.read_text(encoding="utf-8").splitlines())}
    return [by_epoch[epoch] for epoch in sorted(by_epoch)]


def run_study(args: argparse.Namespace, log=print) -> dict:
    """Run (or resume) every stage and return the results (also written to ``args.results``)."""
    pretrain_recipe, recipe = _read_json(args.pretrain_recipe), _read_json(args.recipe)
    split = _read_json(args.split)
    train_cases, batch_size = len(split["train"]), recipe["training"]["batch_size"]
    common = ["--device", args.device] + (["--threads", str(args.threads)] if args.threads else [])

    encoder = args.output / "pretrain" / f"{pretrain_recipe['id']}.encoder.safetensors"
    if not encoder.is_file():
        _cli(["pretrain", str(args.data), "-o", str(encoder.parent), "--recipe", str(args.pretrain_recipe),
              "--split", str(args.split), *(["--epochs", str(args.pretrain_epochs)] if args.pretrain_epochs else []),
              *common], log)
    pretraining = _read_json(encoder.with_name(f"{pretrain_recipe['id']}.encoder.json"))
    pretrain_log = _log_by_epoch(encoder.parent / "pretrain_log.jsonl")

    rows, case_dice = [], {}
    for run in [Run(pretrained, fraction) for fraction in args.fractions for pretrained in (False, True)]:
        folder = args.output / run.name
        card = folder / f"{recipe['card']['id']}.card.json"
        epochs = epochs_for_equal_steps(args.epochs, train_cases, run.fraction, batch_size)
        if not card.is_file():
            run_recipe = recipe_with_equal_warmup(args.recipe, train_cases, run.fraction, folder)
            _cli(["train", str(args.data), "-o", str(folder), "--recipe", str(run_recipe), "--split", str(args.split),
                  "--label-fraction", str(run.fraction), "--epochs", str(epochs),
                  "--validation-every", str(max(1, epochs // 4)),
                  *(["--init-weights", str(encoder)] if run.pretrained else []), *common], log)
        summary = folder / "evaluation" / "summary.json"
        if not summary.is_file():
            _cli(["evaluate", str(args.data), "--model", str(card), "--split", str(args.split), "--subset",
                  "validation", "-o", str(summary.parent), *common], log)
        rows.append(_row(run, _read_json(card), _read_json(summary), batch_size, folder / "train_log.jsonl"))
        case_dice[run] = case_mean_dice(summary.parent / "per_case.csv")

    results = {
        "study": "MambaMIM pre-training vs from scratch, HyMamba-small, 10 % and 100 % of the training labels",
        "command": "python studies/mambamim_labels.py " + " ".join(args.argv),
        "data": args.data.name,
        "split": args.split.name,
        "train_cases": train_cases,
        "validation_cases": len(split["validation"]),
        "pretraining": {"epochs": len(pretrain_log), "volumes": pretraining["volumes"],
                        "seconds": round(sum(record["seconds"] for record in pretrain_log)),
                        "first_loss": round(pretrain_log[0]["loss"], 4),
                        "last_loss": round(pretrain_log[-1]["loss"], 4)},
        "runs": rows,
        "pretraining_effect": [paired_difference(fraction, case_dice[Run(False, fraction)],
                                                 case_dice[Run(True, fraction)]) for fraction in args.fractions],
        "compared": _compared_model(),
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return results


def case_mean_dice(per_case_csv: Path) -> dict[str, float]:
    """Each validation case's Dice averaged over its labels, from ``evaluate``'s per-case CSV (undefined skipped)."""
    by_case: dict[str, list[float]] = {}
    with per_case_csv.open(encoding="utf-8", newline="") as stream:
        for row in csv.DictReader(stream):
            if row["dice"]:
                by_case.setdefault(row["case"], []).append(float(row["dice"]))
    return {case: sum(values) / len(values) for case, values in by_case.items()}


def paired_difference(fraction: float, scratch: dict[str, float], pretrained: dict[str, float]) -> dict:
    """Pre-trained minus from scratch, case by case: whether a gap between two means is more than noise.

    The runs see the same validation cases, so the per-case differences (not the two means) carry the comparison;
    their standard error says how far apart the means could be by chance alone.
    """
    differences = [pretrained[case] - scratch[case] for case in sorted(scratch) if case in pretrained]
    spread = statistics.stdev(differences) / math.sqrt(len(differences)) if len(differences) > 1 else 0.0
    return {"label_fraction": fraction, "cases": len(differences),
            "mean_difference": round(statistics.fmean(differences), 4), "standard_error": round(spread, 4),
            "pretrained_better_cases": sum(difference > 0 for difference in differences)}


def validation_curve(train_log: Path, steps_per_epoch: int) -> list[dict]:
    """Validation mean Dice during a run, by optimisation step (a resumed run may log an epoch twice: the last counts).

    The final figures alone cannot say whether pre-training makes a run learn sooner; the curve can, and runs on
    different label fractions line up on steps, not epochs.
    """
    return [{"epoch": record["epoch"], "step": record["epoch"] * steps_per_epoch,
             "mean_dice": round(record["validation_mean_dice"], 4)}
            for record in _log_by_epoch(train_log) if "validation_mean_dice" in record]


def _row(run: Run, card: dict, summary: dict, batch_size: int, train_log: Path) -> dict:
    training = card["training"]
    steps_per_epoch = math.ceil(training["train_cases"] / batch_size)
    return {
        "run": run.name, "initialisation": "MambaMIM encoder" if run.pretrained else "from scratch",
        "label_fraction": run.fraction, "train_cases": training["train_cases"], "epochs": training["epochs_run"],
        "steps": training["epochs_run"] * steps_per_epoch,
        "training_seconds": round(training["seconds"]),
        "mean_dice": summary["mean_dice"],
        "dice_per_label": {name: figures["dice"]["mean"] for name, figures in summary["per_label"].items()},
        "hd95_mm_per_label": {name: figures["hd95"]["mean"] for name, figures in summary["per_label"].items()},
        "cases": summary["cases"],
        "validation_curve": validation_curve(train_log, steps_per_epoch),
    }


def _compared_model() -> Optional[dict]:
    path = MODELS / f"{COMPARED_MODEL}.card.json"
    if not path.is_file():
        return None
    card = _read_json(path)
    figures = card.get("metrics", {}).get("validation", {})
    return {"model": COMPARED_MODEL, "architecture": card["architecture"]["name"],
            "train_cases": card["training"]["train_cases"], "epochs": card["training"].get("epochs_run"),
            "mean_dice": figures.get("mean_dice"),
            "dice_per_label": {name: values["dice"]["mean"] for name, values in figures.get("per_label", {}).items()}}


def markdown(results: dict) -> str:
    """The README's table of the study (torch-free: the README generator calls it)."""
    pretraining = results["pretraining"]
    lines = [f"`{results['command']}`: {results['train_cases']} training / {results['validation_cases']} validation "
             f"cases of `{results['data']}` (`{results['split']}`, the split of `{COMPARED_MODEL}`). MambaMIM "
             f"pre-training: {pretraining['epochs']} epochs on the {pretraining['volumes']} training images "
             f"({pretraining['seconds'] / 3600:.1f} h; reconstruction loss {pretraining['first_loss']} -> "
             f"{pretraining['last_loss']}). Every run has the same number of optimisation steps and of warm-up "
             "steps; figures are `evaluate` on the validation cases, final epoch.", "",
             "| HyMamba-small | labels | training cases | epochs (steps) | mean Dice | Dice per label | "
             "HD95 mm per label | validation Dice during training (step) | training h |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in results["runs"]:
        per_label = ", ".join(f"{value:.3f}" for value in row["dice_per_label"].values())
        hd95 = ", ".join(f"{value:.2f}" for value in row["hd95_mm_per_label"].values())
        curve = " → ".join(f"{point['mean_dice']:.3f} ({point['step']})" for point in row.get("validation_curve", []))
        lines.append(f"| {row['initialisation']} | {row['label_fraction']:.0%} | {row['train_cases']} | "
                     f"{row['epochs']} ({row['steps']}) | **{row['mean_dice']:.3f}** | {per_label} | {hd95} | "
                     f"{curve} | {row['training_seconds'] / 3600:.1f} |")
    compared = results.get("compared")
    if compared and compared.get("mean_dice") is not None:
        per_label = ", ".join(f"{value:.3f}" for value in compared["dice_per_label"].values())
        lines.append(f"| Mobile U-ViT-3D-S (`{compared['model']}`, shipped) | 100% | {compared['train_cases']} | "
                     f"{compared['epochs']} | **{compared['mean_dice']:.3f}** | {per_label} | | | |")
    effects = [f"{effect['label_fraction']:.0%} of the labels {effect['mean_difference']:+.4f} "
               f"± {effect['standard_error']:.4f} (better on {effect['pretrained_better_cases']} of "
               f"{effect['cases']} cases)" for effect in results.get("pretraining_effect", [])]
    if effects:
        lines += ["", "MambaMIM encoder minus from scratch, paired over the validation cases (each case's Dice "
                  "averaged over its labels; mean ± standard error): " + "; ".join(effects) + "."]
    return "\n".join(lines)


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="hippocampus dataset folder")
    parser.add_argument("--output", type=Path, required=True, help="folder for the runs (checkpoints, cards)")
    parser.add_argument("--split", type=Path, default=DEFAULT_SPLIT)
    parser.add_argument("--pretrain-recipe", type=Path, default=PRETRAIN_RECIPE)
    parser.add_argument("--recipe", type=Path, default=SEGMENTATION_RECIPE)
    parser.add_argument("--epochs", type=int, default=20, help="epochs of a 100 %% run (sets every run's steps)")
    parser.add_argument("--pretrain-epochs", type=int, help="default: the pre-training recipe's")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.1, 1.0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.argv = argv
    return args


def main(argv: Optional[list[str]] = None) -> int:
    sys.path.insert(0, str(REPOSITORY / "MobileUViTSegment"))
    run_study(parse_arguments(list(sys.argv[1:] if argv is None else argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
