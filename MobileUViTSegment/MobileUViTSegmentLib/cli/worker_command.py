"""``worker``: serve segmentation requests as JSON lines on stdin/stdout (used by the Slicer module)."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "worker", help="serve segmentation requests over stdin/stdout (JSON lines; used by the Slicer module)",
        description="Long-lived worker process for the Slicer module. See MobileUViTSegmentLib/worker.py for "
                    "the protocol.")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..worker import serve

    if args.threads:
        torch.set_num_threads(args.threads)
    return serve()
