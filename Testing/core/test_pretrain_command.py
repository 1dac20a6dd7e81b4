"""``pretrain``: MambaMIM on a few hippocampus volumes learns, resumes, and leaves an encoder HyMamba loads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from tiny_hymamba import ARCHITECTURE

from MobileUViTSegmentLib.cli.main import main
from MobileUViTSegmentLib.models import create_model
from MobileUViTSegmentLib.training.pretraining import PretrainConfig, schedule_at
from MobileUViTSegmentLib.weights import load_state_dict


def write_recipe(folder: Path) -> Path:
    recipe = {
        "id": "tiny-mambamim",
        "architecture": {"name": "hymamba_small", "config": ARCHITECTURE},
        "input": {"spatial_dims": 3, "channels": 1, "spacing": [1.0, 1.0, 1.0], "orientation": "RAS",
                  "intensity": {"method": "zscore"}, "patch_size": [32, 48, 32]},
        "pretraining": {"epochs": 3, "batch_size": 2, "learning_rate": 0.003, "warmup_epochs": 1,
                        "crops_per_volume": 2, "seed": 0},
    }
    path = folder / "recipe.json"
    path.write_text(json.dumps(recipe), encoding="utf-8")
    return path


def test_pretraining_lowers_the_loss_resumes_and_writes_a_loadable_encoder(hippocampus_dataset, tmp_path):
    volumes = tmp_path / "volumes"
    volumes.mkdir()
    for image in sorted((hippocampus_dataset / "imagesTr").glob("*.nii.gz"))[:8]:
        shutil.copy(image, volumes / image.name)
    recipe, output = write_recipe(tmp_path), tmp_path / "run"
    common = ["pretrain", str(volumes), "-o", str(output), "--recipe", str(recipe), "--threads", "1"]
    assert main([*common, "--epochs", "1"]) == 0  # an "interrupted" run: one epoch of three
    assert main(common) == 0  # resumes at epoch 2
    records = [json.loads(line) for line in (output / "pretrain_log.jsonl").read_text().splitlines()]
    assert [record["epoch"] for record in records] == [1, 2, 3]
    assert records[-1]["loss"] < records[0]["loss"]
    decays = [schedule_at(step, 12, 4, PretrainConfig())[1] for step in (0, 6, 11)]
    assert abs(decays[0] - 0.04) < 1e-12 and decays[0] < decays[1] < decays[2] and abs(decays[2] - 0.2) < 1e-12

    description = json.loads((output / "tiny-mambamim.encoder.json").read_text())
    assert description["losses"] == [record["loss"] for record in records]
    network = create_model("hymamba_small", out_channels=3, img_size=[32, 48, 32], **ARCHITECTURE)
    encoder = load_state_dict(output / "tiny-mambamim.encoder.safetensors")
    result = network.load_state_dict(encoder, strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys and all(key.startswith("decoder.") for key in result.missing_keys)
    assert torch.equal(network.embeddings.stem.weight, encoder["embeddings.stem.weight"])


def test_pretraining_with_a_split_sees_only_its_training_cases(hippocampus_dataset, tmp_path, capsys):
    names = ["hippocampus_001", "hippocampus_003", "hippocampus_004", "hippocampus_006"]
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": names[:2], "validation": names[2:]}), encoding="utf-8")
    recipe, output = write_recipe(tmp_path), tmp_path / "run"
    common = ["pretrain", str(hippocampus_dataset), "-o", str(output), "--recipe", str(recipe), "--threads", "1"]
    assert main([*common, "--split", str(split), "--epochs", "1"]) == 0
    description = json.loads((output / "tiny-mambamim.encoder.json").read_text())
    assert description["cases"] == names[:2] and description["volumes"] == 2

    split.write_text(json.dumps({"train": ["hippocampus_999"], "validation": []}), encoding="utf-8")
    assert main([*common, "--split", str(split), "--restart"]) == 2
    assert "hippocampus_999" in capsys.readouterr().err
