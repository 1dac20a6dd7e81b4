"""How a 2D model holds up when its held-out pictures look as if another device had taken them.

A model trained on one collection (Kvasir-SEG for ``colon-polyp``) meets frames from other endoscopes, processors and
settings. Where no second collection can be had (none is in ``shared/data`` and nothing can be downloaded here),
this study measures the next best thing: the model's held-out pictures, each re-rendered under one acquisition
shift at a time (exposure, contrast, white balance, optical blur, stronger JPEG compression, half the resolution),
evaluated with the project's own ``evaluate`` against the unchanged manual masks. A large drop under a shift says
the model leans on that property of its training collection. It is a proxy, not a substitute, for a second dataset.

    python studies/picture_shifts.py ../shared/data/kvasir-seg --model colon-polyp --output ../runs/shifts

writes ``studies/results/picture_shifts_<model>.json``, which ``tools/readme_tables.py`` renders into the README.
Importing this module does not import PyTorch (the README generator uses :func:`markdown`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np
import SimpleITK as sitk

if TYPE_CHECKING:  # the module stays torch-free for the README generator
    from MobileUViTSegmentLib.training.image_folder import ImageFolderDataset

REPOSITORY = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPOSITORY / "studies" / "results"


def _gamma(power: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda pixels: 255.0 * (pixels / 255.0) ** power


def _contrast(pixels: np.ndarray) -> np.ndarray:
    mean = pixels.mean(axis=(0, 1), keepdims=True)
    return mean + 0.6 * (pixels - mean)


def _warmer(pixels: np.ndarray) -> np.ndarray:
    if pixels.shape[-1] != 3:
        return pixels
    return pixels * np.array([1.15, 1.0, 0.85])


def _blur(pixels: np.ndarray) -> np.ndarray:
    channels = [sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(sitk.GetImageFromArray(pixels[..., c]), 2.0))
                for c in range(pixels.shape[-1])]
    return np.stack(channels, axis=-1)


# name -> (what it imitates, pixel change on float RGB/grey in [0, 255]); "jpeg" and "half" change the file or grid
SHIFTS: dict[str, tuple[str, Optional[Callable[[np.ndarray], np.ndarray]]]] = {
    "darker": ("under-exposed: gamma 1.5", _gamma(1.5)),
    "brighter": ("over-exposed: gamma 0.67", _gamma(1 / 1.5)),
    "low-contrast": ("contrast 0.6 around the picture's mean", _contrast),
    "warmer": ("another white balance: red x1.15, blue x0.85 (colour pictures only)", _warmer),
    "blur": ("softer optics: Gaussian blur, sigma 2 pixels", _blur),
    "jpeg": ("heavier compression: JPEG quality 25", None),
    "half-resolution": ("a lower-resolution sensor: half the pixels along each axis", None),
}


def _as_pixels(image: sitk.Image) -> np.ndarray:
    array = sitk.GetArrayFromImage(image).astype(np.float64)
    return array if image.GetNumberOfComponentsPerPixel() > 1 else array[..., None]


def _to_image(pixels: np.ndarray) -> sitk.Image:
    pixels = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    return sitk.GetImageFromArray(pixels, isVector=True) if pixels.shape[-1] > 1 else sitk.GetImageFromArray(
        pixels[..., 0])


def _half(image: sitk.Image, interpolator: int) -> sitk.Image:
    size = [max(1, extent // 2) for extent in image.GetSize()]
    spacing = [old * extent / new for old, extent, new in zip(image.GetSpacing(), image.GetSize(), size)]
    source = image if interpolator == sitk.sitkNearestNeighbor else sitk.SmoothingRecursiveGaussian(image, 0.5)
    return sitk.Resample(source, size, sitk.Transform(), interpolator, image.GetOrigin(), spacing,
                         image.GetDirection(), 0, image.GetPixelID())


def write_shifted(pictures: ImageFolderDataset, ids: list[str], shift: str, target: Path) -> Path:
    """``target`` as a 2D dataset folder: the pictures of ``ids`` under ``shift``, their masks unchanged (on the
    half-resolution grid: nearest-neighbour, binarised first where the mask is a JPEG), and ``splits/ids.txt``.

    ``pictures`` is the dataset as :func:`read_image_folder` found it, read once by the caller for every shift."""
    dataset = pictures.folder
    change = SHIFTS[shift][1]
    for sub in ("images", "masks", "splits"):
        (target / sub).mkdir(parents=True, exist_ok=True)
    for name in ids:
        case = pictures.case(name)
        if case.label is None:
            raise SystemExit(f"{dataset / 'masks'} has no mask named {name}")
        picture, mask = sitk.ReadImage(str(case.image)), case.label
        if shift == "half-resolution":
            picture = _half(picture, sitk.sitkLinear)
            mask_image = sitk.ReadImage(str(mask))
            if mask_image.GetNumberOfComponentsPerPixel() > 1:
                mask_image = sitk.VectorIndexSelectionCast(mask_image, 0)
            if mask.suffix.lower() in (".jpg", ".jpeg"):
                mask_image = sitk.Cast(mask_image > 127, sitk.sitkUInt8) * 255
            sitk.WriteImage(_half(mask_image, sitk.sitkNearestNeighbor), str(target / "masks" / f"{name}.png"))
        else:
            (target / "masks" / mask.name).write_bytes(mask.read_bytes())
        if change is not None:
            picture = _to_image(change(_as_pixels(picture)))
        if shift == "jpeg":
            sitk.WriteImage(picture, str(target / "images" / f"{name}.jpg"), useCompression=True,
                            compressionLevel=25)
        else:
            sitk.WriteImage(picture, str(target / "images" / f"{name}.png"))
    if (dataset / "dataset.json").is_file():
        (target / "dataset.json").write_bytes((dataset / "dataset.json").read_bytes())
    (target / "splits" / "ids.txt").write_text("\n".join(ids) + "\n", encoding="utf-8")
    return target


def held_out_ids(card: dict, card_folder: Path, pictures: ImageFolderDataset) -> tuple[list[str], str]:
    """The card's held-out pictures and where they are listed: its recorded id list (in the dataset's ``splits/``),
    else the validation part of its split file."""
    from MobileUViTSegmentLib.training.image_folder import read_id_list  # imports PyTorch: only when run

    validation = card.get("metrics", {}).get("validation", {})
    if "id_list" in validation:
        return read_id_list(validation["id_list"], pictures), validation["id_list"]
    split = json.loads((card_folder / card["training"]["split_file"]).read_text(encoding="utf-8"))
    return list(split["validation"]), card["training"]["split_file"]


def run_study(args: argparse.Namespace) -> dict:
    from MobileUViTSegmentLib.catalog import Catalog  # only when the study runs
    from MobileUViTSegmentLib.cli import main
    from MobileUViTSegmentLib.training.image_folder import read_image_folder

    model = Catalog().get(args.model)
    card = json.loads((model.folder / f"{model.id}.card.json").read_text(encoding="utf-8"))
    pictures = read_image_folder(args.dataset)
    ids, source = held_out_ids(card, model.folder, pictures)
    common = ["--model", args.model, "--device", args.device] + (["--threads", str(args.threads)]
                                                                 if args.threads else [])
    args.output.mkdir(parents=True, exist_ok=True)
    original_listing = args.output / "original-ids.txt"
    original_listing.write_text("\n".join(ids) + "\n", encoding="utf-8")
    rows = []
    for shift in ["original", *args.shifts]:
        if shift == "original":
            folder, listing = args.dataset, original_listing
        else:
            folder = write_shifted(pictures, ids, shift, args.output / shift)
            listing = folder / "splits" / "ids.txt"
        evaluation = args.output / f"{shift}-evaluation"
        code = main(["evaluate", str(folder), "--id-list", str(listing), "-o", str(evaluation), *common])
        if code != 0:
            raise SystemExit(f"evaluate exited with {code} on the {shift} pictures")
        summary = json.loads((evaluation / "summary.json").read_text(encoding="utf-8"))
        rows.append({"shift": shift, "imitates": "the held-out pictures as they are" if shift == "original"
                     else SHIFTS[shift][0], "cases": summary["cases"],
                     "dice_at_patch_size": summary["mean_dice_at_patch_size"],
                     "iou_at_patch_size": summary["mean_iou_at_patch_size"], "dice": summary["mean_dice"]})
    results = {"model": args.model, "dataset": args.dataset.name, "held_out": source, "cases": len(ids),
               "command": "python studies/picture_shifts.py " + " ".join(args.argv), "rows": rows}
    target = args.results or RESULTS_DIR / f"picture_shifts_{args.model}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return results


def markdown(results: dict) -> str:
    """One table per model: Dice and IoU under each shift and the change from the original pictures."""
    baseline = results["rows"][0]["dice_at_patch_size"]
    lines = [f"`{results['model']}` on its {results['cases']} held-out `{results['dataset']}` pictures "
             f"(`{results['held_out']}`); `{results['command']}`:", "",
             "| pictures | imitates | Dice (input size) | IoU (input size) | Dice change | Dice on own grid |",
             "|---|---|---|---|---|---|"]
    for row in results["rows"]:
        change = row["dice_at_patch_size"] - baseline
        lines.append(f"| {row['shift']} | {row['imitates']} | {row['dice_at_patch_size']:.3f} | "
                     f"{row['iou_at_patch_size']:.3f} | {change:+.3f} | {row['dice']:.3f} |")
    return "\n".join(lines)


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path, help="the model's 2D dataset folder (images/, masks/, splits/)")
    parser.add_argument("--model", required=True, help="a 2D model id")
    parser.add_argument("--output", type=Path, required=True, help="scratch folder for shifted pictures")
    parser.add_argument("--shifts", nargs="+", choices=sorted(SHIFTS), default=list(SHIFTS))
    parser.add_argument("--results", type=Path, help="default studies/results/picture_shifts_<model>.json")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int)
    args = parser.parse_args(argv)
    args.argv = argv
    return args


def main(argv: Optional[list[str]] = None) -> int:
    sys.path.insert(0, str(REPOSITORY / "MobileUViTSegment"))
    run_study(parse_arguments(list(sys.argv[1:] if argv is None else argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
