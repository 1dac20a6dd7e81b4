"""``convert``: an official checkpoint (the papers' own state-dict names) -> our safetensors weights and a model card.

The checkpoint is read without running pickled code (see :mod:`..conversion.loading`), renamed by its format, loaded
strictly into our network, and only then written. The card says where the weights came from and that no figure in
it was measured by this project; labels, modality and the input space come from ``--card-template`` (e.g. the card
of a model trained on the same data) or from the official protocol's defaults.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

from ..card import CARD_SUFFIX, validate_card_dict
from ..conversion import get_format, list_formats
from ..conversion.loading import load_official_state_dict
from ..errors import ModelError, OutputError, WeightsError
from ..image_io import write_text_atomically
from ..models import create_model
from ..training.recipe import GENERIC_CATEGORY, GENERIC_TYPE, PALETTE
from ..weights import load_state_dict, save_state_dict, sha256_of
from .train_command import recorded_command

# The official protocols' input spaces: 2D as the papers' main.py (resize to 256 x 256, 8-bit pictures), 3D as the
# UNETR/BTCV pipeline the Mobile U-ViT authors point to (1.5 x 1.5 x 2 mm, CT window [-175, 250] HU, 96^3 windows).
DEFAULT_INPUTS = {
    2: {"spatial_dims": 2, "spacing": None, "orientation": None, "intensity": {"method": "unit"},
        "patch_size": [256, 256]},
    3: {"spatial_dims": 3, "spacing": [1.5, 1.5, 2.0], "orientation": "RAS",
        "intensity": {"method": "window", "lower": -175.0, "upper": 250.0}, "patch_size": [96, 96, 96]},
}
NOT_MEASURED = "not measured by MobileUViTSegment: these weights were converted, not trained or evaluated here"


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert", help="convert an official checkpoint into weights and a model card",
        description="Convert OFFICIAL_FILE (.pth/.pt/.bin/.ckpt read as weights only, or .safetensors) of the given "
                    "official --format into OUT_DIR/<id>.safetensors and OUT_DIR/<id>.card.json, usable with "
                    "'segment --model OUT_DIR/<id>.card.json' or by adding OUT_DIR to MOBILEUVIT_MODELS_PATH. "
                    "--list-formats shows the formats.")
    parser.add_argument("official_file", type=Path, nargs="?", metavar="OFFICIAL_FILE")
    parser.add_argument("--format", dest="format_name", metavar="NAME", help="official format (see --list-formats)")
    parser.add_argument("-o", "--output", type=Path, metavar="OUT_DIR", help="folder for the weights and the card")
    parser.add_argument("--model-id", default=None, help="id of the converted model (default: from the file name)")
    parser.add_argument("--labels", nargs="+", metavar="NAME", help="names of the foreground classes, in order")
    parser.add_argument("--card-template", type=Path, metavar="CARD.json",
                        help="card whose labels, modality, input space and licences the converted model shares")
    parser.add_argument("--list-formats", action="store_true", help="list the official formats and exit")
    parser.set_defaults(handler=run)


def format_table() -> list[str]:
    names = list_formats()
    width = max(map(len, names), default=0)
    return [f"{name.ljust(width)}  {get_format(name).architecture:<14}  {get_format(name).description}"
            for name in names]


def default_model_id(path: Path) -> str:
    name = path.name.split(".")[0].lower()
    cleaned = "".join(char if char.isalnum() else "-" for char in name).strip("-") or "converted"
    return (cleaned if cleaned[0].isalnum() else f"m{cleaned}")[:63]


def read_template(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ModelError(f"card template {path} cannot be read: {error.strerror}") from error
    except json.JSONDecodeError as error:
        raise ModelError(f"card template {path} is not valid JSON: {error.msg} at line {error.lineno}") from error


def foreground_count(out_channels: int) -> int:
    """One logit is a binary (sigmoid) network with one foreground class; otherwise channel 0 is background."""
    return 1 if out_channels == 1 else out_channels - 1


def build_labels(names: list[str] | None, template_labels: list[dict] | None, count: int) -> list[dict]:
    if names:
        if len(names) != count:
            raise ModelError(f"the checkpoint has {count} foreground class(es) but --labels names {len(names)}")
        by_name = {label["name"]: label for label in template_labels or []}
        return [{**by_name.get(name, {"color": list(PALETTE[index % len(PALETTE)]),
                                      "terminology": {"category": GENERIC_CATEGORY, "type": GENERIC_TYPE}}),
                 "value": index + 1, "name": name} for index, name in enumerate(names)]
    if template_labels:
        if len(template_labels) != count:
            raise ModelError(f"the checkpoint has {count} foreground class(es) but the card template has "
                             f"{len(template_labels)} labels; give --labels")
        return copy.deepcopy(template_labels)
    return build_labels([f"class {value}" for value in range(1, count + 1)], None, count)


def build_card(args: argparse.Namespace, official_format, config: dict, parameters: int, official_sha256: str,
               model_id: str) -> dict:
    """The converted model's card without its weights entry; provenance replaces any figures of the template."""
    template = read_template(args.card_template) if args.card_template else {}
    spatial_dims, channels = config["spatial_dims"], config["in_channels"]
    template_input = template.get("input", {})
    if template_input and template_input.get("spatial_dims") != spatial_dims:
        raise ModelError(f"card template {args.card_template} is for {template_input.get('spatial_dims')}D input but "
                         f"{official_format.name} is a {spatial_dims}D network")
    labels = build_labels(args.labels, template.get("labels"), foreground_count(config["out_channels"]))
    source = (f"Weights converted by 'mobileuvit-segment convert' from an official checkpoint in format "
              f"{official_format.name} ({official_format.description}).")
    card = {
        "id": model_id, "version": "1.0.0",
        "title": f"{model_id} (converted from {official_format.name})",
        "description": f"{source} {NOT_MEASURED[0].upper()}{NOT_MEASURED[1:]}.",
        "task": template.get("task") or f"segmentation of {', '.join(label['name'] for label in labels)}",
        "modality": template.get("modality", "CT" if spatial_dims == 3 else "OT"),
        "labels": labels,
        "architecture": {"name": official_format.architecture, "config": config, "parameters": parameters},
        "input": {**DEFAULT_INPUTS[spatial_dims], **template_input, "channels": channels},
        "inference": template.get("inference", {"postprocessing": {"largest_component": False, "fill_holes": False}}
                                  if spatial_dims == 2 else {}),
        "licenses": template.get("licenses", {"weights": "as the source of the official checkpoint says "
                                                         "(not checked by convert)",
                                              "training_data": "unknown (official checkpoint)"}),
        "training": {
            "source": "converted official checkpoint",
            "official_format": official_format.name,
            "official_file": args.official_file.name,
            "official_sha256": official_sha256,
            "command": recorded_command(args.argv) if hasattr(args, "argv") else None,
            "note": NOT_MEASURED,
        },
        "metrics": {"note": NOT_MEASURED},
        "citations": template.get("citations", []),
    }
    if "reference_figure" in template:
        card["reference_figure"] = template["reference_figure"]
    return card


