"""The MambaMIM label study (``studies/mambamim_labels.py``) end to end at a tiny scale: four fine-tunes with equal
steps on nested label subsets and the same validation cases, the pre-trained ones started from an encoder that never
saw a validation image, a resumed study that re-runs nothing, and the README table rendered from its results."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from dataset_subsets import hippocampus_subset
from tiny_hymamba import tiny_recipes

REPOSITORY = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPOSITORY / "studies"))
sys.path.insert(0, str(REPOSITORY / "tools"))

import mambamim_labels as study  # noqa: E402
import readme_tables  # noqa: E402

CASES = ["hippocampus_001", "hippocampus_003", "hippocampus_004", "hippocampus_006", "hippocampus_011"]


def test_equal_steps_give_a_smaller_label_fraction_proportionally_more_epochs():
    assert study.label_count(166, 0.1) == 17 and study.label_count(3, 0.1) == 1
    assert study.epochs_for_equal_steps(20, 166, 1.0, 2) == 20
    assert study.epochs_for_equal_steps(20, 166, 0.1, 2) == 185  # 20 x 83 steps over 9 steps an epoch, rounded up


def test_a_smaller_label_fraction_warms_up_for_as_many_steps_as_the_run_on_all_labels(tmp_path):
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"training": {"batch_size": 2, "warmup_epochs": 3, "epochs": 120}}), encoding="utf-8")
    assert study.recipe_with_equal_warmup(recipe, 166, 1.0, tmp_path / "all") == recipe
    derived = study.recipe_with_equal_warmup(recipe, 166, 0.1, tmp_path / "tenth")
    assert derived.parent == tmp_path / "tenth"
    assert json.loads(derived.read_text())["training"] == {"batch_size": 2, "warmup_epochs": 28, "epochs": 120}
    assert json.loads(recipe.read_text())["training"]["warmup_epochs"] == 3  # the shared recipe is left as it was
    # 28 epochs of 9 steps = 252 warm-up steps, the full run's 3 x 83 = 249 rounded up to whole epochs


def test_the_validation_curve_is_by_step_and_a_resumed_epoch_counts_once(tmp_path):
    log = tmp_path / "train_log.jsonl"
    records = [{"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": 0.9, "validation_mean_dice": 0.5},
               {"epoch": 2, "loss": 0.8, "validation_mean_dice": 0.61234},  # the same epoch again after a resume
               {"epoch": 3, "loss": 0.7}, {"epoch": 4, "loss": 0.6, "validation_mean_dice": 0.7}]
    log.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    assert study.validation_curve(log, steps_per_epoch=9) == [{"epoch": 2, "step": 18, "mean_dice": 0.6123},
                                                              {"epoch": 4, "step": 36, "mean_dice": 0.7}]


def test_the_pretraining_effect_is_paired_case_by_case_over_the_labels_of_each_case(tmp_path):
    rows = [("a", "anterior", "0.80"), ("a", "posterior", "0.90"), ("b", "anterior", "0.70"), ("b", "posterior", "")]
    per_case = tmp_path / "per_case.csv"
    per_case.write_text("case,label,dice,iou\n" + "".join(f"{c},{label},{dice},\n" for c, label, dice in rows),
                        encoding="utf-8")
    assert study.case_mean_dice(per_case) == pytest.approx({"a": 0.85, "b": 0.70})  # an undefined label is skipped
    effect = study.paired_difference(0.1, {"a": 0.85, "b": 0.70, "c": 0.5}, {"a": 0.87, "b": 0.74})
    assert effect == {"label_fraction": 0.1, "cases": 2, "mean_difference": 0.03, "standard_error": 0.01,
                      "pretrained_better_cases": 2}  # differences 0.02 and 0.04: sd 0.0141 / sqrt(2)


@pytest.fixture
def small_study(hippocampus_dataset: Path, tmp_path: Path) -> list[str]:
    data = hippocampus_subset(hippocampus_dataset, CASES, tmp_path / "data")
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": CASES[:4], "validation": CASES[4:]}), encoding="utf-8")
    pretrain_recipe, recipe = tiny_recipes(tmp_path)
    return ["--data", str(data), "--output", str(tmp_path / "runs"), "--split", str(split),
            "--pretrain-recipe", str(pretrain_recipe), "--recipe", str(recipe), "--epochs", "1",
            "--fractions", "0.25", "1.0", "--device", "cpu", "--threads", "1",
            "--results", str(tmp_path / "results.json")]


def test_the_study_runs_four_comparable_fine_tunes_and_resumes_without_rerunning(small_study, tmp_path, monkeypatch):
    results = study.run_study(study.parse_arguments(small_study), log=lambda line: None)
    assert json.loads((tmp_path / "results.json").read_text()) == results
    runs = {row["run"]: row for row in results["runs"]}
    assert sorted(runs) == ["mambamim-100pct", "mambamim-25pct", "scratch-100pct", "scratch-25pct"]
    assert [runs[name]["train_cases"] for name in ("scratch-25pct", "scratch-100pct")] == [1, 4]
    assert {row["steps"] for row in runs.values()} == {2}  # 1 epoch of 2 batches = 2 epochs of 1
    assert all(row["cases"] == 1 and 0 <= row["mean_dice"] <= 1 for row in runs.values())
    assert all(row["validation_curve"][-1]["step"] == 2 for row in runs.values())  # validated at the last step

    encoder = json.loads((tmp_path / "runs" / "pretrain" / "tiny-mambamim.encoder.json").read_text())
    assert encoder["cases"] == CASES[:4]  # the validation case was never pre-trained on
    for name in runs:
        card = json.loads((tmp_path / "runs" / name / "hippocampus-mri-hymamba-small.card.json").read_text())
        split = json.loads((tmp_path / "runs" / name / "hippocampus-mri-hymamba-small.split.json").read_text())
        assert split["validation"] == CASES[4:] and set(split["train"]) <= set(CASES[:4])
        started = card["training"].get("initial_weights", {})
        assert (started.get("loaded_tensors", 0) > 0) == name.startswith("mambamim")

    calls = []
    monkeypatch.setattr(study, "_cli", lambda arguments, log: calls.append(arguments))
    assert study.run_study(study.parse_arguments(small_study), log=lambda line: None)["runs"] == results["runs"]
    assert calls == []  # every stage had finished: nothing is trained or evaluated again

    table = readme_tables.mambamim_study_table(tmp_path / "results.json")
    assert table.count("\n| from scratch |") == 2 and table.count("\n| MambaMIM encoder |") == 2
    assert "| 25% | 1 | 2 (2) |" in table and "Mobile U-ViT-3D-S (`hippocampus-mri`, shipped)" in table
    assert [effect["label_fraction"] for effect in results["pretraining_effect"]] == [0.25, 1.0]
    assert all(effect["cases"] == 1 for effect in results["pretraining_effect"])
    assert "minus from scratch, paired over the validation cases" in table and "25% of the labels" in table
    assert "Not run yet" in readme_tables.mambamim_study_table(tmp_path / "absent.json")
