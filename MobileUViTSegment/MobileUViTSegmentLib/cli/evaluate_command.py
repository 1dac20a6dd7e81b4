"""``evaluate``: Dice, IoU and HD95 per case and per label on a labelled dataset, to CSV and a JSON summary."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from ..catalog import DEFAULT_MODEL_ID, Catalog
from ..devices import resolve_device
from ..errors import DatasetError
from ..evaluation import evaluate_cases, record_in_card, summarize, write_per_case_csv, write_summary
from ..inference.engine import SegmentationOptions, Segmenter
from ..training.dataset_folder import read_split, read_volume_dataset
from .options import add_device_options, apply_thread_option


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="measure a model on labelled cases (Dice, IoU, HD95)",
        description="Segment every labelled case of DATASET (nnU-Net layout) or of one part of a split, compare "
                    "with the reference labels, and write OUTPUT/per_case.csv and OUTPUT/summary.json.")
    parser.add_argument("dataset", type=Path, help="dataset folder (dataset.json, imagesTr/, labelsTr/)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="folder for per_case.csv, summary.json")
    parser.add_argument("--model", default=DEFAULT_MODEL_ID, help="model id or card file")
    parser.add_argument("--split", type=Path, help="split JSON; with --subset, evaluate only that part")
    parser.add_argument("--subset", choices=("validation", "train"), default="validation")
    add_device_options(parser)
    parser.add_argument("--no-postprocess", action="store_true")
    parser.add_argument("--record-in-card", action="store_true",
                        help="write the summary into the model's card file (for model developers)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    apply_thread_option(args)
    card = Catalog().get(args.model)
    dataset = read_volume_dataset(args.dataset)
    labelled = {case.name: case for case in dataset.cases if case.label is not None}
    if args.split:
        names = read_split(args.split, set(labelled))[args.subset]
        subset = args.subset
    else:
        names, subset = sorted(labelled), "all"
    if not names:
        raise DatasetError(f"no labelled cases to evaluate in {args.dataset}")
    device = resolve_device(args.device)
    args.output.mkdir(parents=True, exist_ok=True)
    segmenter = Segmenter(card, device)
    options = SegmentationOptions(postprocess=False if args.no_postprocess else None)

    def report(evaluation) -> None:
        scores = "  ".join(f"{card.label_by_value(value).name} Dice {score.dice:.3f}"
                           for value, score in evaluation.scores.items())
        print(f"{evaluation.case}: {scores}  ({evaluation.seconds:.2f} s)", flush=True)

    cases = [(name, labelled[name].image, labelled[name].label) for name in names]
    evaluations = evaluate_cases(segmenter, cases, options=options, on_case=report)
    summary = summarize(evaluations, card, device)
    summary["subset"] = subset
    write_per_case_csv(evaluations, card, args.output / "per_case.csv")
    write_summary(summary, args.output / "summary.json")
    print(f"mean Dice {summary['mean_dice']:.4f} over {summary['cases']} cases; " + ", ".join(
        f"{name} {figures['dice']['mean']:.4f}" for name, figures in summary["per_label"].items()))
    print(f"written {args.output / 'per_case.csv'} and {args.output / 'summary.json'}")
    if args.record_in_card:
        record_in_card(card.folder / f"{card.id}.card.json", subset, summary,
                       shlex.join(["mobileuvit-segment", *args.argv]))
    return 0