def run(args: argparse.Namespace) -> int:
    if args.list_formats:
        print("\n".join(format_table()))
        return 0
    if args.official_file is None or args.format_name is None or args.output is None:
        raise ModelError("convert needs OFFICIAL_FILE, --format NAME and -o OUT_DIR (or --list-formats)")
    try:
        official_format = get_format(args.format_name)
    except KeyError as error:
        raise ModelError(str(error.args[0])) from None
    model_id = args.model_id or default_model_id(args.official_file)
    weights_path = args.output / f"{model_id}.safetensors"
    card_path = args.output / f"{model_id}{CARD_SUFFIX}"
    for path in (weights_path, card_path):
        if path.exists():
            raise OutputError(f"{path} already exists; remove it or choose another --model-id")
    if args.output.exists() and not args.output.is_dir():
        raise OutputError(f"output {args.output} is not a folder")

    # Everything is checked in memory before the first byte is written.
    official = load_official_state_dict(args.official_file)
    try:
        converted = official_format.convert(official)
        config = official_format.config_for(official)
        network = create_model(official_format.architecture, **config)
        network.load_state_dict(converted, strict=True)
    except (ValueError, RuntimeError) as error:
        first = (str(error).splitlines() or [""])[0]
        raise WeightsError(f"{args.official_file.name} is not a {official_format.name} checkpoint: {first}") from error
    parameters = sum(parameter.numel() for parameter in network.parameters())
    card = build_card(args, official_format, config, parameters, sha256_of(args.official_file), model_id)
    card["weights"] = {"file": weights_path.name, "sha256": "0" * 64, "size": 1, "dtype": "float32"}
    validate_card_dict(card, "of the converted model")

    args.output.mkdir(parents=True, exist_ok=True)
    spec = save_state_dict(network.state_dict(), weights_path)
    create_model(official_format.architecture, **config).load_state_dict(load_state_dict(weights_path), strict=True)
    card["weights"] = spec.to_dict()
    write_text_atomically(card_path, json.dumps(card, indent=2) + "\n")
    write_text_atomically(weights_path.with_name(weights_path.name + ".sha256"), f"{spec.sha256}  {spec.file}\n")
    print(f"{args.official_file} ({official_format.name}) -> {weights_path} and {card_path}: "
          f"{official_format.architecture}, {parameters:,} parameters, {config['in_channels']} in, "
          f"{config['out_channels']} out. Segment with: mobileuvit-segment segment IMAGE -o OUTPUT --model "
          f"{card_path}")
    return 0
