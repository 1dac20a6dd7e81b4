"""``weights``: where each model's weights are, download them now, import a file for an offline site, clear the cache.

``segment`` downloads missing weights on first use by itself; this command lets a site prepare a machine before it
goes offline, or bring in a file carried over on a USB stick, and shows where everything is.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..catalog import Catalog
from ..weights_cache import clear_weights_cache, download_weights, find_weights, import_weights, weights_cache_dir
from .download_bar import DownloadBar


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "weights", help="show, download, import or clear model weights",
        description="Model weights are looked up beside the model card, then in the cache "
                    "($MOBILEUVIT_CACHE_DIR/weights, default ~/.cache/mobileuvit-segment/weights). A file enters "
                    "the cache only when its size and sha256 match the card.")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="each model's weights: where they are, or the URL they come from")
    download = actions.add_parser("download", help="download a model's weights into the cache (resumes a partial file)")
    download.add_argument("model", help="model id or card file")
    download.add_argument("--url", help="download from this URL instead of the card's (a mirror)")
    imported = actions.add_parser("import", help="copy a weights file into the cache after checking it is the card's")
    imported.add_argument("model", help="model id or card file")
    imported.add_argument("file", type=Path, help="the .safetensors file")
    actions.add_parser("clear", help="delete every downloaded or imported weights file (bundled models stay)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    catalog = Catalog()
    if args.action == "list":
        for card in catalog.cards():
            path = find_weights(card)
            where = str(path) if path else f"not on this machine ({card.weights.url or 'no download URL'})"
            print(f"{card.id}: {card.weights.file} ({card.weights.size / 1e6:.1f} MB) {where}")
        print(f"cache: {weights_cache_dir()}")
        return 0
    if args.action == "clear":
        files, size = clear_weights_cache()
        print(f"removed {files} files ({size / 1e6:.1f} MB) from {weights_cache_dir()}")
        return 0
    card = catalog.get(args.model)
    if args.action == "import":
        print(f"{args.file} -> {import_weights(card, args.file)} (size and sha256 match model {card.id})")
        return 0
    present = find_weights(card)
    if present is not None and not args.url:
        print(f"{card.id}: already on this machine at {present}")
        return 0
    bar = DownloadBar()
    try:
        path = download_weights(card.weights, url=args.url, progress=bar)
    finally:
        bar.close()
    print(f"{card.id}: {path} (size and sha256 verified)")
    return 0
