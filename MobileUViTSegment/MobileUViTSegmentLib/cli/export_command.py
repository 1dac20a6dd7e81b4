"""``export``: a model's network as an ONNX file for other runtimes.

The window is fixed to the card's patch size (the sliding window's size in 3D, the resize size in 2D); the batch axis
is dynamic where the exporter manages it. The file is checked with ``onnx.checker`` and, before the command reports
success, ONNX Runtime's logits are compared with PyTorch's on a random window.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..catalog import Catalog
from ..errors import OutputError, SegmentationError
from ..inference.onnx_backend import OnnxRuntimeNetwork, export_onnx, missing_onnx_packages
from ..model_loading import load_network
from .options import add_device_options, apply_thread_option

TOLERANCE = 1e-3  # max abs logit difference accepted between ONNX Runtime and PyTorch (float32 reordering only)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "export", help="export a model's network to ONNX",
        description="Export MODEL (a model id or a card file) as ONNX with the card's patch size as the input window "
                    "and a dynamic batch axis where the exporter supports it. Needs the optional packages onnx and "
                    "onnxruntime (pip install 'MobileUViTSegment[onnx]').")
    parser.add_argument("model", metavar="MODEL_ID_OR_CARD")
    parser.add_argument("--onnx", type=Path, required=True, metavar="OUT.onnx", help="ONNX file to write")
    add_device_options(parser, device=False)
    parser.set_defaults(handler=run)


def compare_with_pytorch(network: torch.nn.Module, runtime: OnnxRuntimeNetwork, channels: int,
                         window: tuple[int, ...], batch: int = 2) -> float:
    """Max abs difference of the logits of both backends on the same random batch."""
    sample = torch.randn(batch, channels, *window, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = network(sample).float()
    return float((runtime(sample) - expected).abs().max())


def run(args: argparse.Namespace) -> int:
    apply_thread_option(args)
    missing = missing_onnx_packages()
    if missing:
        raise SegmentationError(f"ONNX export needs {' and '.join(missing)}: pip install onnx onnxruntime")
    if not args.onnx.name.endswith(".onnx"):
        raise OutputError(f"output {args.onnx} must end in .onnx")
    if not args.onnx.parent.is_dir():
        raise OutputError(f"output folder {args.onnx.parent} does not exist")
    card = Catalog().get(args.model)
    network = load_network(card, torch.device("cpu"))
    window = tuple(card.input.patch_size)
    try:
        dynamic = export_onnx(network, card.input.channels, window, args.onnx)
    except (RuntimeError, ValueError, TypeError) as error:
        first = (str(error).splitlines() or [""])[0][:300]
        raise SegmentationError(f"{card.architecture} cannot be exported to ONNX: {first}") from error
    try:
        difference = compare_with_pytorch(network, OnnxRuntimeNetwork(args.onnx), card.input.channels, window)
    except Exception as error:  # noqa: BLE001  (onnxruntime's errors share no base class with ours)
        args.onnx.unlink(missing_ok=True)
        first = (str(error).splitlines() or [""])[0][:300]
        raise SegmentationError(f"ONNX Runtime cannot run the exported {card.architecture}, so nothing was "
                                f"written: {first}") from error
    if not difference <= TOLERANCE:
        args.onnx.unlink(missing_ok=True)
        raise SegmentationError(f"the exported ONNX model's logits differ from PyTorch's by {difference:.2e} (more "
                                f"than {TOLERANCE}); nothing was written")
    batch = "dynamic batch" if dynamic else "fixed batch of 1"
    print(f"{card.id} ({card.architecture}) -> {args.onnx}: input (batch, {card.input.channels}, "
          f"{', '.join(map(str, window))}), {batch}; ONNX Runtime vs PyTorch max abs logit difference "
          f"{difference:.1e}")
    return 0
