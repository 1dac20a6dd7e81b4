"""``train`` on 2D pictures (BUSI layout): segmentation with the papers' recipe, reconstruction, given start weights.

Every test trains tiny runs (64 x 64 inputs, four real BUSI pictures, one or two epochs) and takes seconds.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from MobileUViTSegmentLib.card import load_card
from MobileUViTSegmentLib.cli import main
from MobileUViTSegmentLib.errors import DatasetError
from MobileUViTSegmentLib.models import create_model
from MobileUViTSegmentLib.training.checkpoint import STATE
from MobileUViTSegmentLib.training.dataset_folder import make_split
from MobileUViTSegmentLib.training.image_folder import read_image_folder, read_mask
from MobileUViTSegmentLib.training.losses import BCEDiceLoss
from MobileUViTSegmentLib.training.recipe import Recipe, TrainingConfig
from MobileUViTSegmentLib.training.schedules import poly_learning_rate
from MobileUViTSegmentLib.training.trainer import Trainer
from MobileUViTSegmentLib.weights import load_state_dict, sha256_of

TRAIN = ["benign (1)", "benign (102)", "malignant (1)", "benign (100)"]  # benign (102) is one of the RGB files
VALIDATION = ["benign (10)", "malignant (2)"]
LESION = {"value": 1, "name": "lesion", "color": [200, 60, 60],
          "terminology": {"category": {"scheme": "SCT", "value": "49755003",
                                       "meaning": "Morphologically Altered Structure"},
                          "type": {"scheme": "SCT", "value": "4147007", "meaning": "Mass"}}}


@pytest.fixture
def busi_subset(busi_dataset: Path, tmp_path: Path) -> Path:
    """Six real BUSI pictures and masks in the 2D layout, with id lists in splits/."""
    folder = tmp_path / "busi"
    for sub in ("images", "masks", "splits"):
        (folder / sub).mkdir(parents=True)
    for name in TRAIN + VALIDATION:
        shutil.copy(busi_dataset / "images" / f"{name}.png", folder / "images")
        shutil.copy(busi_dataset / "masks" / f"{name}.png", folder / "masks")
    (folder / "splits" / "train.txt").write_text("\n".join(TRAIN) + "\n")
    (folder / "splits" / "val.txt").write_text("\n".join(VALIDATION) + "\n")
    return folder


def write_recipe(path: Path, *, architecture: str = "mobileuvit_s", config: dict | None = None, channels: int = 1,
                 labels: list | None = None, **training) -> Path:
    """A 64 x 64 2D recipe; ``training`` overrides the papers' settings (SGD + poly, BCE + Dice, rot90 + flips)."""
    card = {
        "id": path.stem.split(".")[0], "version": "1.0.0", "title": "test", "description": "test", "task": "test",
        "modality": "US", "labels": [LESION] if labels is None else labels,
        "architecture": {"name": architecture, "config": config or {"spatial_dims": 2, "in_channels": channels,
                                                                    "out_channels": 1}},
        "input": {"spatial_dims": 2, "channels": channels, "spacing": None, "orientation": None,
                  "intensity": {"method": "unit"}, "patch_size": [64, 64]},
        "inference": {"postprocessing": {"largest_component": False, "fill_holes": False}},
        "licenses": {"weights": "test", "training_data": "BUSI"},
    }
    settings = {"epochs": 1, "batch_size": 2, "optimizer": "sgd", "loss": "bce_dice", "validation_every": 1,
                "gradient_clip": None, "weights_dtype": "float32",
                "augmentation": {"flip_axes": [0, 1], "rotate90": True, "affine_probability": 0.0,
                                 "intensity": False}}
    settings.update(training)
    if settings.get("task") == "reconstruction":
        del settings["loss"]  # reconstruction implies mse
    path.write_text(json.dumps({"card": card, "training": settings}))
    return path


def log_records(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / "train_log.jsonl").read_text().splitlines()]


