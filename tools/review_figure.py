"""Draw the README's review figure from a real run: the bundled case segmented with test-time flips and uncertainty.

Rows: the model's result, the manual reference, the uncertainty map (normalised entropy of the flip-averaged
probabilities, 0 black to 1 white). Prints the confidence per segment and the first review items as the panel lists
them, so the README's text can quote what this run measured. Run from the repository root:

    python tools/review_figure.py            # writes Resources/Screenshots/review-uncertainty.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY / "MobileUViTSegment"))

import SimpleITK as sitk  # noqa: E402
import torch  # noqa: E402

from MobileUViTSegmentLib.catalog import DEFAULT_MODEL_ID, Catalog  # noqa: E402
from MobileUViTSegmentLib.image_io import read_image  # noqa: E402
from MobileUViTSegmentLib.inference.engine import SegmentationOptions, Segmenter  # noqa: E402
from MobileUViTSegmentLib.overlay import render_overlay_montage  # noqa: E402
from MobileUViTSegmentLib.resources import sample_data_dir  # noqa: E402

CASE = "hippocampus_046"
FIGURE = REPOSITORY / "Resources" / "Screenshots" / "review-uncertainty.png"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=FIGURE)
    args = parser.parse_args()
    card = Catalog().get(DEFAULT_MODEL_ID)
    image = read_image(sample_data_dir() / f"{CASE}.nii.gz")
    reference = sitk.Cast(read_image(sample_data_dir() / f"{CASE}_label.nii.gz"), sitk.sitkUInt8)
    result = Segmenter(card, torch.device("cpu")).segment(
        image, options=SegmentationOptions(uncertainty=True, tta=True), name=f"{CASE}.nii.gz")
    render_overlay_montage(image, result.labels, card, args.output, reference=reference,
                           uncertainty=result.uncertainty)
    for value, score in result.confidence.items():
        print(f"confidence {card.label_by_value(value).name}: {score:.3f}")
    for item in result.review[:5]:
        print(f"review {item.rank}: {item.label_name}, {item.voxel_count} voxels, mean uncertainty "
              f"{item.mean_uncertainty:.2f}, slice {item.slice_index}")
    print(f"wrote {args.output.relative_to(REPOSITORY) if args.output.is_relative_to(REPOSITORY) else args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
