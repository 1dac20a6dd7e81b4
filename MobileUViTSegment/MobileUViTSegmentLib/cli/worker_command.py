"""``worker``: serve segmentation requests as JSON lines on stdin/stdout (used by the Slicer module)."""

from __future__ import annotations

import argparse

from ..worker import serve
from .options import add_device_options, apply_thread_option


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "worker", help="serve segmentation requests over stdin/stdout (JSON lines; used by the Slicer module)",
        description="Long-lived worker process for the Slicer module. See MobileUViTSegmentLib/worker.py for "
                    "the protocol.")
    add_device_options(parser, device=False)  # each request names its device
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    apply_thread_option(args)
    return serve()
