"""Entry point: builds the sub-command parser and turns user-facing errors into one line and an exit code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Optional

from ..errors import SegmentationError
from . import (
    convert_command,
    demo_command,
    evaluate_command,
    export_command,
    finetune_command,
    models_command,
    pretrain_command,
    segment_command,
    train_command,
    weights_command,
    worker_command,
)

COMMANDS = [segment_command, models_command, evaluate_command, train_command, pretrain_command, convert_command,
            export_command, weights_command, demo_command, worker_command, finetune_command]
PROGRAM = "mobileuvit-segment"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Lightweight medical image segmentation (Mobile U-ViT and relatives), the core of the "
                    "MobileUViTSegment 3D Slicer extension.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # commands record how they were called (model cards keep the exact command)
    try:
        return int(args.handler(args) or 0)
    except SegmentationError as error:
        print(f"{PROGRAM}: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"{PROGRAM}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
