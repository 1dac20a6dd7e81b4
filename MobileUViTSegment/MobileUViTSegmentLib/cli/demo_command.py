"""``demo``: segment the bundled sample case with the default model and show the result.

Writes ``<case>.seg.nrrd`` (open it in Slicer) and ``<case>_overlay.png`` (top row: the model, bottom row: the
manual reference), and prints the Dice against the reference, which the model never trained on.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import SimpleITK as sitk

from ..catalog import DEFAULT_MODEL_ID, Catalog
from ..devices import resolve_device
from ..image_io import read_image
from ..inference.engine import Segmenter
from ..metrics import score_labels
from ..outputs import write_result
from ..overlay import render_overlay_montage
from ..resources import sample_data_dir
from .options import add_device_options, apply_thread_option

SAMPLE_CASE = "hippocampus_046"


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="segment the bundled sample case and draw the result",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=Path("mobileuvit-demo"),
                        help="output folder (default ./mobileuvit-demo)")
    add_device_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    apply_thread_option(args)
    started = time.perf_counter()
    card = Catalog().get(DEFAULT_MODEL_ID)
    image = read_image(sample_data_dir() / f"{SAMPLE_CASE}.nii.gz")
    reference = sitk.Cast(read_image(sample_data_dir() / f"{SAMPLE_CASE}_label.nii.gz"), sitk.sitkUInt8)
    device = resolve_device(args.device)
    result = Segmenter(card, device).segment(image, name=f"{SAMPLE_CASE}.nii.gz")
    args.output.mkdir(parents=True, exist_ok=True)
    segmentation_path = args.output / f"{SAMPLE_CASE}.seg.nrrd"
    overlay_path = args.output / f"{SAMPLE_CASE}_overlay.png"
    write_result(result.labels, card, segmentation_path)
    render_overlay_montage(image, result.labels, card, overlay_path, reference=reference)
    scores = score_labels(result.labels, reference, [label.value for label in card.labels])
    print(f"model {card.id} on {device.type}: segmented {SAMPLE_CASE} in {time.perf_counter() - started:.1f} s "
          f"(inference {result.timings['inferring']:.2f} s)")
    for label in card.labels:
        score = scores[label.value]
        print(f"  {label.name}: Dice {score.dice:.3f}, HD95 {score.hd95:.2f} mm against the manual reference")
    print(f"wrote {segmentation_path} (open in 3D Slicer) and {overlay_path} (top: model, bottom: reference)")
    return 0
