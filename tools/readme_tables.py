"""Generate the README's figure tables from their sources, so no figure in the README is typed by hand.

* the model table from the model cards (figures measured by ``evaluate`` on held-out cases),
* the benchmark tables from ``benchmarks/results/cpu.json`` (written by ``benchmarks/benchmark_cpu.py``),
* the reliability section from ``benchmarks/results/reliability.json`` (``tools/reliability_report.py``, which runs
  the reliability tests and keeps what they record),
* the architecture table from ``benchmarks/results/architectures_cpu.json`` (``benchmarks/benchmark_architectures.py``;
  its rows are formatted by ``benchmarks/architecture_report.py``, the same code that prints them),
* the review tables from ``benchmarks/results/review.json`` (``tools/review_figure.py``: measurement and comparison
  of one real run, as the panel's Review section shows them),
* the MambaMIM label study from ``studies/results/mambamim_hippocampus.json`` (``studies/mambamim_labels.py``),
* the acquisition-shift tables from ``studies/results/picture_shifts_<model>.json`` (``studies/picture_shifts.py``).

Each table sits between ``<!-- name -->`` and ``<!-- /name -->`` markers. ``python tools/readme_tables.py``
rewrites them in place; ``--check`` exits non-zero when the README is out of date (a test runs it).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY / "MobileUViTSegment"))
sys.path.insert(0, str(REPOSITORY / "benchmarks"))
sys.path.insert(0, str(REPOSITORY / "studies"))

from architecture_report import describe_run, describe_targets, markdown_table  # noqa: E402
from mambamim_labels import RESULTS as MAMBAMIM_STUDY  # noqa: E402
from mambamim_labels import markdown as mambamim_markdown  # noqa: E402
from picture_shifts import RESULTS_DIR as SHIFT_RESULTS  # noqa: E402
from picture_shifts import markdown as shift_markdown  # noqa: E402
from reliability_report import markdown as reliability_markdown  # noqa: E402

from MobileUViTSegmentLib.catalog import Catalog  # noqa: E402

README = REPOSITORY / "README.md"
BENCHMARK = REPOSITORY / "benchmarks" / "results" / "cpu.json"
ARCHITECTURES = REPOSITORY / "benchmarks" / "results" / "architectures_cpu.json"
RELIABILITY = REPOSITORY / "benchmarks" / "results" / "reliability.json"
REVIEW = REPOSITORY / "benchmarks" / "results" / "review.json"


def _volume_figures(figures: dict) -> tuple[str, str]:
    """The metric column and our figures for a 3D model: Dice per label and HD95 in mm."""
    per_label = figures.get("per_label", {})
    dice = ", ".join(f"{name} {values['dice']['mean']:.3f}" for name, values in per_label.items())
    hd95 = ", ".join(f"{values['hd95']['mean']:.2f}" for values in per_label.values() if values["hd95"]["mean"])
    return (f"Dice, HD95 over {figures.get('cases', '?')} cases",
            f"mean Dice **{figures['mean_dice']:.3f}** ({dice}); HD95 {hd95} mm")


def _picture_figures(figures: dict, patch_size: list[int]) -> tuple[str, str]:
    """The metric column and our figures for a 2D model: the papers' protocol first (IoU and Dice per image at the
    network's input size), then the same on the pictures' own grids."""
    size = " x ".join(map(str, patch_size))
    return (f"IoU, Dice per image at {size} (papers' protocol) over {figures.get('cases', '?')} images",
            f"IoU **{figures['mean_iou_at_patch_size']:.3f}**, Dice **{figures['mean_dice_at_patch_size']:.3f}**; "
            f"on the pictures' own grids IoU {figures['mean_iou']:.3f}, Dice {figures['mean_dice']:.3f}")


def model_table() -> str:
    lines = ["| model | task | data and split | metric (held-out cases) | ours | reference figure | CPU s/case |",
             "|---|---|---|---|---|---|---|"]
    for card in Catalog().cards():
        figures = card.metrics.get("validation", {})
        training = card.training
        split = (f"{training.get('dataset', '?')}: {training.get('train_cases', '?')} train / "
                 f"{training.get('validation_cases', '?')} validation (`{training.get('split_file', '?')}`)")
        if not figures:
            metric, ours = "", "not measured"
        elif card.input.spatial_dims == 2:
            metric, ours = _picture_figures(figures, list(card.input.patch_size))
        else:
            metric, ours = _volume_figures(figures)
        reference = card.raw.get("reference_figure", "")
        cpu = card.timings.get("cpu_seconds_per_case", "?")
        lines.append(f"| `{card.id}` ({card.architecture}, {card.raw['architecture'].get('parameters', 0) / 1e6:.2f} M)"
                     f" | {card.task} | {split} | {metric} | {ours} | {reference} | {cpu} |")
    return "\n".join(lines)


def benchmark_tables() -> str:
    if not BENCHMARK.is_file():
        return "_Run `python benchmarks/benchmark_cpu.py` to produce these figures._"
    report = json.loads(BENCHMARK.read_text(encoding="utf-8"))
    machine = report["machine"]
    lines = [f"Measured by `python benchmarks/benchmark_cpu.py --threads {machine['threads']}` on "
             f"{machine['cpus']} CPU cores ({machine['processor'] or machine['platform']}), one run, medians.", "",
             "| input | `segment`, whole process (s) | inference alone (s) |", "|---|---|---|"]
    for label, result in report["segment"].items():
        lines.append(f"| {label} | {result['whole_process']['median_seconds']:.2f} | "
                     f"{result['engine_stages']['inferring']:.2f} |")
    for window_name, results in report["windows"].items():
        lines += ["", f"| network, one {window_name} window, {machine['threads']} threads | parameters | "
                      "latency (s) | peer / ours | peak memory (MB) |", "|---|---|---|---|---|"]
        for name, result in results.items():
            if "skipped" in result:
                lines.append(f"| {name} | | | | {result['skipped']} |")
            else:
                lines.append(f"| {name} | {result['parameters'] / 1e6:.2f} M | {result['median_seconds']:.3f} | "
                             f"{result['latency_ratio_to_ours']:.1f}x | {result['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def architecture_table(results: Path = ARCHITECTURES) -> str:
    if not results.is_file():
        return "_Run `python benchmarks/benchmark_architectures.py` to produce this table._"
    report = json.loads(results.read_text(encoding="utf-8"))
    return describe_run(report) + "\n\n" + markdown_table(report) + "\n\n" + describe_targets(report)


def reliability_section(results: Path = RELIABILITY) -> str:
    if not results.is_file():
        return "_Run `python tools/reliability_report.py` to produce these figures._"
    return reliability_markdown(json.loads(results.read_text(encoding="utf-8")))


def _number(value, decimals: int, scale: float = 1.0, suffix: str = "") -> str:
    return "–" if value is None else f"{value * scale:.{decimals}f}{suffix}"


def review_tables(results: Path = REVIEW) -> str:
    if not results.is_file():
        return "_Run `python tools/review_figure.py` to produce these tables._"
    run = json.loads(results.read_text(encoding="utf-8"))
    lines = [f"Model `{run['model']}` on `{run['case']}` ({run['options']}, {run['device']}; `{run['command']}`). "
             "Measure (what `measure` and the panel's table give):", "",
             "| segment | voxels | volume mL | intensity mean ± std | min – max | mean uncertainty | confidence |",
             "|---|---|---|---|---|---|---|"]
    for row in run["measurements"]:
        lines.append(f"| {row['name']} | {row['voxel_count']} | {_number(row['volume_ml'], 3)} | "
                     f"{_number(row['intensity_mean'], 1)} ± {_number(row['intensity_std'], 1)} | "
                     f"{_number(row['intensity_min'], 1)} – {_number(row['intensity_max'], 1)} | "
                     f"{_number(row['mean_uncertainty'], 3)} | {_number(row['confidence'], 3)} |")
    lines += ["", "Compare with the manual reference (what `evaluate --prediction --reference` and the panel give):",
              "", "| segment | Dice | IoU | HD95 mm | volume mL | reference mL | difference |",
              "|---|---|---|---|---|---|---|"]
    for row in run["comparison"]:
        lines.append(f"| {row['name']} | {_number(row['dice'], 4)} | {_number(row['iou'], 4)} | "
                     f"{_number(row['hd95'], 2)} | {_number(row['volume_ml'], 3)} | "
                     f"{_number(row['reference_volume_ml'], 3)} | {_number(row['volume_difference_ml'], 3)} mL "
                     f"({_number(row['relative_volume_difference'], 1, 100, ' %')}) |")
    return "\n".join(lines)


def mambamim_study_table(results: Path = MAMBAMIM_STUDY) -> str:
    if not results.is_file():
        return ("_Not run yet: `python studies/mambamim_labels.py --output ../runs/mambamim-study` produces this "
                "table (hours on a CPU; it resumes where it stopped)._")
    return mambamim_markdown(json.loads(results.read_text(encoding="utf-8")))


def picture_shift_tables(results: list[Path] | None = None) -> str:
    files = sorted(SHIFT_RESULTS.glob("picture_shifts_*.json")) if results is None else results
    if not files:
        return "_Run `python studies/picture_shifts.py DATASET --model ID --output DIR` to produce these tables._"
    return "\n\n".join(shift_markdown(json.loads(path.read_text(encoding="utf-8"))) for path in files)


TABLES = {"model-table": model_table, "benchmark-tables": benchmark_tables, "architecture-table": architecture_table,
          "reliability-table": reliability_section, "review-tables": review_tables,
          "mambamim-study": mambamim_study_table, "picture-shifts": picture_shift_tables}


def render(text: str) -> str:
    for name, build in TABLES.items():
        pattern = re.compile(rf"(<!-- {name} -->).*?(<!-- /{name} -->)", re.DOTALL)
        if not pattern.search(text):
            raise SystemExit(f"README has no <!-- {name} --> ... <!-- /{name} --> block")
        table = build()
        text = pattern.sub(lambda match, table=table: f"{match.group(1)}\n{table}\n{match.group(2)}", text)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the README's tables are out of date")
    args = parser.parse_args()
    current = README.read_text(encoding="utf-8")
    updated = render(current)
    if args.check:
        if updated != current:
            print("README tables are out of date: run python tools/readme_tables.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