def test_a_2d_model_trains_resumes_and_segments_a_busi_picture_on_its_own_pixel_grid(busi_subset: Path,
                                                                                     tmp_path: Path):
    recipe = write_recipe(tmp_path / "busi-test.recipe.json")
    output = tmp_path / "run"
    common = ["train", str(busi_subset), "-o", str(output), "--recipe", str(recipe), "--train-list", "train.txt",
              "--validation-list", "val.txt", "--device", "cpu"]
    assert main([*common, "--epochs", "1"]) == 0
    assert main([*common, "--epochs", "2"]) == 0  # continues from the checkpoint
    records = log_records(output)
    assert [record["epoch"] for record in records] == [1, 2]
    # SGD with poly decay per iteration: 2 steps an epoch, 4 in all; the last step ran at 0.01 * (1 - 3/4) ** 0.9.
    assert records[-1]["lr"] == pytest.approx(poly_learning_rate(3, 4, 0.01))
    assert 0 <= records[-1]["validation_mean_iou"] <= records[-1]["validation_mean_dice"] <= 1

    card = load_card(output / "busi-test.card.json")
    assert card.training["config"]["optimizer"] == "sgd" and card.training["config"]["loss"] == "bce_dice"
    assert len(card.training["model_space_validation_iou"]) == 1
    split = json.loads((output / "busi-test.split.json").read_text())
    assert split["train"] == TRAIN and split["validation"] == VALIDATION

    picture = busi_subset / "images" / "benign (102).png"  # RGB, segmented by a grey model
    result = tmp_path / "labels.png"
    assert main(["segment", str(picture), "-o", str(result), "--model", str(output / "busi-test.card.json"),
                 "--quiet"]) == 0
    labels, source = sitk.ReadImage(str(result)), sitk.ReadImage(str(picture))
    assert labels.GetSize() == source.GetSize() == (634, 610)
    assert set(np.unique(sitk.GetArrayViewFromImage(labels))) <= {0, 1}


def test_without_a_recipe_a_2d_folder_gets_the_papers_protocol(busi_subset: Path, tmp_path: Path):
    dataset = read_image_folder(busi_subset)
    recipe = Recipe.from_dataset(dataset, "busi-derived")
    assert recipe.card["input"]["patch_size"] == [256, 256] and recipe.card["input"]["channels"] == 1
    assert recipe.card["architecture"]["config"] == {"spatial_dims": 2, "in_channels": 1, "out_channels": 1}
    training = recipe.training
    assert (training.optimizer, training.loss, training.learning_rate, training.weight_decay) == (
        "sgd", "bce_dice", 0.01, 1e-4)
    assert training.augmentation.rotate90 and training.augmentation.flip_axes == (0, 1)


def test_a_multi_class_2d_model_trains_with_dice_ce_and_adamw(busi_subset: Path, tmp_path: Path):
    recipe = write_recipe(tmp_path / "two.recipe.json", optimizer="adamw", loss="dice_ce", learning_rate=1e-3,
                          config={"spatial_dims": 2, "in_channels": 1, "out_channels": 2}, warmup_epochs=1,
                          epochs=2)
    output = tmp_path / "run"
    assert main(["train", str(busi_subset), "-o", str(output), "--recipe", str(recipe), "--device", "cpu"]) == 0
    records = log_records(output)
    assert records[-1]["lr"] < 1e-3 and "validation_mean_dice" in records[-1]
    # No lists given: a seeded 80/20 split of the labelled pictures, recorded next to the model.
    split = json.loads((output / "two.split.json").read_text())
    assert split["validation"] == make_split(TRAIN + VALIDATION, 0.2, 0)["validation"]


def test_reconstruction_lowers_its_mse_and_segment_refuses_its_card(busi_subset: Path, tmp_path: Path, capsys):
    shutil.rmtree(busi_subset / "masks")  # a reconstruction needs no labels
    recipe = write_recipe(tmp_path / "recon.recipe.json", labels=[], task="reconstruction", optimizer="adamw",
                          learning_rate=3e-3, warmup_epochs=0, epochs=6, batch_size=1, weights_dtype="float16",
                          augmentation={"affine_probability": 0.0, "intensity": False},
                          config={"spatial_dims": 2, "in_channels": 1, "out_channels": 1})
    output = tmp_path / "run"
    assert main(["train", str(busi_subset), "-o", str(output), "--recipe", str(recipe), "--train-list", "train.txt",
                 "--validation-list", "val.txt", "--device", "cpu"]) == 0
    errors = [record["validation_mse"] for record in log_records(output)]
    assert len(errors) == 6 and errors[-1] < 0.8 * errors[0]

    card = load_card(output / "recon.card.json")
    assert card.kind == "reconstruction" and card.training["task"] == "reconstruction"
    assert card.training["model_space_validation_mse"] == pytest.approx(errors[-1])
    result = tmp_path / "labels.png"
    assert main(["segment", str(busi_subset / "images" / "benign (1).png"), "-o", str(result), "--model",
                 str(output / "recon.card.json")]) == 2
    assert not result.exists()
    assert "is a reconstruction network, not a segmenter" in capsys.readouterr().err


