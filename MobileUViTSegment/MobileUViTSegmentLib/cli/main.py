"""Entry point: builds the sub-command parser and turns user-facing errors into one line and an exit code.

Each command lives in ``<name>_command.py`` and is imported only when it is needed: the command named on the command
line alone (all of them for ``--help`` or a mistyped name). So ``measure`` and ``evaluate --prediction``, which run
no network, never load PyTorch, and a command's start-up does not pay for the others' imports.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Optional

from ..errors import SegmentationError

COMMANDS = ("segment", "models", "evaluate", "measure", "train", "pretrain", "convert", "export", "weights", "demo",
            "worker", "finetune")
PROGRAM = "mobileuvit-segment"


def command_module(name: str) -> ModuleType:
    """The module of a command: it defines ``add_parser(subparsers)`` and a handler."""
    return importlib.import_module(f"{__package__}.{name}_command")


def build_parser(only: Optional[str] = None) -> argparse.ArgumentParser:
    """The parser of every command, or of the command ``only`` alone."""
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Lightweight medical image segmentation (Mobile U-ViT and relatives), the core of the "
                    "MobileUViTSegment 3D Slicer extension.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        if only is None or name == only:
            command_module(name).add_parser(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
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
