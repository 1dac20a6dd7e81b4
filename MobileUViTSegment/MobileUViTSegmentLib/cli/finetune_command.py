"""``finetune``: learn from corrected cases; a new local model with its own card, the parent left untouched.

With ``--progress-json`` every line on stdout is one JSON object, so a front end (the Slicer panel) can follow the run:
``{"event": "progress", "stage": ..., "fraction": 0..1, "message": ..., "loss": ...}`` while it runs (``loss``,
``step`` and ``steps`` during training), then ``{"event": "done", "model_id", "card", "before", "after"}`` or
``{"event": "error", "message"}``. The run is cancelled by killing the process (SIGTERM lets it remove its scratch
folder first); no model appears in the catalog unless the run completed.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from ..devices import resolve_device
from ..errors import Cancelled, DatasetError, SegmentationError
from ..resources import LOCAL_MODELS_VARIABLE
from ..training.finetune import (
    DEFAULT_STEPS,
    HELD_OUT_FRACTION,
    LEARNING_RATE_DIVISOR,
    FinetuneSettings,
    read_case_source,
)
from .options import add_device_options, apply_thread_option
from .train_command import recorded_command, recorded_working_directory


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "finetune", help="improve a model from corrected cases (a new local model; the original is kept)",
        description="Fine-tune MODEL on corrected cases (image + corrected label map pairs) and save the result as a "
                    "new model with its own card (lineage: parent id and weights sha256, cases used, held-out cases, "
                    "mean Dice before and after, date, this command). Mean Dice is measured on held-out corrected "
                    "cases the fine-tuning does not see, before and after. The parent is never modified; the new "
                    "model goes into OUTPUT (default: the per-user local models folder, searched by the catalog; "
                    f"set {LOCAL_MODELS_VARIABLE} to move it).")
    parser.add_argument("--model", required=True, help="parent model: id or card file")
    parser.add_argument("--cases", type=Path, nargs="+", required=True, metavar="SOURCE",
                        help="corrected cases: folders with imagesTr/ and labelsTr/ (nnU-Net layout), or JSON lists "
                             "{\"cases\": [{\"name\", \"image\", \"label\"}]}")
    parser.add_argument("--held-out", type=Path, nargs="+", default=[], metavar="SOURCE",
                        help="corrected cases to measure on and never train on (same forms as --cases); default: "
                             "hold out --held-out-fraction of --cases (at least one)")
    parser.add_argument("--held-out-fraction", type=float, default=HELD_OUT_FRACTION,
                        help=f"share of --cases held out when --held-out is not given (default {HELD_OUT_FRACTION})")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="folder for the new model (default: the local models folder); never the parent's")
    parser.add_argument("--new-id", default=None,
                        help="id of the new model (default <parent>-local-<n>); an existing id is refused")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, default=None,
                        help=f"optimisation steps (rounded up to whole epochs; default {DEFAULT_STEPS})")
    length.add_argument("--epochs", type=int, default=None, help="whole passes over the cases instead of --steps")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help=f"default: the parent's rate / {LEARNING_RATE_DIVISOR:g}, so a few cases adjust the "
                             "model without overwriting what it learned")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="folder for the run's scratch files (default: a hidden folder in OUTPUT); removed at "
                             "the end")
    parser.add_argument("--progress-json", action="store_true",
                        help="report progress as JSON lines on stdout (for front ends)")
    add_device_options(parser)
    parser.set_defaults(handler=run)


def _emit(event: dict) -> None:
    print(json.dumps(event), flush=True)


def _terminate(signum, frame) -> None:
    raise Cancelled("cancelled: the fine-tuning was stopped and no model was saved")


def run(args: argparse.Namespace) -> int:
    from ..training.finetune import finetune  # torch and the trainer load only when the command runs

    apply_thread_option(args)
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, _terminate)  # a polite kill cleans up like Ctrl+C
    json_mode = args.progress_json

    def report(stage: str, fraction: float, message: str, extra: dict) -> None:
        if json_mode:
            _emit({"event": "progress", "stage": stage, "fraction": fraction, "message": message, **extra})
        elif message:
            print(f"[{fraction * 100:5.1f} %] {message}", flush=True)

    try:
        cases = [case for source in args.cases for case in read_case_source(source)]
        held_out = [case for source in args.held_out for case in read_case_source(source)]
        settings = FinetuneSettings(
            parent=args.model, cases=cases, held_out=held_out, output=args.output, new_id=args.new_id,
            steps=args.steps if args.steps is not None else (None if args.epochs else DEFAULT_STEPS),
            epochs=args.epochs, learning_rate=args.learning_rate, seed=args.seed,
            held_out_fraction=args.held_out_fraction, work_dir=args.work_dir,
            command=recorded_command(args.argv), working_directory=recorded_working_directory())
        if (settings.steps is not None and settings.steps < 1) or (settings.epochs is not None and settings.epochs < 1):
            raise DatasetError("--steps and --epochs must be at least 1")
        result = finetune(settings, resolve_device(args.device), report)
    except (SegmentationError, KeyboardInterrupt) as error:
        if json_mode:
            message = str(error) if isinstance(error, SegmentationError) else "interrupted; no model was saved"
            _emit({"event": "error", "message": message})
        raise
    if json_mode:
        _emit({"event": "done", "model_id": result.model_id, "card": str(result.card_path), "before": result.before,
               "after": result.after})
    else:
        print(f"{result.model_id}: mean Dice on {len(result.after['dice_per_case'])} held-out cases "
              f"{result.before['mean_dice']:.4f} -> {result.after['mean_dice']:.4f}; card written to "
              f"{result.card_path}", file=sys.stdout)
    return 0
