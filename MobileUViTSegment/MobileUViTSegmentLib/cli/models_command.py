"""``models``: the catalog as a table, or as JSON for machines."""

from __future__ import annotations

import argparse
import json

from ..catalog import Catalog


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("models", help="list the available models",
                                   description="List the models in the catalog with their measured figures.")
    parser.add_argument("--json", action="store_true", help="print the full model cards as JSON")
    parser.set_defaults(handler=run)


def _mean_dice(card) -> str:
    for subset in ("validation", "test"):
        figures = card.metrics.get(subset)
        if figures and figures.get("mean_dice") is not None:
            return f"{figures['mean_dice']:.3f} ({figures['cases']} {subset} cases)"
    return "not measured"


def rows(catalog: Catalog) -> list[list[str]]:
    table = [["id", "task", "modality", "architecture", "parameters", "mean Dice", "CPU s/case"]]
    for card in catalog.cards():
        parameters = card.raw.get("architecture", {}).get("parameters")
        cpu = card.timings.get("cpu_seconds_per_case")
        table.append([card.id, card.task, card.modality, card.architecture,
                      f"{parameters / 1e6:.2f} M" if parameters else "?", _mean_dice(card),
                      f"{cpu:.2f}" if cpu is not None else "?"])
    return table


def run(args: argparse.Namespace) -> int:
    catalog = Catalog()
    if args.json:
        print(json.dumps([card.raw for card in catalog.cards()], indent=2))
        return 0
    table = rows(catalog)
    widths = [max(len(row[column]) for row in table) for column in range(len(table[0]))]
    for index, row in enumerate(table):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        if index == 0:
            print("  ".join("-" * width for width in widths))
    return 0