def test_srsnet_starts_from_trained_frozen_reconstruction_weights_and_names_them(busi_subset: Path, tmp_path: Path):
    r_recipe = write_recipe(tmp_path / "busi-r.recipe.json", architecture="srsnet_r", channels=3, labels=[],
                            config={"spatial_dims": 2, "in_channels": 3}, task="reconstruction")
    assert main(["train", str(busi_subset), "-o", str(tmp_path / "r"), "--recipe", str(r_recipe), "--train-list",
                 "train.txt", "--validation-list", "val.txt", "--device", "cpu"]) == 0
    r_weights = tmp_path / "r" / "busi-r.safetensors"

    s_recipe = write_recipe(tmp_path / "busi-srs.recipe.json", architecture="srsnet", channels=3,
                            config={"spatial_dims": 2, "in_channels": 3, "out_channels": 1})
    output = tmp_path / "s"
    assert main(["train", str(busi_subset), "-o", str(output), "--recipe", str(s_recipe), "--train-list",
                 "train.txt", "--validation-list", "val.txt", "--device", "cpu", "--init-weights", str(r_weights),
                 "--init-prefix", "reconstruction."]) == 0

    report = load_card(output / "busi-srs.card.json").training["initial_weights"]
    reconstruction = load_state_dict(r_weights)
    assert report["loaded_tensors"] == len(reconstruction) and report["unused_in_file"] == []
    assert report["sha256"] == sha256_of(r_weights)
    assert report["parent"]["id"] == "busi-r" and "busi-r.recipe.json" in report["parent"]["training"]["command"]
    assert all(key.startswith("segmentation.") for key in report["left_at_initialisation"])
    trained = load_state_dict(output / "busi-srs.safetensors")
    for key, value in reconstruction.items():  # parameters and BatchNorm statistics: untouched by training
        assert torch.equal(trained[f"reconstruction.{key}"], value), key
    assert not torch.equal(trained["segmentation.head.weight"],
                           create_model("srsnet", in_channels=3).state_dict()["segmentation.head.weight"])

    # A checkpoint from before the report carried sha256 and parent gets them when the run is resumed.
    state_file = output / STATE
    state = json.loads(state_file.read_text())
    state["initial_weights"] = {key: value for key, value in state["initial_weights"].items()
                                if key not in ("sha256", "parent")}
    state_file.write_text(json.dumps(state))
    assert main(["train", str(busi_subset), "-o", str(output), "--recipe", str(s_recipe), "--train-list",
                 "train.txt", "--validation-list", "val.txt", "--device", "cpu", "--init-weights", str(r_weights),
                 "--init-prefix", "reconstruction."]) == 0
    resumed = load_card(output / "busi-srs.card.json").training["initial_weights"]
    assert resumed == {**report, "recorded": "on resume"}


def test_frozen_parameters_are_not_optimised(busi_subset: Path, tmp_path: Path):
    recipe = Recipe.from_file(write_recipe(tmp_path / "frozen.recipe.json", weight_decay=0.1))
    dataset = read_image_folder(busi_subset)
    trainer = Trainer(recipe, dataset, {"train": TRAIN, "validation": VALIDATION}, tmp_path / "run",
                      torch.device("cpu"), log=lambda line: None, show_progress=False)
    build = trainer.build_network

    def network_with_a_frozen_half() -> torch.nn.Module:
        network = build()
        for index, parameter in enumerate(network.parameters()):
            parameter.requires_grad_(index % 2 == 0)
        return network

    trainer.build_network = network_with_a_frozen_half
    torch.manual_seed(0)
    before = [parameter.detach().clone() for parameter in network_with_a_frozen_half().parameters()]
    torch.manual_seed(0)  # the trainer seeds too; build the same initial network again inside it
    trained = trainer.run(resume=False)
    changed = [not torch.equal(old, new) for old, new in zip(before, trained.parameters())]
    frozen = [not parameter.requires_grad for parameter in trained.parameters()]
    assert not any(c and f for c, f in zip(changed, frozen))  # weight decay 0.1 would move any optimised tensor
    assert any(c and not f for c, f in zip(changed, frozen))


