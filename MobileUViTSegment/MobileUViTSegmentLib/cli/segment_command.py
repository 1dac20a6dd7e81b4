"""``segment``: segment one file (``-o`` a file) or several files / a folder (``-o`` a folder).

Everything that can be checked before the network runs is checked first (inputs exist, the model exists, outputs
are writable and never an input), so a bad call fails fast, with one line, having written nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..catalog import DEFAULT_MODEL_ID, Catalog
from ..devices import resolve_device
from ..errors import InputError, OutputError, SegmentationError
from ..image_io import IMAGE_2D_SUFFIXES, VOLUME_SUFFIXES, full_suffix, read_image, stem
from ..inference.engine import SegmentationOptions, Segmenter
from ..outputs import DICOM_SEG_SUFFIX, FORMATS, SUPPORTED_SUFFIXES, write_result
from .confidence_report import add_confidence_options, check_map_paths, print_confidence, write_maps
from .download_bar import DownloadBar
from .options import add_device_options, apply_thread_option


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "segment", help="segment images with a model",
        description="Segment INPUT (a file or a DICOM series folder) into the file OUTPUT, whose suffix picks the "
                    "format (.seg.nrrd: Slicer segmentation with names, colours and terminology; .nii.gz/.nrrd: "
                    "label map; .png: 2D label map; .dcm: DICOM SEG referencing the input series, for a DICOM "
                    "series input only). With several inputs, or a folder of images, OUTPUT is a "
                    "folder and --format picks the format. The model is loaded once.")
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUTPUT")
    parser.add_argument("--model", default=DEFAULT_MODEL_ID, help=f"model id or card file (default {DEFAULT_MODEL_ID})")
    parser.add_argument("--format", choices=sorted(FORMATS), default=None,
                        help="output format for a folder OUTPUT (default seg.nrrd)")
    add_device_options(parser)
    parser.add_argument("--no-postprocess", action="store_true",
                        help="skip largest-component and hole-filling post-processing")
    parser.add_argument("--overlap", type=float, default=None, help="sliding-window overlap (default: card's)")
    add_confidence_options(parser)
    parser.add_argument("--quiet", action="store_true", help="print only errors")
    parser.set_defaults(handler=run)


def is_dicom_folder(path: Path) -> bool:
    import SimpleITK as sitk

    return path.is_dir() and bool(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(path)))


def expand_inputs(inputs: list[Path]) -> tuple[list[Path], bool]:
    """Files and DICOM folders to segment, and whether the call is a batch (several inputs or an image folder)."""
    expanded: list[Path] = []
    batch = len(inputs) > 1
    for path in inputs:
        if not path.exists():
            raise InputError(f"input {path} does not exist")
        if path.is_dir() and not is_dicom_folder(path):
            images = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                            and full_suffix(p) in VOLUME_SUFFIXES + IMAGE_2D_SUFFIXES)
            if not images:
                raise InputError(f"input folder {path} holds no images and no DICOM series")
            expanded.extend(images)
            batch = True
        else:
            expanded.append(path)
    return expanded, batch


def plan_outputs(inputs: list[Path], output: Path, batch: bool, output_format: str | None) -> list[Path]:
    if not batch:
        if output.is_dir():
            raise OutputError(f"output {output} is a folder; give a file name such as case.seg.nrrd, or segment "
                              "several inputs into a folder")
        if output_format and not output.name.endswith(FORMATS[output_format]):
            raise OutputError(f"output {output.name} does not end in {FORMATS[output_format]} as --format says")
        targets = [output]
    else:
        if output.exists() and not output.is_dir():
            raise OutputError(f"output {output} must be a folder when segmenting several inputs")
        suffix = FORMATS[output_format or "seg.nrrd"]
        names = [stem(path) if path.is_file() else path.name for path in inputs]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise OutputError(f"several inputs would write the same output name: {', '.join(duplicates[:3])}")
        targets = [output / f"{name}{suffix}" for name in names]
    resolved_inputs = {path.resolve() for path in inputs}
    for target in targets:
        if target.resolve() in resolved_inputs:
            raise OutputError(f"output {target} is one of the inputs; an input is never overwritten")
        if full_suffix(target) not in SUPPORTED_SUFFIXES:
            raise OutputError(f"cannot write {target.name}: unknown output format; use .seg.nrrd, .nii.gz, .nrrd, "
                              ".png or .dcm")
    check_dicom_seg_outputs(inputs, targets)
    return targets


def check_dicom_seg_outputs(inputs: list[Path], targets: list[Path]) -> None:
    """A DICOM SEG (.dcm) references its input series, so it needs one; refused before the network runs."""
    for source, target in zip(inputs, targets):
        if full_suffix(target) != DICOM_SEG_SUFFIX:
            continue
        if not source.is_dir():  # expand_inputs keeps only DICOM series folders as folders
            raise OutputError(f"cannot write {target.name}: DICOM SEG output (.dcm) needs a DICOM series folder as "
                              f"input, and {source.name} is not one")
        from ..dicom_seg import check_source  # lazily: highdicom is only needed for this format

        check_source(source)


def run(args: argparse.Namespace) -> int:
    apply_thread_option(args)
    inputs, batch = expand_inputs(args.inputs)
    targets = plan_outputs(inputs, args.output, batch, args.format)
    card = Catalog().get(args.model)
    check_map_paths(inputs, targets, args, card)
    device = resolve_device(args.device)
    folder = targets[0].parent
    if batch:
        folder.mkdir(parents=True, exist_ok=True)
    elif not folder.is_dir():
        raise OutputError(f"output folder {folder} does not exist")
    bar = DownloadBar()  # shown only if the weights are downloaded on first use
    try:
        segmenter = Segmenter(card, device, progress=None if args.quiet else bar)
    finally:
        bar.close()
    options = SegmentationOptions(postprocess=False if args.no_postprocess else None, overlap=args.overlap,
                                  uncertainty=args.uncertainty, tta=args.tta, probabilities=args.probabilities)
    failures = 0
    for source, target in zip(inputs, targets):
        started = time.perf_counter()
        try:
            result = segmenter.segment(read_image(source), options=options, name=str(source))
            write_result(result.labels, card, target, source=source)
            write_maps(result, target, args)
        except SegmentationError as error:
            if not batch:
                raise
            failures += 1
            print(f"mobileuvit-segment: error: {error}", file=sys.stderr)
            continue
        if not args.quiet:
            found = ", ".join(card.label_by_value(v).name for v in result.present_labels()) or "nothing"
            print(f"{source} -> {target} ({time.perf_counter() - started:.1f} s on {result.device}; found {found})")
            for note in result.notes:
                print(f"  note: {note}")
            print_confidence(result)
    if failures:
        print(f"mobileuvit-segment: {failures} of {len(inputs)} inputs failed; nothing was written for them",
              file=sys.stderr)
        return 1
    return 0
