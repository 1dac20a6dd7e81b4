"""The reliability report reads what the tests recorded from a JUnit report and renders the README section from it."""

from __future__ import annotations

import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPOSITORY / "tools"))

import reliability_report  # noqa: E402

JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="Testing.core.test_broken_files" name="test_each[zero]" file="Testing/core/test_broken_files.py">
  <properties><property name="broken_file" value="zero spacing"/></properties></testcase>
<testcase classname="Testing.core.test_broken_files" name="test_any" file="Testing/core/test_broken_files.py">
  <properties><property name="random_header" value="segmented"/><property name="random_header" value="refused"/>
  <property name="random_header" value="refused"/></properties></testcase>
<testcase classname="Testing.core.test_load" name="test_two_hundred" file="Testing/core/test_load.py">
  <properties><property name="worker_runs" value="200"/><property name="worker_window_runs" value="20"/>
  <property name="worker_rss_mb_first_runs" value="494"/><property name="worker_rss_mb_last_runs" value="496"/>
  <property name="worker_rss_mb_max" value="496"/><property name="worker_rss_growth_percent" value="0.4"/>
  </properties></testcase>
<testcase classname="Testing.core.test_load" name="test_four" file="Testing/core/test_load.py">
  <failure message="boom"/></testcase>
</testsuite></testsuites>"""


def test_report_counts_outcomes_per_area_and_keeps_the_recorded_figures(tmp_path: Path):
    report = tmp_path / "report.xml"
    report.write_text(JUNIT, encoding="utf-8")
    summary = reliability_report.summarise(reliability_report.read_report(report))
    assert summary["areas"]["bad input files and paths"] == {"tests": 2, "passed": 2}
    assert summary["areas"]["load: 200 runs in one worker, 4 processes at once"] == {"tests": 2, "passed": 1,
                                                                                       "failed": 1}
    assert summary["broken_files"] == ["zero spacing"]
    assert summary["random_headers"] == {"tried": 3, "segmented": 1, "refused": 2}
    summary["measured"] = {"date": "2026-01-01", "machine": "Linux x86_64", "python": "3.11"}
    text = reliability_report.markdown(summary)
    assert "| load: 200 runs in one worker, 4 processes at once | 2 | 1 | 1 | 0 |" in text
    assert "494 MB over the first 20 runs, 496 MB over the last 20 (+0.4 %; limit +5 %)" in text
    assert text.endswith("- Failed checks: 1.")
