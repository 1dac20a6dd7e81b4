"""Model cards validate against the schema; weights are verified by size and sha256 before use; no pickle."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from MobileUViTSegmentLib.card import card_from_dict, load_card
from MobileUViTSegmentLib.catalog import DEFAULT_MODEL_ID, Catalog
from MobileUViTSegmentLib.errors import ModelError, WeightsError
from MobileUViTSegmentLib.model_loading import load_network
from MobileUViTSegmentLib.resources import models_dir

CPU = torch.device("cpu")
REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture
def model_copy(tmp_path: Path) -> Path:
    """The bundled default model copied to a folder the test may damage."""
    for name in (f"{DEFAULT_MODEL_ID}.card.json", f"{DEFAULT_MODEL_ID}.safetensors"):
        shutil.copy(models_dir() / name, tmp_path / name)
    return tmp_path / f"{DEFAULT_MODEL_ID}.card.json"


def test_every_bundled_card_validates_and_its_weights_verify_and_load():
    catalog = Catalog()
    assert DEFAULT_MODEL_ID in catalog.ids()
    for card in catalog.cards():
        network = load_network(card, CPU)
        assert sum(p.numel() for p in network.parameters()) == card.raw["architecture"]["parameters"]
        assert card.licenses["weights"] and card.licenses["training_data"]
        assert card.training["command"].startswith("mobileuvit-segment train")


def test_default_card_names_both_hippocampus_labels_with_snomed_codes():
    card = Catalog().get(DEFAULT_MODEL_ID)
    assert [label.name for label in card.labels] == ["anterior hippocampus", "posterior hippocampus"]
    for label in card.labels:
        assert label.terminology.type.value == "5366008"  # SNOMED CT: Hippocampus (DICOM CID 7140)
        assert label.terminology.slicer_entry().count("~") == 6


def test_unknown_model_id_lists_the_known_ones():
    with pytest.raises(ModelError, match=f"unknown model id 'nope'.*{DEFAULT_MODEL_ID}"):
        Catalog().get("nope")


def test_a_card_whose_weights_path_leaves_the_models_folder_is_rejected(model_copy: Path):
    data = json.loads(model_copy.read_text())
    data["weights"]["file"] = "../../etc/passwd.safetensors"
    with pytest.raises(ModelError, match="weights/file"):
        card_from_dict(data, model_copy.parent, "test card")


def test_a_card_with_a_missing_field_says_which(model_copy: Path):
    data = json.loads(model_copy.read_text())
    del data["labels"]
    with pytest.raises(ModelError, match="'labels' is a required property"):
        card_from_dict(data, model_copy.parent, "test card")


def test_weights_whose_sha256_does_not_match_are_refused(model_copy: Path):
    weights = model_copy.with_name(f"{DEFAULT_MODEL_ID}.safetensors")
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one flipped byte
    weights.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256"):
        load_network(load_card(model_copy), CPU)


def test_truncated_weights_are_refused(model_copy: Path):
    weights = model_copy.with_name(f"{DEFAULT_MODEL_ID}.safetensors")
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(WeightsError, match="truncated"):
        load_network(load_card(model_copy), CPU)


def test_missing_weights_are_reported(model_copy: Path):
    model_copy.with_name(f"{DEFAULT_MODEL_ID}.safetensors").unlink()
    with pytest.raises(WeightsError, match="missing"):
        load_network(load_card(model_copy), CPU)


def test_no_code_loads_pickles():
    # torch.load(..., weights_only=True) is PyTorch's restricted unpickler (tensors and plain containers only): the
    # one way official .pth checkpoints are read (conversion/loading.py).
    unsafe = re.compile(r"\b(pickle\.load|torch\.load(?!\([^)]*weights_only=True)|np\.load\([^)]*allow_pickle=True|"
                        r"joblib\.load)")
    offenders = [f"{path.relative_to(REPOSITORY)}:{number}"
                 for path in (REPOSITORY / "MobileUViTSegment").rglob("*.py")
                 for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if unsafe.search(line)]
    assert not offenders, f"unsafe deserialisation: {offenders}"


def test_every_shipped_training_recipe_parses_and_its_card_template_validates():
    from MobileUViTSegmentLib.training.recipe import Recipe
    from MobileUViTSegmentLib.training.trainer import _card_with_placeholder_weights, card_template

    recipes = [path for path in sorted((models_dir() / "recipes").glob("*.recipe.json"))
               if "card" in json.loads(path.read_text(encoding="utf-8"))]
    assert {path.name for path in recipes} >= {"hippocampus-mri.recipe.json", "breast-ultrasound.recipe.json",
                                               "colon-polyp.recipe.json", "breast-ultrasound-srsnet-r.recipe.json",
                                               "breast-ultrasound-srsnet.recipe.json"}
    for path in recipes:
        recipe = Recipe.from_file(path)
        card = card_from_dict(_card_with_placeholder_weights(card_template(recipe)), path.parent, str(path))
        assert card.licenses["training_data"]
        assert bool(card.labels) != recipe.training.is_reconstruction  # SRSNet's R has no labels, segmenters do