def test_bce_dice_is_half_bce_plus_one_minus_soft_dice_per_sample():
    logits = torch.tensor([[[[2.0, -1.0], [0.5, -3.0]]], [[[-2.0, -2.0], [-2.0, -2.0]]]])
    target = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]], [[[0.0, 0.0], [0.0, 0.0]]]])
    probability = torch.sigmoid(logits)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    dice = [(2 * (p * t).sum() + 1e-5) / (p.sum() + t.sum() + 1e-5) for p, t in zip(probability, target)]
    expected = 0.5 * bce + 1 - (dice[0] + dice[1]) / 2
    assert float(BCEDiceLoss()(logits, target)) == pytest.approx(float(expected), rel=1e-6)


def test_sgd_recipes_get_the_papers_rates_and_existing_recipes_keep_their_meaning():
    assert TrainingConfig.from_dict({}) == TrainingConfig()  # no new setting changes an old recipe
    assert (TrainingConfig().optimizer, TrainingConfig().loss, TrainingConfig().task) == ("adamw", "dice_ce",
                                                                                         "segmentation")
    sgd = TrainingConfig.from_dict({"optimizer": "sgd"})
    assert (sgd.learning_rate, sgd.weight_decay) == (0.01, 1e-4)
    assert poly_learning_rate(0, 100, 0.01) == 0.01 and poly_learning_rate(100, 100, 0.01) == 0.0
    assert TrainingConfig.from_dict({"task": "reconstruction"}).loss == "mse"
    with pytest.raises(DatasetError, match="unknown optimizer 'adam'"):
        TrainingConfig.from_dict({"optimizer": "adam"})
    with pytest.raises(DatasetError, match="reconstruction trains with mse"):
        TrainingConfig.from_dict({"task": "reconstruction", "loss": "bce_dice"})


def test_jpeg_and_0_255_masks_are_thresholded_and_label_masks_kept(tmp_path: Path):
    values = np.zeros((20, 30), np.uint8)
    values[5:15, 10:20] = 255
    values[5, 10] = 120  # a smeared JPEG edge stays background
    for name in ("mask.png", "mask.jpg"):
        sitk.WriteImage(sitk.GetImageFromArray(values), str(tmp_path / name))
        assert read_mask(tmp_path / name, 1).sum() in (99, 100)
    labels = np.zeros((20, 30), np.uint8)
    labels[:5] = 2
    sitk.WriteImage(sitk.GetImageFromArray(labels), str(tmp_path / "labels.png"))
    assert set(np.unique(read_mask(tmp_path / "labels.png", 2))) == {0, 2}
    with pytest.raises(DatasetError, match="only one-label masks"):
        read_mask(tmp_path / "mask.png", 2)


def test_bad_2d_layouts_fail_with_one_clear_line(busi_subset: Path, tmp_path: Path, capsys):
    recipe = write_recipe(tmp_path / "bad.recipe.json")
    (busi_subset / "splits" / "wrong.txt").write_text("benign (1)\nno such image\n")
    common = ["train", str(busi_subset), "-o", str(tmp_path / "run"), "--recipe", str(recipe)]
    expectations = [
        (["--train-list", "wrong.txt", "--validation-list", "val.txt"], "names 1 ids that are not in"),
        (["--train-list", "train.txt"], "--train-list and --validation-list go together"),
    ]
    for options, message in expectations:
        assert main([*common, *options]) == 2
        assert message in capsys.readouterr().err
    (busi_subset / "masks" / "benign (1).png").unlink()
    assert main([*common, "--train-list", "train.txt", "--validation-list", "val.txt"]) == 2
    assert "1 listed ids have no mask in masks/: benign (1)" in capsys.readouterr().err
