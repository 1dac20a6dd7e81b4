"""The README's figures are generated from the model cards and the benchmark output, never typed by hand."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]


def test_readme_tables_match_the_cards_and_the_benchmark_results():
    completed = subprocess.run([sys.executable, str(REPOSITORY / "tools" / "readme_tables.py"), "--check"],
                               capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr


def test_quick_start_has_exactly_the_two_commands_ci_relies_on():
    readme = (REPOSITORY / "README.md").read_text(encoding="utf-8")
    quick_start = readme.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#", 1)[0].strip() for line in quick_start.splitlines() if line.split("#", 1)[0].strip()]
    assert commands == ["./tools/demo.sh", "./tools/test.sh"]
    assert "./tools/test.sh" in (REPOSITORY / ".ci" / "run").read_text(encoding="utf-8")
