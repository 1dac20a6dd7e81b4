"""Command-line options shared by every command that runs a network."""

from __future__ import annotations

import argparse

from ..devices import CHOICES


def add_device_options(parser: argparse.ArgumentParser, *, device: bool = True) -> None:
    """``--device`` and ``--threads``, the same for every command."""
    if device:
        parser.add_argument("--device", choices=CHOICES, default="auto",
                            help="auto picks a CUDA GPU when PyTorch sees one (default auto)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch (default: all cores)")


def apply_thread_option(args: argparse.Namespace) -> None:
    if args.threads:
        import torch  # only here: building the options must not load PyTorch (see ..devices)

        torch.set_num_threads(args.threads)
