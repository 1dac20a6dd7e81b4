"""``measure``: the per-segment table a radiologist reviews (volume, intensity statistics, confidence), as CSV too.

Definitions in :mod:`..measurements`; the Slicer panel's table is computed by the same functions, so the numbers
are the same. Runs no network and imports no PyTorch.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import SimpleITK as sitk

from ..card import ModelCard
from ..catalog import Catalog
from ..errors import OutputError
from ..grid_checks import on_grid
from ..image_io import read_image
from ..measurements import SegmentMeasurement, measure_segment_masks, measure_segments, write_measurements_csv
from ..segmentation_files import SegmentationFile, read_segmentation_file
from ..tables import rounded, text_table


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "measure", help="per-segment volume, intensity statistics and confidence (table, CSV)",
        description="Measure every segment of SEGMENTATION (a label map, or a Slicer .seg.nrrd whose overlapping "
                    "segments are each measured whole) on IMAGE, the image it was drawn on (same voxel grid): "
                    "voxel count, volume in mL (area in mm² for 2D images), mean, standard deviation, minimum and "
                    "maximum intensity, and with --uncertainty the mean uncertainty and confidence. Prints the "
                    "table; -o also writes it as CSV (empty cells where a value is undefined).")
    parser.add_argument("segmentation", type=Path, metavar="SEGMENTATION",
                        help="label map (.nii.gz, .nii, .nrrd, .mha) or Slicer segmentation (.seg.nrrd)")
    parser.add_argument("--image", type=Path, required=True, metavar="IMAGE",
                        help="the image the segmentation belongs to (file or DICOM folder), on the same voxel grid")
    parser.add_argument("-o", "--output", type=Path, metavar="TABLE.csv", help="also write the table to this CSV")
    parser.add_argument("--model", default=None,
                        help="model id or card file whose label names name a label map's values (default: "
                             "'label N'; a .seg.nrrd names its own segments)")
    parser.add_argument("--uncertainty", type=Path, metavar="MAP",
                        help="uncertainty map written by segment --uncertainty: adds mean uncertainty and "
                             "confidence (mean of 1 - uncertainty) per segment")
    parser.set_defaults(handler=run)


def measure_file(segmentation: SegmentationFile, image: sitk.Image, card: Optional[ModelCard] = None,
                 uncertainty: Optional[sitk.Image] = None) -> list[SegmentMeasurement]:
    """The table of a segmentation file: a label map value by value, a .seg.nrrd segment by segment."""
    segmentation = segmentation.on_grid(image, "the image", "the segmentation")
    if uncertainty is not None:
        uncertainty = on_grid(image, uncertainty, "the image", "the uncertainty map", is_label=False)
    if segmentation.is_seg_nrrd:
        return measure_segment_masks(segmentation.segments(), image, uncertainty)
    return measure_segments(segmentation.layers[0], image, segmentation.label_map_names(card), uncertainty)


def format_measurements(rows: Sequence[SegmentMeasurement]) -> str:
    """The table as the terminal shows it: volume (or area), intensities, and confidence columns when known."""
    is_2d = bool(rows) and all(math.isnan(row.volume_ml) for row in rows)
    header = ["segment", "label", "voxels", "area mm2" if is_2d else "volume mL", "mean", "std", "min", "max"]
    with_confidence = any(row.mean_uncertainty is not None or row.confidence is not None for row in rows)
    if with_confidence:
        header += ["uncertainty", "confidence"]
    lines = []
    for row in rows:
        line = [row.name, str(row.label_value), str(row.voxel_count),
                rounded(row.area_mm2, 1) if is_2d else rounded(row.volume_ml, 3),
                *(rounded(value, 2) for value in (row.intensity_mean, row.intensity_std, row.intensity_min,
                                                  row.intensity_max))]
        if with_confidence:
            line += [rounded(row.mean_uncertainty, 3), rounded(row.confidence, 3)]
        lines.append(line)
    return text_table(header, lines)


def _check_output(args: argparse.Namespace) -> None:
    if args.output is None:
        return
    if args.output.suffix.lower() != ".csv":
        raise OutputError(f"the table {args.output} must be a .csv file")
    inputs = [path for path in (args.segmentation, args.image, args.uncertainty) if path is not None]
    if any(args.output.resolve() == path.resolve() for path in inputs):
        raise OutputError(f"the table {args.output} would overwrite an input")


def run(args: argparse.Namespace) -> int:
    _check_output(args)
    card = Catalog().get(args.model) if args.model else None
    image = read_image(args.image)
    segmentation = read_segmentation_file(args.segmentation)
    uncertainty = read_image(args.uncertainty) if args.uncertainty else None
    rows = measure_file(segmentation, image, card, uncertainty)
    print(f"{args.segmentation} on {args.image}:")
    print(format_measurements(rows))
    if args.output is not None:
        write_measurements_csv(rows, args.output)
        print(f"written {args.output}")
    return 0
