"""``evaluate``: Dice, IoU and HD95 per case and per label on a labelled dataset, to CSV and a JSON summary.

Volumes (nnU-Net layout) and 2D picture folders (images/ + masks/, as ``train`` reads them); on pictures the papers'
protocol (Dice and IoU per image at the network's input size) is reported beside the figures on the picture's grid.

With ``--prediction FILE --reference FILE`` instead of a dataset, no model runs: the two segmentation files are
compared with the same scores, plus volumes (:mod:`.evaluate_files`). PyTorch and the engine are imported only on
the model path, so that mode (and this module) loads without them.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from ..catalog import DEFAULT_MODEL_ID, Catalog
from ..errors import DatasetError
from ..training.dataset_folder import read_split, read_volume_dataset
from .evaluate_files import is_file_mode, run_files
from .options import add_device_options, apply_thread_option


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="score a model on labelled cases, or compare two segmentation files (Dice, IoU, HD95)",
        description="Segment every labelled case of DATASET (nnU-Net layout, or a 2D folder images/ + masks/) or of "
                    "one part of a split, compare with the reference labels, and write OUTPUT/per_case.csv and "
                    "OUTPUT/summary.json. On 2D pictures the papers' protocol (Dice and IoU per image at the "
                    "network's input size) is reported too. Or, with --prediction and --reference instead of "
                    "DATASET, run no model: compare two segmentation files (label maps or .seg.nrrd; .seg.nrrd "
                    "segments are paired by name) and write OUTPUT/per_label.csv (Dice, IoU, HD95, volumes and "
                    "their difference per label) and OUTPUT/summary.json.")
    parser.add_argument("dataset", type=Path, nargs="?", default=None,
                        help="dataset folder (dataset.json, imagesTr/, labelsTr/; or images/, masks/)")
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help="folder for per_case.csv (per_label.csv when comparing files) and summary.json")
    parser.add_argument("--prediction", type=Path, metavar="FILE",
                        help="compare this segmentation (label map or .seg.nrrd) with --reference; no model runs")
    parser.add_argument("--reference", type=Path, metavar="FILE",
                        help="the reference segmentation (manual, or an earlier run) for --prediction")
    parser.add_argument("--model", default=None,
                        help=f"model id or card file (default {DEFAULT_MODEL_ID}); with --prediction it only "
                             "names the label maps' values")
    parser.add_argument("--split", type=Path, help="split JSON; with --subset, evaluate only that part")
    parser.add_argument("--subset", choices=("validation", "train"), default="validation")
    parser.add_argument("--id-list", type=Path, metavar="FILE",
                        help="2D datasets: evaluate only the ids in this list (a bare name is looked up in "
                             "DATASET/splits/, e.g. busi_val1.txt); --subset names the part it is")
    add_device_options(parser)
    parser.add_argument("--no-postprocess", action="store_true")
    parser.add_argument("--record-in-card", action="store_true",
                        help="write the summary into the model's card file (for model developers)")
    parser.set_defaults(handler=run)


def select_cases(args: argparse.Namespace) -> tuple[list, str, bool]:
    """The labelled cases to evaluate, the name of that subset, and whether they are 2D pictures."""
    from ..training.image_folder import is_image_folder, read_id_list, read_image_folder  # imports PyTorch

    pictures = is_image_folder(args.dataset)
    if pictures:
        dataset = read_image_folder(args.dataset)
    else:
        if args.id_list:
            raise DatasetError("--id-list is for 2D picture folders; for volumes use --split with --subset")
        dataset = read_volume_dataset(args.dataset)
    labelled = {case.name: case for case in dataset.cases if case.label is not None}
    if args.id_list:
        names, subset = read_id_list(args.id_list, dataset), args.subset  # the list says which part it is
    elif args.split:
        names, subset = read_split(args.split, set(labelled))[args.subset], args.subset
    else:
        names, subset = sorted(labelled), "all"
    missing = [name for name in names if name not in labelled]
    if missing:
        raise DatasetError(f"{len(missing)} of the cases to evaluate have no reference mask, e.g. {missing[0]}")
    if not names:
        raise DatasetError(f"no labelled cases to evaluate in {args.dataset}")
    return [labelled[name] for name in names], subset, pictures


def run(args: argparse.Namespace) -> int:
    if is_file_mode(args):
        return run_files(args)
    return run_model(args)


def run_model(args: argparse.Namespace) -> int:
    from ..devices import resolve_device
    from ..evaluation import evaluate_cases, record_in_card, summarize, write_per_case_csv, write_summary
    from ..inference.engine import SegmentationOptions, Segmenter
    from ..picture_evaluation import PATCH_PROTOCOL, evaluate_pictures

    apply_thread_option(args)
    card = Catalog().get(args.model or DEFAULT_MODEL_ID)
    cases, subset, pictures = select_cases(args)
    if pictures != (card.input.spatial_dims == 2):
        raise DatasetError(f"model {card.id} is a {card.input.spatial_dims}D model but {args.dataset} holds "
                           f"{'2D pictures' if pictures else 'volumes'}")
    device = resolve_device(args.device)
    args.output.mkdir(parents=True, exist_ok=True)
    segmenter = Segmenter(card, device)
    options = SegmentationOptions(postprocess=False if args.no_postprocess else None)

    def report(evaluation) -> None:
        scores = "  ".join(f"{card.label_by_value(value).name} Dice {score.dice:.3f}"
                           for value, score in evaluation.scores.items())
        print(f"{evaluation.case}: {scores}  ({evaluation.seconds:.2f} s)", flush=True)

    if pictures:
        evaluations = evaluate_pictures(segmenter, cases, options=options, on_case=report)
    else:
        evaluations = evaluate_cases(segmenter, [(case.name, case.image, case.label) for case in cases],
                                     options=options, on_case=report)
    summary = summarize(evaluations, card, device)
    summary["subset"] = subset
    if args.id_list:
        summary["id_list"] = args.id_list.name
    if pictures:
        summary["patch_size_protocol"] = PATCH_PROTOCOL
    write_per_case_csv(evaluations, card, args.output / "per_case.csv")
    write_summary(summary, args.output / "summary.json")
    print(f"mean Dice {summary['mean_dice']:.4f}, IoU {summary['mean_iou']:.4f} over {summary['cases']} cases; " +
          ", ".join(f"{name} {figures['dice']['mean']:.4f}" for name, figures in summary["per_label"].items()))
    if pictures:
        print(f"at the network's input size (the papers' protocol): mean Dice "
              f"{summary['mean_dice_at_patch_size']:.4f}, IoU {summary['mean_iou_at_patch_size']:.4f}")
    print(f"written {args.output / 'per_case.csv'} and {args.output / 'summary.json'}")
    if args.record_in_card:
        record_in_card(card.folder / f"{card.id}.card.json", subset, summary,
                       shlex.join(["mobileuvit-segment", *args.argv]))
    return 0
