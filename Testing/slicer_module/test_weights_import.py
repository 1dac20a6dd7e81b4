"""Importing a weights file from the panel (offline sites): the core's check in a separate process, one sentence
back, and nothing in the cache unless the file is exactly the card's."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from worker_helpers import worker_environment

from MobileUViTSegmentLib.catalog import DEFAULT_MODEL_ID, Catalog
from MobileUViTSegmentLib.resources import CACHE_VARIABLE, models_dir
from MobileUViTSegmentSlicer.weights_import import WeightsImportError, importWeightsFile

WEIGHTS = models_dir() / f"{DEFAULT_MODEL_ID}.safetensors"


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def run_import(model: str, path: Path, cache: Path) -> str:
    return importWeightsFile(model, path, python=sys.executable, environment=worker_environment(
        **{CACHE_VARIABLE: str(cache)}))


def cached_files(cache: Path) -> list[Path]:
    return sorted(path for path in cache.rglob("*") if path.is_file()) if cache.exists() else []


def test_the_cards_file_enters_the_cache(cache: Path, tmp_path: Path):
    copy = tmp_path / "carried on a USB stick.safetensors"
    copy.write_bytes(WEIGHTS.read_bytes())
    message = run_import(DEFAULT_MODEL_ID, copy, cache)
    card = Catalog().get(DEFAULT_MODEL_ID)
    expected = cache / "weights" / card.weights.sha256 / card.weights.file
    assert "size and sha256 match" in message and cached_files(cache) == [expected]
    assert expected.read_bytes() == WEIGHTS.read_bytes() and copy.is_file()  # the user's file is only read


def test_a_file_that_is_not_the_cards_is_refused_in_one_sentence_and_nothing_is_cached(cache: Path, tmp_path: Path):
    corrupted = bytearray(WEIGHTS.read_bytes())
    corrupted[len(corrupted) // 2] ^= 0xFF
    wrong = tmp_path / "wrong.safetensors"
    wrong.write_bytes(bytes(corrupted))
    with pytest.raises(WeightsImportError) as raised:
        run_import(DEFAULT_MODEL_ID, wrong, cache)
    message = str(raised.value)
    assert "sha256" in message and "\n" not in message and message.endswith(".")
    assert not message.lower().startswith("mobileuvit-segment")
    assert cached_files(cache) == []


def test_an_unknown_model_and_a_missing_file_are_refused(cache: Path, tmp_path: Path):
    with pytest.raises(WeightsImportError, match="Unknown model id 'no-such-model'"):
        run_import("no-such-model", WEIGHTS, cache)
    with pytest.raises(WeightsImportError, match="does not exist"):
        run_import(DEFAULT_MODEL_ID, tmp_path / "missing.safetensors", cache)
    with pytest.raises(WeightsImportError, match="Select the model"):
        run_import("", WEIGHTS, cache)
    assert cached_files(cache) == []
