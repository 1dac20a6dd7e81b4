"""``evaluate``: per-case figures to CSV and a summary, and, for model developers, the figures written into a card."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from dataset_subsets import hippocampus_subset

from MobileUViTSegmentLib.card import load_card
from MobileUViTSegmentLib.cli import main
from MobileUViTSegmentLib.resources import models_dir

CASES = ("hippocampus_001", "hippocampus_003")


@pytest.fixture
def two_case_dataset(hippocampus_dataset: Path, tmp_path: Path) -> Path:
    return hippocampus_subset(hippocampus_dataset, CASES, tmp_path / "data")


@pytest.fixture
def card_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    for name in ("hippocampus-mri.card.json", "hippocampus-mri.safetensors"):
        shutil.copy(models_dir() / name, folder / name)
    return folder / "hippocampus-mri.card.json"


def test_record_in_card_stores_the_figures_and_keeps_a_valid_card_with_the_users_permissions(
        two_case_dataset: Path, card_copy: Path, tmp_path: Path):
    before = json.loads(card_copy.read_text())
    output = tmp_path / "eval"
    output.mkdir()
    assert main(["evaluate", str(two_case_dataset), "--model", str(card_copy), "-o", str(output), "--device", "cpu",
                 "--record-in-card"]) == 0
    summary = json.loads((output / "summary.json").read_text())
    card = load_card(card_copy)  # still a card that validates against the schema
    assert card.metrics["all"]["mean_dice"] == summary["mean_dice"] and summary["cases"] == len(CASES)
    assert card.metrics["all"]["command"].startswith("mobileuvit-segment evaluate")
    assert card.timings["cpu_seconds_per_case"] == summary["seconds_per_case"]
    assert {key: value for key, value in card.raw.items() if key not in ("metrics", "timings")} == \
        {key: value for key, value in before.items() if key not in ("metrics", "timings")}
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(card_copy.stat().st_mode) == 0o666 & ~umask
    assert sorted(p.name for p in card_copy.parent.iterdir()) == ["hippocampus-mri.card.json",
                                                                  "hippocampus-mri.safetensors"]  # no leftovers
