"""``train`` on the real hippocampus data: checkpoints, resumes without losing epochs, exports a usable model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dataset_subsets import hippocampus_subset

from MobileUViTSegmentLib.card import load_card
from MobileUViTSegmentLib.cli import main
from MobileUViTSegmentLib.errors import DatasetError
from MobileUViTSegmentLib.resources import models_dir, sample_data_dir
from MobileUViTSegmentLib.training.dataset_folder import label_subset, make_split, read_volume_dataset

RECIPE = models_dir() / "recipes" / "hippocampus-mri.recipe.json"


@pytest.fixture
def small_dataset(hippocampus_dataset: Path, tmp_path: Path) -> Path:
    """Four real cases in the documented layout (enough to exercise every step in seconds)."""
    return hippocampus_subset(hippocampus_dataset, ("hippocampus_001", "hippocampus_003", "hippocampus_004",
                                                    "hippocampus_006"), tmp_path / "data", image_suffix="_0000")


def test_the_split_is_reproducible_and_disjoint():
    names = [f"case_{i:03d}" for i in range(208)]
    first, second = make_split(names, 0.2, seed=0), make_split(names, 0.2, seed=0)
    assert first == second
    assert len(first["validation"]) == 42 and not set(first["train"]) & set(first["validation"])


def test_a_label_fraction_keeps_a_seeded_subset_and_the_same_validation_cases():
    split = make_split([f"case_{i:03d}" for i in range(208)], 0.2, seed=0)
    tenth, half = label_subset(split, 0.1, seed=0), label_subset(split, 0.5, seed=0)
    assert len(tenth["train"]) == 17 and len(half["train"]) == 83  # of 166
    assert set(tenth["train"]) < set(half["train"]) < set(split["train"])  # nested: fewer labels, same draw
    assert tenth["validation"] == half["validation"] == split["validation"]
    assert label_subset(split, 1.0, seed=0) == split and len(label_subset(split, 0.001, seed=0)["train"]) == 1
    for fraction in (0, 1.5):
        with pytest.raises(DatasetError, match="label fraction"):
            label_subset(split, fraction, seed=0)


def test_dataset_folder_accepts_nnunet_channel_suffixes(small_dataset: Path):
    dataset = read_volume_dataset(small_dataset)
    assert [case.name for case in dataset.cases] == ["hippocampus_001", "hippocampus_003", "hippocampus_004",
                                                     "hippocampus_006"]
    assert dataset.labels == {0: "background", 1: "anterior hippocampus", 2: "posterior hippocampus"}


def test_training_resumes_after_interruption_and_exports_a_model_segment_can_use(small_dataset: Path,
                                                                               tmp_path: Path):
    output = tmp_path / "run"
    common = ["train", str(small_dataset), "-o", str(output), "--recipe", str(RECIPE), "--batch-size", "2",
              "--validation-every", "1", "--device", "cpu"]
    assert main([*common, "--epochs", "1"]) == 0
    first = [json.loads(line) for line in (output / "train_log.jsonl").read_text().splitlines()]
    assert [record["epoch"] for record in first] == [1]
    # Started again with more epochs, the run continues from the checkpoint instead of starting over.
    assert main([*common, "--epochs", "2"]) == 0
    records = [json.loads(line) for line in (output / "train_log.jsonl").read_text().splitlines()]
    assert [record["epoch"] for record in records] == [1, 2]
    assert records[0] == first[0]

    card_path = output / "hippocampus-mri.card.json"
    card = load_card(card_path)
    assert card.training["command"].startswith("mobileuvit-segment train")
    assert card.training["train_cases"] + card.training["validation_cases"] == 4
    split = json.loads((output / "hippocampus-mri.split.json").read_text())
    assert len(split["train"]) == 3 and len(split["validation"]) == 1
    result = tmp_path / "labels.nii.gz"
    assert main(["segment", str(sample_data_dir() / "hippocampus_046.nii.gz"), "-o", str(result),
                 "--model", str(card_path), "--quiet"]) == 0
    assert result.is_file()


def test_training_with_a_label_fraction_uses_fewer_cases_and_records_it(small_dataset: Path, tmp_path: Path):
    split_file = tmp_path / "given.split.json"
    split_file.write_text(json.dumps({"train": ["hippocampus_001", "hippocampus_003", "hippocampus_004"],
                                      "validation": ["hippocampus_006"]}), encoding="utf-8")
    output = tmp_path / "run"
    assert main(["train", str(small_dataset), "-o", str(output), "--recipe", str(RECIPE), "--split", str(split_file),
                 "--label-fraction", "0.34", "--epochs", "1", "--batch-size", "1", "--device", "cpu"]) == 0
    written = json.loads((output / "hippocampus-mri.split.json").read_text())
    assert written["label_fraction"] == 0.34 and written["seed"] == 0
    assert len(written["train"]) == 1 and written["validation"] == ["hippocampus_006"]
    card = load_card(output / "hippocampus-mri.card.json")
    assert card.training["train_cases"] == 1 and "--label-fraction 0.34" in card.training["command"]


def test_a_dataset_folder_without_dataset_json_is_refused_with_one_line(tmp_path: Path, capsys):
    assert main(["train", str(tmp_path), "-o", str(tmp_path / "run")]) == 2
    assert "has no dataset.json" in capsys.readouterr().err
