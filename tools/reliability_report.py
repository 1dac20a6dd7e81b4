"""Run the reliability tests and write what they tried and what held to ``benchmarks/results/reliability.json``.

The README's reliability section is rendered from that file by ``tools/readme_tables.py``, so its figures (bad inputs
tried, faults injected, memory under load, files lost) are measured by the tests themselves, never typed. The tests
report their figures with pytest's ``record_property``; this script reads them from a JUnit XML report.

Usage::

    python tools/reliability_report.py            # about five minutes on two cores
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from collections import Counter
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
OUTPUT = REPOSITORY / "benchmarks" / "results" / "reliability.json"

# Area of the README table -> the test files whose tests belong to it.
AREAS = {
    "bad input files and paths": ["Testing/core/test_broken_files.py", "Testing/core/test_cli_segment.py"],
    "weights download, import and verification": ["Testing/core/test_weights_cache.py"],
    "worker faults: crash, kill, hang, cancel, CUDA out of memory": [
        "Testing/core/test_worker.py", "Testing/slicer_module/test_real_worker.py",
        "Testing/core/test_memory_fallback.py"],
    "load: 200 runs in one worker, 4 processes at once": ["Testing/core/test_load.py"],
    "security: no pickle, no shell, no path escape, schema-checked cards": [
        "Testing/core/test_process_rules.py", "Testing/core/test_cards_and_weights.py"],
    "install in Slicer: consent, PyTorch in the background, offline weights import": [
        "Testing/slicer_module/test_dependency_installer.py", "Testing/slicer_module/test_torch_install.py",
        "Testing/slicer_module/test_weights_import.py"],
    "the user's segments: failed, cancelled and repeated runs, replace and restore": [
        "Testing/slicer_module/test_edit_safety.py"],
}


def run_tests(report: Path) -> int:
    files = [path for paths in AREAS.values() for path in paths]
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "junit_family=xunit1",
               f"--junitxml={report}", *files]
    return subprocess.run(command, cwd=REPOSITORY, check=False).returncode


def read_report(report: Path) -> dict:
    """Per area: tests, passed, failed, skipped; and every recorded property with its values."""
    areas = {area: Counter() for area in AREAS}
    properties: dict[str, list[str]] = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        path = case.get("file") or case.get("classname", "").replace(".", "/") + ".py"
        area = next((name for name, files in AREAS.items() if any(path.endswith(f.split("/")[-1]) for f in files)),
                    None)
        if area is None:
            continue
        outcome = ("failed" if case.find("failure") is not None or case.find("error") is not None
                   else "skipped" if case.find("skipped") is not None else "passed")
        areas[area]["tests"] += 1
        areas[area][outcome] += 1
        for item in case.iter("property"):
            properties.setdefault(item.get("name"), []).append(item.get("value"))
    return {"areas": {name: dict(counts) for name, counts in areas.items()}, "properties": properties}


def summarise(raw: dict) -> dict:
    properties = raw["properties"]
    headers = Counter(properties.get("random_header", []))
    single = {name: float(values[-1]) for name, values in properties.items()
              if name.startswith("worker_") and values}
    return {
        "areas": raw["areas"],
        "broken_files": sorted(set(properties.get("broken_file", []))),
        "random_headers": {"tried": sum(headers.values()), "segmented": headers.get("segmented", 0),
                           "refused": headers.get("refused", 0)},
        "worker_load": single,
        "concurrent_runs_identical": int(properties.get("concurrent_runs_identical", ["0"])[-1]),
    }


def markdown(summary: dict) -> str:
    """The README's reliability section: a table per area and the figures the tests recorded."""
    measured = summary["measured"]
    lines = [f"Measured by `python tools/reliability_report.py` on {measured['date']} ({measured['machine']}, Python "
             f"{measured['python']}); every figure below is recorded by the tests themselves.", "",
             "| area | tests | passed | failed | skipped |", "|---|---|---|---|---|"]
    for area, counts in summary["areas"].items():
        lines.append(f"| {area} | {counts.get('tests', 0)} | {counts.get('passed', 0)} | {counts.get('failed', 0)} | "
                     f"{counts.get('skipped', 0)} |")
    headers, load = summary["random_headers"], summary["worker_load"]
    lines += ["", f"- Broken files tried: {len(summary['broken_files'])} ({', '.join(summary['broken_files'])}); "
                  "each refused with one line and a non-zero exit, nothing written, the input untouched.",
              f"- Random NRRD headers written by hypothesis: {headers['tried']} tried, {headers['segmented']} "
              f"segmented onto their own grid, {headers['refused']} refused with one line and nothing written."]
    if load:
        lines.append(f"- One worker, {load['worker_runs']:.0f} segmentations in a row: peak resident memory "
                     f"{load['worker_rss_mb_first_runs']:.0f} MB over the first {load['worker_window_runs']:.0f} runs, "
                     f"{load['worker_rss_mb_last_runs']:.0f} MB over the last {load['worker_window_runs']:.0f} "
                     f"({load['worker_rss_growth_percent']:+.1f} %; limit +5 %).")
    if summary["concurrent_runs_identical"]:
        lines.append(f"- {summary['concurrent_runs_identical']} command-line runs at once: all completed, results "
                     "identical to a single run.")
    failed = sum(counts.get("failed", 0) for counts in summary["areas"].values())
    lines.append(f"- Failed checks: {failed}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.xml"
        code = run_tests(report)
        summary = summarise(read_report(report))
    summary["measured"] = {"date": datetime.date.today().isoformat(), "python": platform.python_version(),
                           "machine": f"{platform.system()} {platform.machine()}", "pytest_exit_code": code}
    args.output.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"written {args.output}")
    return code


if __name__ == "__main__":
    sys.exit(main())
