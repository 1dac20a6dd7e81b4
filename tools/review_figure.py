"""Draw the README's review figure from a real run: the bundled case segmented with test-time flips and uncertainty.

Rows: the model's result, the manual reference, the uncertainty map (normalised entropy of the flip-averaged
probabilities, 0 black to 1 white). Beside the picture it records what the panel's Review section shows for the same
run, computed by the same core functions as ``measure`` and ``evaluate --prediction``: the measurement table (with
mean uncertainty and confidence), the comparison with the manual reference, and the first review items, in
``benchmarks/results/review.json``, from which ``tools/readme_tables.py`` writes the README's review tables. Run from
the repository root:

    python tools/review_figure.py && python tools/readme_tables.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY / "MobileUViTSegment"))

import dataclasses  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402

import SimpleITK as sitk  # noqa: E402
import torch  # noqa: E402

from MobileUViTSegmentLib.catalog import DEFAULT_MODEL_ID, Catalog  # noqa: E402
from MobileUViTSegmentLib.comparison import compare_segmentations  # noqa: E402
from MobileUViTSegmentLib.image_io import read_image  # noqa: E402
from MobileUViTSegmentLib.inference.engine import SegmentationOptions, Segmenter  # noqa: E402
from MobileUViTSegmentLib.measurements import measure_segments  # noqa: E402
from MobileUViTSegmentLib.overlay import render_overlay_montage  # noqa: E402
from MobileUViTSegmentLib.resources import sample_data_dir  # noqa: E402

CASE = "hippocampus_046"
FIGURE = REPOSITORY / "Resources" / "Screenshots" / "review-uncertainty.png"
RESULTS = REPOSITORY / "benchmarks" / "results" / "review.json"


def _plain(row) -> dict:
    """A dataclass row as JSON (NaN as null)."""
    return {key: (None if isinstance(value, float) and math.isnan(value) else value)
            for key, value in dataclasses.asdict(row).items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=FIGURE)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    card = Catalog().get(DEFAULT_MODEL_ID)
    image = read_image(sample_data_dir() / f"{CASE}.nii.gz")
    reference = sitk.Cast(read_image(sample_data_dir() / f"{CASE}_label.nii.gz"), sitk.sitkUInt8)
    result = Segmenter(card, torch.device("cpu")).segment(
        image, options=SegmentationOptions(uncertainty=True, tta=True), name=f"{CASE}.nii.gz")
    render_overlay_montage(image, result.labels, card, args.output, reference=reference,
                           uncertainty=result.uncertainty)
    names = {label.value: label.name for label in card.labels}
    measured = measure_segments(result.labels, image, names, uncertainty=result.uncertainty,
                                confidence=result.confidence)
    compared = compare_segmentations(result.labels, reference, names)
    record = {"case": CASE, "model": card.id, "options": "uncertainty, flip TTA", "device": "cpu",
              "command": "python tools/review_figure.py",
              "measurements": [_plain(row) for row in measured], "comparison": [_plain(row) for row in compared],
              "review": [item.to_json() for item in result.review[:5]]}
    args.results.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    for item in result.review[:5]:
        print(f"review {item.rank}: {item.label_name}, {item.voxel_count} voxels, mean uncertainty "
              f"{item.mean_uncertainty:.2f}, slice {item.slice_index}")
    print(f"wrote {args.output} and {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
