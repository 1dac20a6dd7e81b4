"""``segment --uncertainty/--tta``: where the uncertainty maps go, writing them, and the confidence summary printed.

Kept apart from :mod:`.segment_command` so the segment command stays about inputs and outputs. Each output
``<stem><suffix>`` gets ``<stem>_uncertainty.nii.gz`` beside it (float32 normalised entropy in [0, 1] on the input's
grid) and, with ``--tta`` as well, ``<stem>_disagreement.nii.gz`` (fraction of flip passes that disagree);
definitions in :mod:`..confidence`. ``--probabilities`` writes ``<stem>_probability_<value>.nii.gz`` per label (the
softmax or sigmoid behind the label map, before post-processing).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

from ..card import ModelCard
from ..errors import OutputError
from ..image_io import stem, write_image
from ..inference.engine import SegmentationResult

UNCERTAINTY_SUFFIX = "_uncertainty.nii.gz"
DISAGREEMENT_SUFFIX = "_disagreement.nii.gz"
PROBABILITY_PREFIX = "probability_"
PRINTED_REVIEW_ITEMS = 5


def add_confidence_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--uncertainty", action="store_true",
                        help=f"also write <output stem>{UNCERTAINTY_SUFFIX} (normalised entropy, 0..1) beside each "
                             f"output, and <output stem>{DISAGREEMENT_SUFFIX} with --tta")
    parser.add_argument("--tta", action="store_true",
                        help="test-time augmentation: average the probabilities over mirrored passes (along the "
                             "axes the model was trained mirrored; slower, one pass per axis more)")
    parser.add_argument("--probabilities", action="store_true",
                        help="also write <output stem>_probability_<label value>.nii.gz per label: the probability "
                             "(0..1) behind the label map, before post-processing")


def map_paths(target: Path, args: argparse.Namespace, card: Optional[ModelCard] = None) -> dict[str, Path]:
    """Which maps to write for the output ``target``: {"uncertainty": path[, "disagreement": path]}, plus
    {"probability_<value>": path} per label of ``card`` with ``--probabilities``."""
    paths: dict[str, Path] = {}
    if args.uncertainty:
        paths["uncertainty"] = target.parent / f"{stem(target)}{UNCERTAINTY_SUFFIX}"
        if args.tta:
            paths["disagreement"] = target.parent / f"{stem(target)}{DISAGREEMENT_SUFFIX}"
    if getattr(args, "probabilities", False) and card is not None:
        for label in card.labels:
            paths[f"{PROBABILITY_PREFIX}{label.value}"] = (target.parent /
                                                           f"{stem(target)}_{PROBABILITY_PREFIX}{label.value}.nii.gz")
    return paths


def check_map_paths(inputs: list[Path], targets: list[Path], args: argparse.Namespace,
                    card: Optional[ModelCard] = None) -> None:
    """Refuse, before the network runs, maps that would overwrite an input or another output."""
    taken = {path.resolve() for path in [*inputs, *targets]}
    for target in targets:
        for path in map_paths(target, args, card).values():
            if path.resolve() in taken:
                raise OutputError(f"the map {path} would overwrite an input or another output")
            taken.add(path.resolve())


def write_maps(result: SegmentationResult, target: Path, args: argparse.Namespace) -> None:
    for name, path in map_paths(target, args, result.card).items():
        if name.startswith(PROBABILITY_PREFIX):
            image = result.probabilities.get(int(name.removeprefix(PROBABILITY_PREFIX)))
        else:
            image = getattr(result, name)
        if image is not None:
            write_image(image, path)


def print_confidence(result: SegmentationResult) -> None:
    """Confidence per segment the run found, and the first review items (indented under the run's line)."""
    card = result.card
    if not (result.confidence or result.review):
        return
    scores = ", ".join(f"{card.label_by_value(value).name} {score:.2f}" for value, score in result.confidence.items())
    print(f"  confidence: {scores or 'no segment found'}")
    for item in result.review[:PRINTED_REVIEW_ITEMS]:
        ras = ", ".join(f"{value:.1f}" for value in item.centroid_ras)
        print(f"  review {item.rank}: {item.label_name}, {item.voxel_count} voxels, mean uncertainty "
              f"{item.mean_uncertainty:.2f}, slice {item.slice_index}, RAS ({ras})")
